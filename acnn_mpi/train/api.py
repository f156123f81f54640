"""``train_model``: train, resume or refine a model on labelled frames (the campaign's entry point).

One call does the whole job on every rank of ``comm``:

1. read the frames (root), screen out unusable ones (reported by index), share them with the ranks;
2. split them into training and validation sets (seeded; kept in the checkpoint);
3. build the model: fresh (seeded initialization + least-squares reference energies), from the last
   checkpoint in ``out_dir`` (``resume``), or from a trained model with its parameters perturbed
   (``refine_from``, paper §IV.A);
4. run :class:`~acnn_mpi.train.trainer.Trainer` (data parallel over the ranks);
5. write ``model.pt``, ``checkpoint.pt``, ``metrics.csv`` and ``metrics.json`` in ``out_dir``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from ..errors import UserError
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, restore_rng_states
from .ema import WeightAverage
from .frames import Frame, FrameBatcher, collapsed_weights, read_labelled
from .loss import Schedule
from .metrics import evaluate_errors
from .models import (ModelFactory, build_acnn, fit_input_statistics, load_model, model_elements,
                     model_from_record, perturb_parameters, set_reference_energies,
                     torch_dtype)
from .reference import fit_reference_energies
from .sampler import EpochSampler
from .trainer import MODEL_NAME, Trainer, TrainingRun

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced (paths are in ``out_dir``).

    ``metrics`` holds the final errors: ``valid`` (held-out split), ``extra`` (the ``valid`` sources)
    and ``train`` (the training split), each as :func:`~acnn_mpi.train.metrics.evaluate_errors`
    returns them (meV/atom, meV/Å, GPa); absent when that set is empty.
    """

    model_path: Path
    checkpoint_path: Path
    metrics_csv: Path
    metrics_json: Path
    steps: int
    metrics: dict = field(default_factory=dict)
    stopped: bool = False
    wall_s: float = 0.0
    n_train: int = 0
    n_valid: int = 0
    rejected: list = field(default_factory=list)


def _serial_comm():
    from ..parallel.comm import Comm

    return Comm(None)


def choose_device(requested: Optional[str], comm, ranks_per_gpu: Optional[int] = None) -> torch.device:
    """``auto``: CUDA when available (each rank of a node its own GPU, or ``ranks_per_gpu`` per
    GPU; acnn_mpi.parallel.devices), else CPU. Collective over ``comm``."""
    from ..parallel.devices import select_device

    return torch.device(select_device(requested, comm, ranks_per_gpu))


def _numbers(symbols: Sequence[str]) -> list[int]:
    from ase.data import atomic_numbers

    return [atomic_numbers[s] for s in symbols]


def _sources(data: Any) -> list:
    """``data`` as a list of sources (one path/store/in-memory list, or a list of those)."""
    if data is None:
        return []
    if isinstance(data, (str, Path)) or hasattr(data, "read_arrays"):
        return [data]
    data = list(data)
    if data and all(isinstance(s, Frame) or hasattr(s, "get_positions") for s in data):
        return [data]  # one in-memory list of frames
    return data


def _read_screened(data: Any, indices, allowed_numbers, what: str):
    """(frames, ids, messages): usable frames of every source, each frame's id (its index in the
    source, shifted by the sizes of the sources before it), and one message per rejected frame."""
    frames, ids, messages = [], [], []
    offset = 0
    for k, source in enumerate(_sources(data)):
        chosen = indices if k == 0 else None
        name = str(source) if isinstance(source, (str, Path)) else f"{what} set {k}"
        loaded = read_labelled(source, chosen, allowed_numbers, name)
        frames += loaded.frames
        ids += [offset + i for i in loaded.ids]
        messages += loaded.rejected
        offset += loaded.n_source
    return frames, ids, messages


def split_by_id(ids: Sequence[int], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) positions into ``ids``: frame ``id`` is held out when its seeded hash falls
    below ``fraction`` (as :func:`acnn_mpi.data.split.split_indices` decides), so a growing data set
    never moves a frame between the sets. At least one frame trains; with fraction > 0 and two or
    more frames, at least one validates."""
    from ..data.split import split_uniforms

    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    u = split_uniforms(int(ids.max()) + 1, seed)[ids]
    valid = u < fraction
    if fraction > 0 and n >= 2:
        if not valid.any():
            valid[np.argmin(u)] = True
        if valid.all():
            valid[np.argmax(u)] = False
    elif n < 2:
        valid[:] = False
    return np.flatnonzero(~valid).astype(np.int64), np.flatnonzero(valid).astype(np.int64)


def _statistics_sample(frames: Sequence[Frame], train_ids: np.ndarray, seed: int,
                       max_atoms: int = 20_000) -> list[int]:
    """A seeded random subset of the training frames (up to ``max_atoms`` atoms) for the model's
    descriptor statistics."""
    chosen, atoms = [], 0
    for i in np.random.default_rng([seed, 104729]).permutation(train_ids):
        if chosen and atoms + frames[i].n_atoms > max_atoms:
            break
        chosen.append(int(i))
        atoms += frames[i].n_atoms
    return chosen


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def train_model(
    config,
    data: Any,
    out_dir: str | Path,
    comm=None,
    *,
    indices: Optional[Sequence[int]] = None,
    resume: bool = False,
    refine_from: Optional[str | Path] = None,
    steps: Optional[int] = None,
    valid: Any = None,
    valid_indices: Optional[Sequence[int]] = None,
    device: Optional[str] = None,
    model_factory: Optional[ModelFactory] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    continue_schedule_from: Optional[str | Path] = None,
    split_seed: Optional[int] = None,
) -> TrainResult:
    """Train (or resume, or refine) a model and write it with its checkpoint and logs.

    Args:
        config: a :class:`~acnn_mpi.config.CampaignConfig` or anything with ``model``
            (ModelSettings), ``training`` (TrainingSettings) and optionally ``elements``.
        data: labelled frames: a frame-store path or object, an extxyz path, a list of ASE
            ``Atoms``/Frames, or a list of such sources (concatenated).
        out_dir: folder for ``model.pt``, ``checkpoint.pt``, ``metrics.csv``, ``metrics.json``.
        comm: the job's communicator (every rank calls); None = serial.
        indices: frames of the (first) source to use (default all).
        resume: continue from ``out_dir/checkpoint.pt`` (bit for bit); fresh start if there is none.
        refine_from: a model file or checkpoint to start from, parameters perturbed by
            ``training.refine_perturbation`` × each tensor's std; its reference energies are kept.
        steps: total optimizer steps to reach (default :func:`training_steps`: ``training.steps``,
            or with ``training.epochs`` a number that grows with the training set); a resumed run
            counts the steps already done.
        valid: extra validation sources, evaluated with the held-out split.
        valid_indices: ids (indices in ``data``) of the frames to hold out; default a seeded
            hash split of ``training.validation_fraction`` that stays put as ``data`` grows.
        device: "cpu", "cuda" or "auto" (default: ``model.device``).
        model_factory: ``(model_settings, elements) -> module`` instead of the ACNN.
        should_stop: polled every step; when true, checkpoint and return early.
        continue_schedule_from: a training folder (or its checkpoint) whose learning-rate/p_f clock
            this training continues (a campaign's refinement continues the previous training's).
        split_seed: seed of the validation split (default ``training.seed``; a committee's
            members share one split while their seeds differ).

    Raises:
        UserError: missing files, no usable frames, a checkpoint that does not fit the data.
    """
    comm = comm or _serial_comm()
    training, model_settings = config.training, config.model
    out_dir = Path(out_dir)
    checkpoint_file = out_dir / CHECKPOINT_NAME
    checkpoint = None
    if resume and checkpoint_file.is_file():
        checkpoint = comm.root_then_bcast(lambda: load_checkpoint(checkpoint_file))
    elif resume:
        log.warning("no checkpoint in %s: starting a fresh training", out_dir)

    # -- the model (before the data: it says which elements are allowed) -------------------------
    dtype = torch_dtype(model_settings.dtype)
    torch_device = choose_device(device or model_settings.device, comm,
                                 getattr(getattr(config, "parallel", None), "ranks_per_gpu", None))
    if checkpoint is not None:
        model = model_from_record(checkpoint["model"])
    elif refine_from is not None:
        if not Path(refine_from).is_file():
            raise UserError(f"model to refine {refine_from} not found", collective=comm.size > 1)
        try:
            model = load_model(refine_from)
        except ValueError as error:
            raise UserError(f"cannot refine from {refine_from}: {error}", collective=comm.size > 1) from None
        from .committee import CommitteeMean

        if isinstance(model, CommitteeMean):
            raise UserError(f"cannot refine from {refine_from}: it is a committee of models; refine "
                            "from one member (its member_M/model.pt)", collective=comm.size > 1)
    else:
        model = None
    elements = model_elements(model) if model is not None else list(getattr(config, "elements", []) or [])
    allowed = _numbers(elements) if elements else None

    # -- the data (root reads and screens, every rank gets the frames) ----------------------------
    def read_all():
        frames, ids, messages = _read_screened(data, indices, allowed, "training")
        extra, _, extra_messages = _read_screened(valid, None, allowed, "validation")
        return frames, ids, messages, extra, extra_messages

    frames, frame_ids, rejected, extra_frames, extra_rejected = comm.root_then_bcast(read_all)
    for message in rejected + extra_rejected:
        log.warning("skipped %s", message)
    if training.collapsed_labels == "weight":
        _weigh_collapsed(frames, training.max_label_force)
    if not frames:
        raise UserError(f"no usable training frames in {data}"
                        + (f" ({len(rejected)} rejected)" if rejected else ""), collective=comm.size > 1)
    if model is None:
        if not elements:
            present = sorted({int(z) for f in frames for z in f.numbers})
            from ase.data import chemical_symbols

            elements = [chemical_symbols[z] for z in present]
        _seed_everything(training.seed)
        model = (model_factory or build_acnn)(model_settings, elements)
    model = model.to(device=torch_device, dtype=dtype)

    if checkpoint is not None:
        train_ids = np.asarray(checkpoint["data"]["train_ids"], dtype=np.int64)
        valid_ids = np.asarray(checkpoint["data"]["valid_ids"], dtype=np.int64)
        if checkpoint["data"].get("n_frames") != len(frames):
            raise UserError(f"{checkpoint_file} was trained on {checkpoint['data'].get('n_frames')} "
                            f"frames but {data} gives {len(frames)}: resume needs the same data "
                            "(use --refine for a new data set)", collective=comm.size > 1)
    elif valid_indices is not None:
        held_out = {int(i) for i in valid_indices}
        valid_ids = np.array([k for k, i in enumerate(frame_ids) if i in held_out], dtype=np.int64)
        train_ids = np.setdiff1d(np.arange(len(frames)), valid_ids)
    else:
        train_ids, valid_ids = split_by_id(frame_ids, training.validation_fraction,
                                           training.seed if split_seed is None else split_seed)
    if len(train_ids) == 0:
        raise UserError("no training frames left after the validation split", collective=comm.size > 1)
    total_steps = training_steps(training, len(train_ids)) if steps is None else int(steps)

    train_frames = [frames[i] for i in train_ids]
    batcher = FrameBatcher(frames, model.cutoff, dtype=dtype, device=torch_device)
    if checkpoint is None and refine_from is None:
        references = fit_reference_energies(train_frames, _numbers(elements))
        set_reference_energies(model, references)
        fit_input_statistics(model, batcher, _statistics_sample(frames, train_ids, training.seed))
        log.info("reference energies (eV/atom, least squares over %d frames): %s", len(train_frames),
                 ", ".join(f"{e}={references[z]:.4f}" for e, z in zip(elements, _numbers(elements))))
    if checkpoint is None and refine_from is not None:
        generator = torch.Generator().manual_seed(training.seed)
        perturb_parameters(model, training.refine_perturbation, generator)
        log.info("refining %s: parameters perturbed by %.3g × their std", refine_from,
                 training.refine_perturbation)
        _seed_everything(training.seed)

    # -- parallel group, optimizer, counters --------------------------------------------------------
    from ..parallel.ddp import setup_data_parallel

    parallel = setup_data_parallel(comm, torch_device)
    try:
        parallel.broadcast_parameters(model)
        optimizer = torch.optim.AdamW(decay_groups(model, training.weight_decay, training.weight_decay_on),
                                      lr=training.learning_rate)
        sampler = EpochSampler(len(train_ids), seed=training.seed)
        extra = (FrameBatcher(extra_frames, model.cutoff, dtype=dtype, device=torch_device)
                 if extra_frames else None)
        run = TrainingRun(
            model=model, optimizer=optimizer, schedule=Schedule.from_settings(training, total_steps),
            sampler=sampler, batcher=batcher, train_ids=train_ids, valid_ids=valid_ids, extra=extra,
            data_info={"n_frames": len(frames), "n_rejected": len(rejected), "source": str(data)[:500],
                       "refined_from": str(refine_from) if refine_from else None},
            settings={"training": training.model_dump(), "model": model_settings.model_dump(),
                      "elements": elements, "ranks": comm.size, "device": str(torch_device)},
            ema=WeightAverage(model, training.ema_decay) if training.ema_decay else None,
        )
        if checkpoint is not None:
            optimizer.load_state_dict(checkpoint["optimizer"])
            sampler.load_state_dict(checkpoint["sampler"])
            run.step = int(checkpoint["step"])
            run.history = list(checkpoint["history"])
            run.wall_s = float(checkpoint.get("wall_s", 0.0))
            run.data_info = {**checkpoint["data"], **{"n_frames": len(frames)}}
            run.data_info.pop("train_ids", None)
            run.data_info.pop("valid_ids", None)
            run.clock_start = int(checkpoint.get("clock_start", 0))
            run.best = checkpoint.get("best")
            run.since_best = int(checkpoint.get("since_best", 0))
            run.finished_early = bool(checkpoint.get("finished_early", False))
            if run.ema is not None and checkpoint.get("ema"):
                run.ema.load_state_dict(checkpoint["ema"])
            restore_rng_states(checkpoint["rng"])
            log.info("resuming from %s at step %d", checkpoint_file, run.step)
        else:
            run.clock_start = comm.root_then_bcast(lambda: schedule_clock(continue_schedule_from))
            _seed_everything(training.seed)
        run.schedule = Schedule.from_settings(training, total_steps, origin=run.clock_start)
        log.info("training on %d frames, validating on %d%s; %d step(s) to go on %d rank(s), %s %s",
                 len(train_ids), len(valid_ids), f" (+{len(extra_frames)} extra)" if extra_frames else "",
                 max(total_steps - run.step, 0), comm.size, torch_device, str(dtype).replace("torch.", ""))
        trainer = Trainer(run, training, parallel, comm, out_dir, should_stop=should_stop)
        started = time.perf_counter()
        first_step = run.step
        stopped = trainer.fit(total_steps)
        if run.step == first_step:  # nothing to do (steps reached already, or 0): still write out
            trainer.save(run.wall_s, final_model=True)
        # the final errors are those of the model written
        model.load_state_dict(trainer.final_model().state_dict())
        metrics = trainer.validate()
        if len(train_ids):
            metrics["train"] = evaluate_errors(model, None, batcher=batcher,
                                               indices=train_ids.tolist(), comm=comm)
        result = TrainResult(
            model_path=out_dir / MODEL_NAME, checkpoint_path=trainer.checkpoint_path,
            metrics_csv=out_dir / "metrics.csv", metrics_json=out_dir / "metrics.json",
            steps=run.step, metrics=metrics, stopped=stopped, wall_s=time.perf_counter() - started,
            n_train=len(train_ids), n_valid=len(valid_ids), rejected=rejected + extra_rejected,
        )
        if comm.is_root:
            _write_final(trainer, result)
        comm.barrier()
        return result
    finally:
        parallel.close()


def training_steps(training, n_train: int) -> int:
    """Steps of one (re)training: ``training.steps``, or with ``training.epochs``
    ceil(epochs × n_train / batch_size) bounded to [min_steps, steps] (100 frames, 200 epochs,
    batch 4: 5,000 steps; 10,000 frames: 500,000, capped at ``steps``)."""
    if training.epochs is None:
        return int(training.steps)
    wanted = math.ceil(training.epochs * n_train / training.batch_size)
    return int(min(training.steps, max(training.min_steps, wanted)))


def schedule_clock(previous: Optional[str | Path]) -> int:
    """Where the schedule clock of the training in ``previous`` (a folder or its checkpoint)
    stopped: its ``clock_start`` + steps done; 0 when there is none."""
    if previous is None:
        return 0
    path = Path(previous)
    path = path / CHECKPOINT_NAME if path.is_dir() else path
    if not path.is_file():
        log.warning("no checkpoint %s: the schedule starts at step 0", path)
        return 0
    record = load_checkpoint(path)
    return int(record.get("clock_start", 0)) + int(record["step"])


def _weigh_collapsed(frames: list[Frame], max_force: float) -> None:
    """Give frames with force components above ``max_force`` eV/Å a loss weight below 1."""
    weights = collapsed_weights(frames, max_force)
    for frame, weight in zip(frames, weights):
        frame.weight = float(weight)
    if (weights < 1).any():
        log.info("%d collapsed frame(s) (forces above %.0f eV/Å) trained with weights %.2g to %.2g",
                 int((weights < 1).sum()), max_force, weights.min(), weights[weights < 1].max())


def _write_final(trainer: Trainer, result: TrainResult) -> None:
    """Add the final errors to metrics.json."""
    import json

    from .checkpoint import atomic_text

    path = result.metrics_json
    data = json.loads(path.read_text()) if path.is_file() else {"records": trainer.run.history}
    data["final"] = {"step": result.steps, "stopped": result.stopped, **result.metrics}
    atomic_text(json.dumps(data, indent=1, default=str), path)


def decay_groups(model: torch.nn.Module, weight_decay: float, scope: str = "all") -> list[dict]:
    """AdamW parameter groups: ``weight_decay`` on every parameter (``scope`` 'all'), or on the
    weight matrices of the ``torch.nn.Linear`` layers only ('matrices'; the rest undecayed)."""
    if scope == "all" or weight_decay == 0:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    matrices = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    decayed = [p for p in model.parameters() if id(p) in matrices]
    rest = [p for p in model.parameters() if id(p) not in matrices]
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
