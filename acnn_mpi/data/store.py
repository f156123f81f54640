"""The labelled-frame store: one HDF5 file, appendable without rewriting, read lazily.

The file is of the one frame layout of the package (:mod:`acnn_mpi.data.h5frames`: ``atoms/`` and
``frames/`` groups, the ``n_frames`` commit counter) with the ``labels`` column group: per atom
``forces`` (eV/Å); per frame ``energy`` (eV), ``stress`` (eV/Å³, ASE sign, NaN if not labelled),
``has_stress``, ``iteration``, ``source``, ``formula``, ``labeller``, ``tags``. Label stores of
version 1 (``labels.h5`` of earlier campaigns) are read as they are; opened for appending, their
attributes are upgraded in place (one log line).

Crash safety (the layout's writer): an append writes and flushes the data first and raises
``n_frames`` last, so readers see all of an append or none of it. Rows beyond ``n_frames`` (left by
a writer killed mid-append) are never read, and opening the store for writing cuts them off.

Concurrency: one process writes at a time (in an MPI job, the root); readers open the file when no
writer has it open (HDF5 file locking enforces this; on file systems without locking set
``HDF5_USE_FILE_LOCKING=FALSE`` and keep to the rule yourself).
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from .. import keys
from ..errors import UserError
from . import h5frames
from .frames import FORMULA, HAS_STRESS, ITERATION, N_ATOMS, SOURCE, FrameArrays, LabelKeys
from .h5frames import ATOMS, COMMITTED, FRAMES, LAYOUT, VERSION, FrameReader, FrameWriter
from .validate import MIN_DISTANCE, ValidationReport, validate_frames

__all__ = ["FrameStore", "LAYOUT", "VERSION", "COMMITTED", "ATOMS", "FRAMES"]

LABEL_GROUP = "labels"
#: per-frame columns of a label store, as FrameArrays names them
_PER_FRAME = FrameArrays.per_frame_names()


class FrameStore:
    """Labelled frames in one HDF5 file (layout in the module docstring).

    Args:
        path: the ``.h5`` file.
        mode: "r" (read only; the file must exist), "a" (read/append; created if missing), or
            "w" (create, replacing any existing file).

    Use as a context manager or call :meth:`close`. ``len(store)`` is the committed frame count.
    """

    def __init__(self, path, mode: str = "a"):
        import h5py

        if mode not in ("r", "a", "w"):
            raise ValueError(f"mode must be 'r', 'a' or 'w', got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        if self.path.is_dir():
            raise UserError(f"{self.path} is a directory, not an HDF5 frame store: give the .h5 file")
        if mode == "r" and not self.path.is_file():
            raise UserError(f"{self.path}: no such frame store")
        if mode == "w" or (mode == "a" and not self.path.exists()):
            h5frames.create_file(str(self.path), h5frames.LABELS, [LABEL_GROUP])
        try:
            self.file = h5py.File(self.path, "r" if mode == "r" else "a", rdcc_nbytes=16 * 2**20)
        except OSError as error:
            if _is_environment_error(error):
                raise
            raise UserError(f"{self.path}: cannot open as an HDF5 frame store ({_h5_reason(error)}); "
                            f"{_DAMAGED_FIX.format(path=self.path)}") from None
        try:
            with self._reading():
                self._setup()
        except BaseException:
            self.file.close()
            raise
        self._in_transaction = False

    # -- opening ---------------------------------------------------------------------------------

    def _setup(self) -> None:
        if "layout" not in self.file.attrs and len(self.file) == 0 and self.mode != "r":
            h5frames.create_layout(self.file, h5frames.LABELS, [LABEL_GROUP])
        kind = FrameReader if self.mode == "r" else FrameWriter
        try:
            self._io = kind(self.file, self.path, fix=_DAMAGED_FIX.format(path=self.path), name="frame store")
        except UserError as error:
            if "not an acnn_mpi" in str(error):
                raise UserError(f"{self.path} is an HDF5 file but not an acnn_mpi frame store") from None
            raise
        if self._io.flat or LABEL_GROUP not in self._io.groups:
            raise UserError(f"{self.path} holds {self._io.kind} structures without labels (energy, forces), "
                            "not a label store: label them (python -m acnn_mpi label --input "
                            f"{self.path} --out LABELS.h5)")

    # -- damage ----------------------------------------------------------------------------------

    def _damaged(self, what: str) -> UserError:
        """The error for a store whose insides are not what this module wrote."""
        return self._io.damaged(what)

    @contextmanager
    def _reading(self):
        """Turn HDF5's errors about damaged insides (unreadable headers, heaps, B-trees; missing
        objects) into one-line UserErrors naming the file."""
        try:
            yield
        except UserError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
            if isinstance(error, OSError) and _is_environment_error(error):
                raise
            raise UserError(f"{self.path}: the frame store is damaged ({_h5_reason(error)}); "
                            f"{_DAMAGED_FIX.format(path=self.path)}") from None

    def verify(self, chunk_size: int = 65536) -> None:
        """Read every committed row and check it (atom offsets consistent, atomic numbers real,
        coordinates and labels finite); raises the damaged-store UserError otherwise."""
        with self._reading():
            self._io.offsets()
            for start in range(0, len(self), chunk_size):
                rows = np.arange(start, min(start + chunk_size, len(self)))
                for name in (keys.CELL, keys.ENERGY):
                    if not np.all(np.isfinite(self._io.read(name, rows))):
                        raise self._damaged(f"non-finite {name} in frames {start}-{rows[-1]}")
            for start in range(0, self.n_atoms, chunk_size * 16):
                stop = min(start + chunk_size * 16, self.n_atoms)
                numbers = self._io.dataset(keys.NUMBERS)[start:stop]
                if numbers.size and (numbers.min() < 1 or numbers.max() > 118):
                    raise self._damaged(f"atomic numbers outside 1-118 in atom rows {start}-{stop - 1}")
                for name in (keys.POSITIONS, keys.FORCES):
                    if not np.all(np.isfinite(self._io.dataset(name)[start:stop])):
                        raise self._damaged(f"non-finite {name} in atom rows {start}-{stop - 1}")

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()

    def __enter__(self) -> "FrameStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._io)

    @property
    def n_atoms(self) -> int:
        """Atoms in all committed frames."""
        return self._io.n_atoms

    def __repr__(self) -> str:
        return f"FrameStore({str(self.path)!r}, mode={self.mode!r}, frames={len(self)})"

    # -- writing ---------------------------------------------------------------------------------

    def append(self, frames: Sequence, *, source: Optional[str] = None,
               iteration: Optional[int] = None, labeller: Optional[str] = None,
               tags: Optional[str] = None, on_bad: str = "refuse",
               allowed_elements: Optional[Iterable] = None, label_keys: LabelKeys = LabelKeys(),
               min_distance: float = MIN_DISTANCE, first_index: int = 0,
               name: str = "frame") -> ValidationReport:
        """Validate ASE ``Atoms`` frames and append the good ones (all or nothing).

        ``source``/``iteration``/``labeller``/``tags`` apply to every frame when given, else each
        frame's ``atoms.info`` value is kept (``structure_id`` always comes from ``atoms.info``).
        Validation (``on_bad``, ``allowed_elements``, ``min_distance``): see
        :func:`~acnn_mpi.data.validate.validate_frames`; returns its report.

        Raises:
            UserError: bad frames with ``on_bad="refuse"`` (nothing is written), or no frames.
        """
        report = validate_frames(frames, allowed_elements=allowed_elements, on_bad=on_bad,
                                 label_keys=label_keys, min_distance=min_distance,
                                 first_index=first_index, name=name)
        good = [frames[i] for i in report.good]
        if good:
            self.append_arrays(FrameArrays.from_atoms(good, label_keys, source=source,
                                                      iteration=iteration, labeller=labeller,
                                                      tags=tags))
        return report

    def append_arrays(self, arrays: FrameArrays) -> None:
        """Append packed frames as they are (no validation); committed at once unless inside
        :meth:`transaction`."""
        if self.mode == "r":
            raise ValueError(f"{self.path} is open read-only")
        if len(arrays) == 0:
            return
        self._write(arrays)
        if not self._in_transaction:
            self._commit()

    def _write(self, arrays: FrameArrays) -> None:
        """Write rows after the written ones without committing them."""
        if int(arrays.n_atoms.sum()) != len(arrays.numbers):
            raise ValueError("FrameArrays: n_atoms does not add up to the per-atom rows")
        self._io.write({name: getattr(arrays, name) for name in _PER_FRAME},
                       {name: getattr(arrays, name) for name in FrameArrays.PER_ATOM})

    def _commit(self) -> None:
        self._io.commit()

    @contextmanager
    def transaction(self):
        """Appends inside the block become visible together at its end, or not at all if it
        raises (a long import is then all-or-nothing)::

            with store.transaction():
                for chunk in chunks:
                    store.append(chunk, source="run-1")
        """
        if self._in_transaction:
            raise RuntimeError("transactions do not nest")
        self._in_transaction = True
        try:
            yield self
        except BaseException:
            self._io.discard()
            raise
        else:
            self._commit()
        finally:
            self._in_transaction = False

    # -- reading ---------------------------------------------------------------------------------

    def _indices(self, indices) -> np.ndarray:
        n = len(self)
        if indices is None:
            return np.arange(n, dtype=np.int64)
        if isinstance(indices, slice):
            return np.arange(n, dtype=np.int64)[indices]
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = np.asarray(indices).reshape(-1)[(idx < 0) | (idx >= n)][0]
            raise IndexError(f"frame index {bad} out of range for a store of {n} frames")
        return idx

    def read_arrays(self, indices=None, strings: bool = True) -> FrameArrays:
        """The frames ``indices`` (default all; any order, repeats allowed) as :class:`FrameArrays`
        (``strings=False`` leaves source/formula/labeller/tags empty and reads faster)."""
        idx = self._indices(indices)
        if idx.size == 0:
            return FrameArrays.empty()
        rows, inverse = np.unique(idx, return_inverse=True)
        names = [n for n in _PER_FRAME if strings or n not in FrameArrays.STRINGS]
        with self._reading():
            offsets = self._io.offsets()
            columns = {name: self._io.read(name, rows) for name in names}
            atom_columns = {name: self._io.read_atoms(name, rows) for name in FrameArrays.PER_ATOM}
        if not strings:
            columns.update({n: np.full(len(rows), "", dtype=object) for n in FrameArrays.STRINGS})
        numbers = atom_columns[keys.NUMBERS]
        if numbers.size and (numbers.min() < 1 or numbers.max() > 118):
            raise self._damaged("atomic numbers outside 1-118")
        # reorder: frames to the requested order; atoms follow their frames
        counts = offsets[rows + 1] - offsets[rows]
        unique_first = h5frames.exclusive_cumsum(counts)
        wanted_counts = counts[inverse]
        atom_order = (np.repeat(unique_first[inverse] - h5frames.exclusive_cumsum(wanted_counts), wanted_counts)
                      + np.arange(int(wanted_counts.sum())))
        data = {name: col[inverse] for name, col in columns.items()}
        data.update({name: col[atom_order] for name, col in atom_columns.items()})
        data[keys.NUMBERS] = data[keys.NUMBERS].astype(np.int64)
        return FrameArrays(**data)

    def read(self, indices=None) -> list:
        """The frames ``indices`` (default all) as ASE ``Atoms`` with a SinglePointCalculator
        (energy eV, forces eV/Å, stress where labelled) and ``info`` (source, iteration,
        labeller, tags, structure_id)."""
        return self.read_arrays(indices).to_atoms()

    def __getitem__(self, index: int):
        return self.read([index])[0]

    def iter_arrays(self, chunk_size: int = 4096, indices=None) -> Iterator[FrameArrays]:
        """Frames in chunks of ``chunk_size`` (all frames in order, or ``indices``), so that a
        store of any size is processed in bounded memory."""
        idx = self._indices(indices)
        for start in range(0, len(idx), max(int(chunk_size), 1)):
            yield self.read_arrays(idx[start:start + chunk_size])

    def iter_frames(self, chunk_size: int = 1024, indices=None) -> Iterator:
        """ASE ``Atoms`` one at a time, read from the file ``chunk_size`` frames at a time."""
        for arrays in self.iter_arrays(chunk_size, indices):
            yield from arrays.to_atoms()

    def __iter__(self):
        return self.iter_frames()

    def column(self, name: str, indices=None) -> np.ndarray:
        """One per-frame column (e.g. ``energy``, ``source``, ``iteration``, ``n_atoms``,
        ``structure_id``) for ``indices`` (default all), read in few slices."""
        names = self._io.names()
        if name not in names:
            raise KeyError(f"no per-frame column {name!r}; columns: {', '.join(names)}")
        idx = self._indices(indices)
        if idx.size == 0:
            ds = self._io.dataset(name)
            return np.zeros((0, *ds.shape[1:]), dtype=object if ds.dtype.kind in "OS" else ds.dtype)
        rows, inverse = np.unique(idx, return_inverse=True)
        with self._reading():
            return self._io.read(name, rows)[inverse]

    def select(self, *, source: Optional[str] = None, iteration: Optional[int] = None,
               formula: Optional[str] = None) -> np.ndarray:
        """Indices (ascending) of the frames matching every given criterion."""
        keep = np.ones(len(self), dtype=bool)
        for name, value in ((SOURCE, source), (ITERATION, iteration), (FORMULA, formula)):
            if value is not None:
                keep &= self.column(name) == value
        return np.flatnonzero(keep)

    def batch(self, indices, dtype=None, device="cpu"):
        """Frames ``indices`` as a :class:`~acnn_mpi.state.Batch` and their labels.

        Returns:
            (batch, targets) with targets ``energy`` (B,) eV, ``forces`` (N, 3) eV/Å, ``stress``
            (B, 3, 3) eV/Å³ ASE sign (zeros where not labelled) and ``has_stress`` (B,) bool, as
            torch tensors on ``device`` (floats in ``dtype``, default float64).
        """
        import torch

        from ..state import Batch

        dtype = torch.float64 if dtype is None else dtype
        arrays = self.read_arrays(indices, strings=False)
        if len(arrays) == 0:
            raise ValueError("batch() needs at least one frame")
        batch = Batch(
            positions=torch.as_tensor(arrays.positions, dtype=dtype, device=device),
            numbers=torch.as_tensor(arrays.numbers, dtype=torch.long, device=device),
            cell=torch.as_tensor(arrays.cell, dtype=dtype, device=device),
            pbc=torch.as_tensor(arrays.pbc, dtype=torch.bool, device=device),
            system_idx=torch.as_tensor(np.repeat(np.arange(len(arrays)), arrays.n_atoms), device=device),
        )
        stress = np.where(arrays.has_stress[:, None, None], arrays.stress, 0.0)
        targets = {
            keys.ENERGY: torch.as_tensor(arrays.energy, dtype=dtype, device=device),
            keys.FORCES: torch.as_tensor(arrays.forces, dtype=dtype, device=device),
            keys.STRESS: torch.as_tensor(stress, dtype=dtype, device=device),
            HAS_STRESS: torch.as_tensor(arrays.has_stress, dtype=torch.bool, device=device),
        }
        return batch, targets

    def metadata(self, chunk_size: int = 65536) -> dict:
        """Summary: path, frames, atoms, elements (symbols by atomic number), frames with stress,
        and frame counts by source, iteration and formula (read in chunks)."""
        from ase.formula import Formula

        by_source, by_iteration, by_formula = Counter(), Counter(), Counter()
        with_stress = 0
        min_atoms, max_atoms = None, None
        for start in range(0, len(self), chunk_size):
            rows = np.arange(start, min(start + chunk_size, len(self)))
            with self._reading():
                cols = {name: self._io.read(name, rows) for name in (SOURCE, ITERATION, FORMULA, HAS_STRESS, N_ATOMS)}
            for counter, name in ((by_source, SOURCE), (by_iteration, ITERATION), (by_formula, FORMULA)):
                values, counts = np.unique(cols[name], return_counts=True)
                counter.update(dict(zip(values.tolist(), counts.tolist())))
            with_stress += int(cols[HAS_STRESS].sum())
            lo, hi = int(cols[N_ATOMS].min()), int(cols[N_ATOMS].max())
            min_atoms = lo if min_atoms is None else min(min_atoms, lo)
            max_atoms = hi if max_atoms is None else max(max_atoms, hi)
        from ase.data import atomic_numbers

        try:
            symbols = {s for f in by_formula for s in Formula(f).count()}
        except ValueError as error:
            raise self._damaged(f"a formula that is not one: {error}") from None
        return {
            "path": str(self.path),
            "frames": len(self),
            "atoms": self.n_atoms,
            "atoms_per_frame": [min_atoms, max_atoms] if len(self) else [],
            "elements": sorted(symbols, key=lambda s: atomic_numbers[s]),
            "with_stress": with_stress,
            "by_source": dict(sorted(by_source.items())),
            "by_iteration": {int(k): v for k, v in sorted(by_iteration.items())},
            "by_formula": dict(sorted(by_formula.items(), key=lambda kv: (-kv[1], kv[0]))),
        }


#: how to go on from a damaged store (``path`` filled in)
_DAMAGED_FIX = ("restore it from a copy, or move it away (mv {path} {path}.bad) to start a new store "
                "without its frames")


def _h5_reason(error: BaseException) -> str:
    """HDF5's own words, without h5py's 'Unable to synchronously open object' framing."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return text.replace("Unable to synchronously ", "cannot ").replace("Can't synchronously ", "cannot ")


def _is_environment_error(error: OSError) -> bool:
    """A full disk or a refused permission: the file may be fine, the machine is not."""
    import errno

    return error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS) or \
        "No space left on device" in str(error)
