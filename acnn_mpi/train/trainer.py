"""The training loop: minibatches of whole structures, Eq. 16, AdamW, data parallel over ranks.

Each optimizer step takes the next ``batch_size`` structures of the (per-epoch shuffled) training
set — the *global* minibatch — and splits it into contiguous parts, one per rank. Every rank
differentiates Σ_(its structures) ℓ_i / N_B, the gradients are summed over ranks in one all-reduce,
and every rank applies the same AdamW step, so the model equals a one-process run on the same global
minibatch (up to the order of floating-point sums). Validation is shared among the ranks; only the
root writes checkpoints and logs.

The learning rate and p_f are read on the *clock* ``clock_start + step``: a refinement starts its
clock where the training it refines stopped, so the schedule runs on over a campaign. After each
validation the score p_e·E_rmse² + p_f,end·F_rmse² (meV/atom, meV/Å) of the held-out split is
compared with the best so far; the best parameters are kept (in the checkpoint, so a resume is
exact) and, with ``keep_best``, are what ``model.pt`` holds. With ``patience``, training ends after
that many validations without a better score. With ``ema_decay`` the weights validated, kept and
written are the moving average of :mod:`.ema` (updated after every step); training runs on the
weights themselves.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..model.forces import evaluate
from .checkpoint import CHECKPOINT_NAME, save_checkpoint
from .ema import WeightAverage
from .frames import FrameBatcher
from .loss import Schedule, loss_sum
from .logbook import flatten_errors, progress_line, write_logs
from .metrics import evaluate_errors
from .models import model_record, save_model
from .sampler import EpochSampler

log = logging.getLogger(__name__)

MODEL_NAME = "model.pt"


@dataclass
class TrainingRun:
    """Everything one training run holds; :meth:`Trainer.state_dict` saves it."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    sampler: EpochSampler
    batcher: FrameBatcher                 # training + validation frames
    train_ids: np.ndarray                 # positions in batcher of the training frames
    valid_ids: np.ndarray                 # positions in batcher of the validation frames
    extra: Optional[FrameBatcher] = None  # an extra validation set (e.g. --valid FILE)
    step: int = 0
    history: list = field(default_factory=list)
    wall_s: float = 0.0
    data_info: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    clock_start: int = 0                  # schedule clock at step 0 (steps of earlier trainings)
    best: Optional[dict] = None           # {"score", "step", "state"}: the best validated parameters
    since_best: int = 0                   # validations since the best one
    finished_early: bool = False          # patience ran out (a resume does nothing more)
    ema: Optional[WeightAverage] = None   # averaged weights for validation and the model file

    @property
    def clock(self) -> int:
        return self.clock_start + self.step


class Trainer:
    """Runs :class:`TrainingRun` to ``total_steps`` with periodic logs, validation and checkpoints.

    Args:
        run: the model, optimizer, data and counters.
        training: :class:`acnn_mpi.config.TrainingSettings` (batch size, intervals).
        parallel: from :func:`acnn_mpi.parallel.ddp.setup_data_parallel`.
        comm: the job's communicator (validation sharing; root-only writes).
        out_dir: where ``checkpoint.pt``, ``model.pt``, ``metrics.csv`` and ``metrics.json`` go.
        should_stop: polled every step (any rank); when true on one, all stop after the step,
            checkpoint and return.
    """

    def __init__(self, run: TrainingRun, training, parallel, comm, out_dir: Path,
                 should_stop: Optional[Callable[[], bool]] = None):
        self.run = run
        self.training = training
        self.parallel = parallel
        self.comm = comm
        self.out_dir = Path(out_dir)
        self.should_stop = should_stop
        self.parameters = [p for p in run.model.parameters() if p.requires_grad]
        self._window = np.zeros(5)  # Σ loss, Σ energy, Σ forces, Σ virial, structures
        self._window_steps = 0
        self._grad_norm = 0.0  # largest global gradient norm since the last record
        self._latest_valid: dict = {}
        for record in run.history:
            if record.get("valid_energy_rmse") is not None or record.get("extra_energy_rmse") is not None:
                self._latest_valid = {k: v for k, v in record.items()
                                      if k.startswith(("valid_", "extra_"))}

    # -- paths ----------------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    @property
    def model_path(self) -> Path:
        return self.out_dir / MODEL_NAME

    # -- one step -------------------------------------------------------------------------------

    def train_step(self) -> bool:
        """One optimizer step on the next global minibatch; returns whether to stop afterwards."""
        run = self.run
        chosen = run.sampler.next(self.training.batch_size)
        n_global = len(chosen)
        local = np.array_split(chosen, self.parallel.size)[self.parallel.rank]
        p_e, p_f, p_w = run.schedule.prefactors(run.clock)
        for group in run.optimizer.param_groups:
            group["lr"] = run.schedule.lr(run.clock)
        run.optimizer.zero_grad(set_to_none=True)
        sums = torch.zeros(6, dtype=torch.float64)
        if len(local):
            batch, edges, targets = run.batcher.batch(run.train_ids[local])
            want_stress = p_w > 0 and bool(targets.has_virial.any())
            output = evaluate(run.model, batch, compute_forces=True, compute_stress=want_stress,
                              create_graph=True, edges=edges)
            parts = loss_sum(output, targets, p_e, p_f, p_w,
                             energy_per_atom=getattr(self.training, "energy_loss", "") == "per_atom")
            (parts.total / n_global).backward()
            sums[:5] = torch.tensor([float(parts.total.detach()), parts.energy, parts.forces,
                                     parts.virial, float(len(local))], dtype=torch.float64)
        if self.should_stop is not None and self.should_stop():
            sums[5] = 1.0
        self.parallel.sum_gradients(self.parameters)
        sums = self.parallel.sum_tensor(sums).cpu().numpy()
        grads = [p.grad for p in self.parameters if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads)
        clip = getattr(self.training, "grad_clip_norm", None)
        if clip:  # the norm is logged on every step; the gradients are rescaled only to clip
            torch.nn.utils.clip_grads_with_norm_(self.parameters, clip, norm)
        self._grad_norm = max(self._grad_norm, float(norm))
        run.optimizer.step()
        if run.ema is not None:
            run.ema.update(run.model)
        run.step += 1
        self._window += sums[:5]
        self._window_steps += 1
        return bool(sums[5] > 0)

    # -- validation, records, checkpoints ---------------------------------------------------------

    def validate(self) -> dict:
        """Errors on the held-out split and the extra set (each rank gets the same numbers)."""
        run = self.run
        out = {}
        if len(run.valid_ids):
            out["valid"] = evaluate_errors(run.model, None, batcher=run.batcher,
                                           indices=run.valid_ids.tolist(), comm=self.comm)
        if run.extra is not None and len(run.extra):
            out["extra"] = evaluate_errors(run.model, None, batcher=run.extra, comm=self.comm)
        return out

    def _record(self, errors: Optional[dict], started: float, steps_per_s: Optional[float]) -> dict:
        run = self.run
        loss = energy = forces = virial = None
        if self._window[4] > 0:
            steps = max(self._window_steps, 1)
            # Eq. 16 is a mean over each minibatch; average it over the minibatches of the window.
            structures_per_step = self._window[4] / steps
            loss = float(self._window[0] / steps / structures_per_step)
            energy, forces, virial = (float(x) for x in self._window[1:4] / self._window[4])
        elapsed = time.perf_counter() - started
        record = {
            "step": run.step, "epoch": run.sampler.epoch, "lr": run.schedule.lr(run.clock),
            "p_force": run.schedule.prefactors(run.clock)[1], "loss": loss, "loss_energy": energy,
            "loss_forces": forces, "loss_virial": virial, "wall_s": round(run.wall_s + elapsed, 3),
            "steps_per_s": steps_per_s, "grad_norm": self._grad_norm or None,
        }
        if errors:
            record.update(flatten_errors("valid", errors.get("valid")))
            record.update(flatten_errors("extra", errors.get("extra")))
        self._window[:] = 0
        self._window_steps = 0
        self._grad_norm = 0.0
        return record

    def state_dict(self, wall_s: float) -> dict:
        run = self.run
        return {
            "model": model_record(run.model),
            "optimizer": run.optimizer.state_dict(),
            "schedule": run.schedule.state_dict(),
            "step": run.step,
            "sampler": run.sampler.state_dict(),
            "data": {**run.data_info, "train_ids": run.train_ids.tolist(),
                     "valid_ids": run.valid_ids.tolist()},
            "history": list(run.history),
            "wall_s": wall_s,
            "settings": run.settings,
            "clock_start": run.clock_start,
            "best": run.best,
            "since_best": run.since_best,
            "finished_early": run.finished_early,
            "ema": run.ema.state_dict() if run.ema is not None else None,
        }

    def summary(self) -> dict:
        return {"settings": self.run.settings, "data": self.run.data_info, "step": self.run.step}

    def save(self, wall_s: float, final_model: bool = False) -> None:
        """Checkpoint (and logs; the model file too when ``final_model``) from the root rank."""
        if not self.comm.is_root:
            return
        save_checkpoint(self.checkpoint_path, self.state_dict(wall_s))
        write_logs(self.run.history, self.out_dir / "metrics.csv", self.out_dir / "metrics.json",
                   self.summary())
        if final_model:
            save_model(self.final_model(), self.model_path)

    def final_model(self) -> torch.nn.Module:
        """The model to hand on: the best validated parameters with ``keep_best``, else the last
        (their moving average with ``ema_decay``)."""
        run = self.run
        if not (self.training.keep_best and run.best) and run.ema is None:
            return run.model
        model = copy.deepcopy(run.model)
        if self.training.keep_best and run.best:
            model.load_state_dict(run.best["state"])
        else:
            with run.ema.applied(run.model):
                model.load_state_dict(run.model.state_dict())
        return model

    def evaluation_weights(self):
        """Context in which the model holds the weights that are validated and kept (the EMA's
        when there is one)."""
        if self.run.ema is None:
            return contextlib.nullcontext(self.run.model)
        return self.run.ema.applied(self.run.model)

    def track_best(self, errors: dict) -> bool:
        """Keep the parameters if the held-out score is the best so far; True when ``patience``
        validations in a row brought no better score."""
        valid = errors.get("valid")
        if not valid:
            return False
        run = self.run
        score = validation_score(valid, self.training)
        if run.best is None or score < run.best["score"]:
            state = {k: v.detach().to("cpu", copy=True) for k, v in run.model.state_dict().items()}
            run.best = {"score": score, "step": run.step, "state": state}
            run.since_best = 0
        else:
            run.since_best += 1
        patience = self.training.patience
        return patience is not None and run.since_best >= patience

    # -- the loop -------------------------------------------------------------------------------

    def fit(self, total_steps: int) -> bool:
        """Train until ``total_steps`` optimizer steps are done; returns True if stopped early."""
        run, cfg = self.run, self.training
        started = time.perf_counter()
        last_logged_step, last_log_time = run.step, started
        stopped = False
        while run.step < total_steps and not stopped and not run.finished_early:
            stopped = self.train_step()
            at_end = run.step == total_steps or stopped
            do_valid = run.step % cfg.validate_every == 0 or at_end
            do_log = run.step % cfg.log_every == 0 or do_valid
            if do_log:
                now = time.perf_counter()  # training speed, without the validation below
                speed = (run.step - last_logged_step) / (now - last_log_time) if now > last_log_time else None
                errors, best_stalled = None, False
                if do_valid:
                    with self.evaluation_weights():
                        errors = self.validate()
                        best_stalled = self.track_best(errors)
                record = self._record(errors, started, speed)
                last_logged_step, last_log_time = run.step, time.perf_counter()
                run.history.append(record)
                if errors:
                    self._latest_valid = {k: v for k, v in record.items()
                                          if k.startswith(("valid_", "extra_"))}
                    run.finished_early = best_stalled and not at_end
                    at_end = at_end or run.finished_early
                log.info("%s", progress_line({**self._latest_valid, **record}, total_steps))
            if run.step % cfg.checkpoint_every == 0 or at_end:
                self.save(run.wall_s + time.perf_counter() - started, final_model=at_end)
        run.wall_s += time.perf_counter() - started
        if stopped:
            log.warning("training stopped at step %d on request; checkpoint written", run.step)
        elif run.finished_early:
            log.info("training ended at step %d: %d validations without a better score (best at "
                     "step %d)", run.step, run.since_best, run.best["step"])
        return stopped


def validation_score(errors: dict, training) -> float:
    """p_e,end·E_rmse² + p_f,end·F_rmse² of held-out errors (meV/atom, meV/Å; a missing term is 0)."""
    energy = errors.get("energy_rmse") or 0.0
    forces = errors.get("force_rmse") or 0.0
    p_e = training.p_energy if getattr(training, "p_energy_end", None) is None else training.p_energy_end
    return float(p_e * energy ** 2 + training.p_force_end * forces ** 2)
