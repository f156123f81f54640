"""Where labels and failures go: a labels file (root-written, appended as results arrive) and a
JSON-lines failure record beside it.

Labels: ``*.h5``/``*.hdf5`` files are the data store (:class:`acnn_mpi.data.store.FrameStore`,
which validates frames and commits each append atomically); ``*.xyz``/``*.extxyz`` files are
appended as extended XYZ (energy, forces, stress, ``structure_id`` in each frame). Both are flushed
after every structure, so a killed job loses at most the calculations in flight. A frame the
store's validation refuses (e.g. atoms closer than 0.3 Å) becomes a recorded failure.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Iterable, Optional

import numpy as np

from .. import keys

def default_failures_path(labels_path: str) -> str:
    root, ext = os.path.splitext(labels_path)
    return root + ".failures.jsonl"


class FailureLog:
    """Append-only JSON lines: one record per structure that could not be labelled."""

    def __init__(self, path: str):
        self.path = path

    def append(self, record: dict) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        line = json.dumps(record, default=_json_default) + "\n"
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":      # a line cut by a killed job: start afresh
                    line = "\n" + line
        with open(self.path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def records(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        out = []
        with open(self.path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a killed job
                    continue
        return out

    def failure_counts(self) -> Counter:
        """structure_id -> number of recorded failures (each after all its attempts)."""
        return Counter(int(r["structure_id"]) for r in self.records() if "structure_id" in r)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _validate(frames) -> dict:
    """index -> problems for frames the data package's validation refuses."""
    from ..data.validate import validate_frames

    return dict(validate_frames(frames, on_bad="skip").bad)


class LabelSink:
    """Labels file: ``labelled_ids()`` for resuming and ``append(frames)`` (root only)."""

    def __init__(self, path: str, *, source: Optional[str] = None, iteration: Optional[int] = None):
        self.path = path
        self.source = source
        self.iteration = iteration
        ext = os.path.splitext(path)[1].lower()
        self.store_class = None
        if ext in (".h5", ".hdf5"):
            self.format = "h5"
            from ..data.store import FrameStore

            self.store_class = FrameStore
        elif ext in (".xyz", ".extxyz"):
            self.format = "extxyz"
        else:
            from ..errors import UserError

            raise UserError(f"--out {path}: use a .h5 (HDF5) or .xyz/.extxyz file")

    # -- reading ---------------------------------------------------------------------------------

    def labelled_ids(self) -> set[int]:
        if not os.path.exists(self.path):
            return set()
        if self.format == "extxyz":
            from ase.io import iread

            ids = set()
            try:
                for atoms in iread(self.path, index=":", format="extxyz", parallel=False):
                    if keys.STRUCTURE_ID in atoms.info:
                        ids.add(int(atoms.info[keys.STRUCTURE_ID]))
            except Exception:  # noqa: BLE001 - a frame cut by a killed job ends the readable part
                pass
            return ids
        with self.store_class(self.path, "r") as store:
            return {int(i) for i in store.column(keys.STRUCTURE_ID)}

    def read(self) -> list:
        """All labelled frames as ASE Atoms with SinglePointCalculator (for tests and tools)."""
        if not os.path.exists(self.path):
            return []
        if self.format == "extxyz":
            from ase.io import read

            return read(self.path, index=":", format="extxyz", parallel=False)
        with self.store_class(self.path, "r") as store:
            return store.read()

    def repair(self) -> int:
        """Cut what a killed job left half written (a partial extxyz frame, HDF5 datasets longer
        than the committed structure ids); returns the number of bytes/rows dropped. Root only,
        before labelling resumes."""
        if not os.path.exists(self.path):
            return 0
        if self.format == "extxyz":
            return _repair_extxyz(self.path)
        with self.store_class(self.path, "a"):   # opening for writing cuts uncommitted rows
            return 0

    # -- writing ---------------------------------------------------------------------------------

    def append(self, frames: Iterable) -> dict:
        """Append labelled frames; returns {index: problems} of frames refused by validation."""
        frames = list(frames)
        if not frames:
            return {}
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        if self.store_class is not None:
            with self.store_class(self.path, "a") as store:
                report = store.append(frames, on_bad="skip", source=self.source,
                                      iteration=self.iteration)
            return dict(report.bad)
        refused = _validate(frames)
        good = [a for i, a in enumerate(frames) if i not in refused]
        if good and self.format == "extxyz":
            from ase.io import write

            for atoms in good:
                for name, value in (("source", self.source), ("iteration", self.iteration)):
                    if value is not None:
                        atoms.info[name] = value
            with open(self.path, "a") as f:
                write(f, good, format="extxyz", parallel=False)
                f.flush()
                os.fsync(f.fileno())
        return refused


def _repair_extxyz(path: str) -> int:
    """Truncate ``path`` after its last complete extended-XYZ frame; returns the bytes dropped."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.splitlines(keepends=True)
    good = position = i = 0
    while i < len(lines):
        head = lines[i].strip()
        if not head:                       # blank line between frames
            position += len(lines[i])
            i += 1
            good = position
            continue
        try:
            n = int(head)
        except ValueError:
            break
        block = lines[i:i + 2 + n]
        if len(block) < 2 + n or not block[-1].endswith(b"\n"):
            break
        if any(len(line.split()) < 4 for line in block[2:]):
            break
        position += sum(len(line) for line in block)
        i += 2 + n
        good = position
    dropped = len(data) - good
    if dropped:
        with open(path, "r+b") as f:
            f.truncate(good)
    return dropped


def _read_hdf5_structures(path: str) -> list[tuple[int, object]]:
    """(structure_id, Atoms) of a label store, a relaxation shard or structure file, or a relax
    output directory (one reader for every layout: acnn_mpi.relax.io)."""
    from ..errors import UserError
    from ..relax.io import read_all

    try:
        frames = read_all(path)
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"--input {path}: {error}") from None
    if not frames:
        raise UserError(f"--input {path}: no structures in it")
    return [(int(a.info[keys.STRUCTURE_ID]), a) for a in frames]


def read_structures(path: str, *, id_key: str = keys.STRUCTURE_ID) -> list[tuple[int, object]]:
    """(structure_id, Atoms) for every frame of an ASE-readable file; ids from each frame's
    ``structure_id`` info (all frames or none), else the 0-based frame index."""
    from ase.io import read

    from ..errors import UserError

    if not os.path.exists(path):
        raise UserError(f"--input {path}: no such file")
    if os.path.isdir(path) or path.lower().endswith((".h5", ".hdf5", ".hdf")):
        return _read_hdf5_structures(path)
    try:
        frames = read(path, index=":", parallel=False)
    except Exception as error:  # noqa: BLE001 - any reader error is bad input
        raise UserError(f"--input {path}: cannot read it with ASE ({type(error).__name__}: {error})") from None
    if not frames:
        raise UserError(f"--input {path}: no structures in it")
    with_id = [id_key in a.info for a in frames]
    if any(with_id) and not all(with_id):
        raise UserError(f"--input {path}: {with_id.count(False)} of {len(frames)} frames lack "
                        f"'{id_key}' (give every frame an id, or none)")
    if all(with_id):
        ids = [int(a.info[id_key]) for a in frames]
    else:
        ids = list(range(len(frames)))
    duplicates = sorted(i for i, c in Counter(ids).items() if c > 1)
    if duplicates:
        raise UserError(f"--input {path}: duplicate structure ids {duplicates[:10]}")
    out = []
    for sid, atoms in zip(ids, frames):
        atoms.calc = None
        atoms.info[id_key] = sid
        out.append((sid, atoms))
    return out


def labelled_frame(result, structure_id: int, *, extra_info: Optional[dict] = None):
    """The Atoms (with labels and info) that the sink stores for a successful LabelResult."""
    atoms = result.labelled_atoms()
    atoms.info = {keys.STRUCTURE_ID: int(structure_id), "labeller": result.labeller}
    tags = []
    for key, value in (extra_info or {}).items():
        if isinstance(value, (int, float, str, bool, np.integer, np.floating)):
            atoms.info[key] = value
            tags.append(f"{key}={value}")
    if tags:   # the store keeps them as free text
        atoms.info["tags"] = " ".join(tags)
    return atoms
