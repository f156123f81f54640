"""Checkpoints: everything needed to continue training bit for bit, written atomically.

A checkpoint is one ``torch.save`` file (a dict, see :func:`checkpoint_state`):

- ``format`` ("acnn_mpi.checkpoint") and ``version`` (1);
- ``model``: the model's own save record (``{"kind", "record"}``, see :mod:`.models`);
- ``optimizer``: AdamW ``state_dict`` (moments and step counts);
- ``schedule``: the learning-rate/prefactor schedule (a pure function of ``step``);
- ``step``: optimizer steps done;
- ``sampler``: the data-order state (``seed``, ``epoch``, ``cursor``; the order of an epoch is a
  pure function of seed and epoch);
- ``rng``: torch (and CUDA), numpy and python RNG states;
- ``data``: what it was trained on (number of frames, train/validation indices);
- ``history``: every validation record so far (the CSV/JSON logs are rewritten from it);
- ``settings``: the training and model settings used.
- ``ema``: the moving average of the weights (:mod:`.ema`), when ``ema_decay`` is set.

Writes go to a temporary file in the same folder, are flushed and fsync'ed, then renamed over the
old file (and the folder fsync'ed), so a kill at any moment leaves the previous good checkpoint.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

FORMAT = "acnn_mpi.checkpoint"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write ``path`` via ``write(handle)`` into a temporary file, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    from ..errors import naming_file

    try:
        with naming_file(path), open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:
        directory = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(directory)
    except OSError:
        pass
    finally:
        os.close(directory)
    return path


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_text(text: str, path: str | Path) -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def rng_states() -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a checkpoint dict atomically (adds format, version and the RNG states)."""
    record = {"format": FORMAT, "version": VERSION, **state, "rng": rng_states()}
    return atomic_torch_save(record, path)


#: entries of a checkpoint and the type each must have
_ENTRIES = {"model": dict, "optimizer": dict, "schedule": dict, "step": int, "sampler": dict,
            "data": dict, "history": list, "rng": dict}


def load_checkpoint(path: str | Path, entries=tuple(_ENTRIES)) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, checking that it holds ``entries``
    (default: all that resuming needs) with the right types, and that its model can be rebuilt.

    Raises:
        DamagedFileError (a UserError and a ValueError): the file is not a checkpoint, is torn or
            damaged, or is of a newer version; the message names it and how to go on.
    """
    from ..errors import DamagedFileError

    path = Path(path)
    fix = f"move it away (mv {path} {path}.bad) to start this training over"
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
        record = torch.load(path, map_location="cpu", weights_only=False)
    except OSError as error:
        raise DamagedFileError(f"{path}: cannot read the training checkpoint ({error.strerror})") from None
    except Exception as error:  # noqa: BLE001 - torch and pickle raise many kinds for damaged files
        what = "is empty" if not head else (
            "is not a torch file" if not head.startswith((b"PK\x03\x04", b"\x80")) else
            f"is a torn or damaged torch file ({_first_line(error)})")
        raise DamagedFileError(f"{path} {what}, not an acnn_mpi training checkpoint: {fix}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise DamagedFileError(f"{path} is not an acnn_mpi training checkpoint: {fix}")
    version = record.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise DamagedFileError(f"{path} has checkpoint version {version!r}, newer than this acnn_mpi "
                               f"reads ({VERSION}): resume with the version that wrote it, or {fix}")
    for name in entries:
        kind = _ENTRIES[name]
        value = record.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise DamagedFileError(f"{path} is a damaged training checkpoint ({name} is "
                                   f"{type(value).__name__}, not {kind.__name__}): {fix}")
    data = record.get("data", {})
    if "data" in entries and not all(isinstance(data.get(k), list) for k in ("train_ids", "valid_ids")):
        raise DamagedFileError(f"{path} is a damaged training checkpoint (no train/validation "
                               f"frame lists): {fix}")
    try:
        from .models import model_from_record

        if "model" in entries:
            model_from_record(record["model"])
    except Exception as error:  # noqa: BLE001 - any failure to rebuild the model is damage
        raise DamagedFileError(f"{path} is a damaged training checkpoint (its model cannot be "
                               f"rebuilt: {_first_line(error)}): {fix}") from None
    return record


def _first_line(error: BaseException) -> str:
    """The first sentence of an error message (torch's run on for lines)."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    return text.splitlines()[0].split(". ")[0].rstrip(".")[:160]
