"""The labelled-frame store: one HDF5 file, appendable without rewriting, read lazily.

Layout (names from :mod:`acnn_mpi.keys` and :mod:`acnn_mpi.data.frames`)::

    /                 attrs: layout = "acnn_mpi frame store", version = 1,
                             n_frames = committed frame count (the commit marker)
    /atoms/           per atom, frames concatenated; resizable, chunked along axis 0
        positions     (N, 3) float64, Å
        numbers       (N,)   int32, atomic numbers
        forces        (N, 3) float64, eV/Å
    /frames/          per frame; resizable, chunked along axis 0
        atom_offset   (F,)   int64, row of the frame's first atom in /atoms
        n_atoms       (F,)   int64
        cell          (F, 3, 3) float64, Å, rows a, b, c
        pbc           (F, 3) bool
        energy        (F,)   float64, eV
        stress        (F, 3, 3) float64, eV/Å³, ASE sign (positive = tensile); NaN if not labelled
        has_stress    (F,)   bool
        structure_id  (F,)   int64, -1 when none
        iteration     (F,)   int64
        source, formula, labeller, tags   (F,) UTF-8 strings

Crash safety: an append writes (and flushes) the data first and raises the ``n_frames`` attribute
last, so readers see all of an append or none of it. Rows beyond ``n_frames`` (left by a writer
killed mid-append) are never read, and opening the store for writing cuts them off. HDF5 itself
can still be damaged by a kill *during* a flush of its metadata; keep copies of stores that matter.

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
from .frames import (ATOM_OFFSET, FORMULA, HAS_STRESS, ITERATION, N_ATOMS, SOURCE, FrameArrays,
                     LabelKeys)
from .validate import MIN_DISTANCE, ValidationReport, validate_frames

LAYOUT = "acnn_mpi frame store"
VERSION = 1
COMMITTED = "n_frames"
ATOMS, FRAMES = "atoms", "frames"

_STR = "str"
#: per-atom datasets: name -> (dtype, shape of one row)
_PER_ATOM = {keys.POSITIONS: ("f8", (3,)), keys.NUMBERS: ("i4", ()), keys.FORCES: ("f8", (3,))}
#: per-frame datasets: name -> (dtype, shape of one row)
_PER_FRAME = {
    ATOM_OFFSET: ("i8", ()), N_ATOMS: ("i8", ()), keys.CELL: ("f8", (3, 3)), keys.PBC: ("bool", (3,)),
    keys.ENERGY: ("f8", ()), keys.STRESS: ("f8", (3, 3)), HAS_STRESS: ("bool", ()),
    keys.STRUCTURE_ID: ("i8", ()), ITERATION: ("i8", ()),
    SOURCE: (_STR, ()), FORMULA: (_STR, ()), "labeller": (_STR, ()), "tags": (_STR, ()),
}
_ATOM_CHUNK = 4096     # rows per HDF5 chunk
_FRAME_CHUNK = 1024
_DENSE_SLACK = 1024    # rows that may be read in vain to make a read one slice
_LISTED_ROWS = 256     # up to this many scattered rows are read in one listed read


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
        if mode != "r":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.file = h5py.File(self.path, mode, rdcc_nbytes=16 * 2**20)
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
        self._offsets_cache: Optional[np.ndarray] = None

    # -- opening ---------------------------------------------------------------------------------

    def _setup(self) -> None:
        import h5py

        attrs = self.file.attrs
        if "layout" not in attrs and len(self.file) == 0 and self.mode != "r":
            attrs["layout"] = LAYOUT
            attrs["version"] = VERSION
            attrs[COMMITTED] = 0
            for group, table, chunk in ((ATOMS, _PER_ATOM, _ATOM_CHUNK), (FRAMES, _PER_FRAME, _FRAME_CHUNK)):
                g = self.file.create_group(group)
                for name, (dtype, shape) in table.items():
                    dt = h5py.string_dtype("utf-8") if dtype == _STR else dtype
                    g.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dt,
                                     chunks=(chunk, *shape))
            self.file.flush()
        if attrs.get("layout") != LAYOUT:
            raise UserError(f"{self.path} is an HDF5 file but not an acnn_mpi frame store")
        if int(attrs.get("version", 0)) > VERSION:
            raise UserError(f"{self.path}: frame store version {attrs['version']} is newer than this "
                            f"acnn_mpi reads ({VERSION}); upgrade acnn_mpi")
        self._atoms = self.file[ATOMS]
        self._frames = self.file[FRAMES]
        self._committed = _count_attribute(attrs.get(COMMITTED))
        if self._committed is None:
            raise self._damaged(f"its {COMMITTED} attribute is '{attrs.get(COMMITTED)}', not a frame count")
        for group, table in ((self._frames, _PER_FRAME), (self._atoms, _PER_ATOM)):
            for name, (dtype, shape) in table.items():
                ds = group.get(name)
                if not isinstance(ds, h5py.Dataset):
                    raise self._damaged(f"{group.name.strip('/')}/{name} is missing or unreadable")
                if ds.shape[1:] != shape or (ds.dtype.kind == "O") != (dtype == _STR):
                    raise self._damaged(f"{group.name.strip('/')}/{name} has shape {ds.shape} and type "
                                        f"{ds.dtype}, not rows of {shape} {dtype}")
        for name in _PER_FRAME:
            if self._frames[name].shape[0] < self._committed:
                raise self._damaged(f"{FRAMES}/{name} is shorter than the {self._committed} "
                                    "committed frames")
        self._committed_atoms = self._atoms_before(self._committed)
        for name in _PER_ATOM:
            if self._atoms[name].shape[0] < self._committed_atoms:
                raise self._damaged(f"{ATOMS}/{name} is shorter than the {self._committed_atoms} "
                                    "committed atoms")
        if self.mode != "r":
            self._truncate(self._committed, self._committed_atoms)
        self._written, self._written_atoms = self._committed, self._committed_atoms

    def _atoms_before(self, frame: int) -> int:
        if frame == 0:
            return 0
        last = frame - 1
        count = int(self._frames[ATOM_OFFSET][last]) + int(self._frames[N_ATOMS][last])
        if not 0 < count < 2**48:
            raise self._damaged(f"the frames' atom offsets end at {count}")
        return count

    # -- damage ----------------------------------------------------------------------------------

    def _damaged(self, what: str) -> UserError:
        """The error for a store whose insides are not what this module wrote."""
        return UserError(f"{self.path}: the frame store is damaged ({what}); "
                         f"{_DAMAGED_FIX.format(path=self.path)}")

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
            raise self._damaged(_h5_reason(error)) from None

    def verify(self, chunk_size: int = 65536) -> None:
        """Read every committed row and check it (atom offsets consistent, atomic numbers real,
        coordinates and labels finite); raises the damaged-store UserError otherwise."""
        offsets = self._offsets()
        with self._reading():
            n_atoms = self._frames[N_ATOMS][: len(self)]
            if len(self) and (offsets[0] != 0 or np.any(np.diff(offsets) != n_atoms) or np.any(n_atoms < 0)):
                raise self._damaged("the frames' atom offsets and counts do not add up")
            for start in range(0, len(self), chunk_size):
                rows = np.arange(start, min(start + chunk_size, len(self)))
                columns = self._read_frame_columns(rows, [keys.CELL, keys.ENERGY])
                for name, values in columns.items():
                    if not np.all(np.isfinite(values)):
                        raise self._damaged(f"non-finite {name} in frames {start}-{rows[-1]}")
            for start in range(0, self.n_atoms, chunk_size * 16):
                stop = min(start + chunk_size * 16, self.n_atoms)
                numbers = self._atoms[keys.NUMBERS][start:stop]
                if numbers.size and (numbers.min() < 1 or numbers.max() > 118):
                    raise self._damaged(f"atomic numbers outside 1-118 in atom rows {start}-{stop - 1}")
                for name in (keys.POSITIONS, keys.FORCES):
                    if not np.all(np.isfinite(self._atoms[name][start:stop])):
                        raise self._damaged(f"non-finite {name} in atom rows {start}-{stop - 1}")

    def _truncate(self, n_frames: int, n_atoms: int) -> int:
        """Cut rows beyond ``n_frames`` / ``n_atoms``; returns the frame rows dropped."""
        dropped = 0
        for name in _PER_FRAME:
            ds = self._frames[name]
            dropped = max(dropped, ds.shape[0] - n_frames)
            if ds.shape[0] != n_frames:
                ds.resize(n_frames, axis=0)
        for name in _PER_ATOM:
            if self._atoms[name].shape[0] != n_atoms:
                self._atoms[name].resize(n_atoms, axis=0)
        if dropped:
            self.file.flush()
        return dropped

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()

    def __enter__(self) -> "FrameStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self._committed

    @property
    def n_atoms(self) -> int:
        """Atoms in all committed frames."""
        return self._committed_atoms

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
        a0, f0 = self._written_atoms, self._written
        n_atoms, n_frames = len(arrays.numbers), len(arrays)
        if int(arrays.n_atoms.sum()) != n_atoms:
            raise ValueError("FrameArrays: n_atoms does not add up to the per-atom rows")
        for name in _PER_ATOM:
            ds = self._atoms[name]
            ds.resize(a0 + n_atoms, axis=0)
            ds[a0:] = getattr(arrays, name)
        columns = {ATOM_OFFSET: a0 + arrays.offsets[:-1]}
        for name in _PER_FRAME:
            ds = self._frames[name]
            ds.resize(f0 + n_frames, axis=0)
            ds[f0:] = columns[name] if name in columns else getattr(arrays, name)
        self._written, self._written_atoms = f0 + n_frames, a0 + n_atoms

    def _commit(self) -> None:
        self.file.flush()
        self.file.attrs[COMMITTED] = self._written
        self.file.flush()
        self._committed, self._committed_atoms = self._written, self._written_atoms
        self._offsets_cache = None

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
            self._truncate(self._committed, self._committed_atoms)
            self._written, self._written_atoms = self._committed, self._committed_atoms
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

    def _offsets(self) -> np.ndarray:
        """(F + 1,) first atom of each committed frame, and the atom count at the end (cached)."""
        if self._offsets_cache is None:
            out = np.empty(len(self) + 1, dtype=np.int64)
            with self._reading():
                out[:-1] = self._frames[ATOM_OFFSET][: len(self)]
            out[-1] = self._committed_atoms
            if np.any(np.diff(out) < 0) or (len(out) > 1 and out[0] != 0):
                raise self._damaged("the frames' atom offsets are not increasing")
            self._offsets_cache = out
        return self._offsets_cache

    def _read_frame_columns(self, rows: np.ndarray, names: Iterable[str]) -> dict:
        """Per-frame columns at sorted unique ``rows``."""
        return {name: _gather(self._frames[name], rows, rows + 1) for name in names}

    def read_arrays(self, indices=None, strings: bool = True) -> FrameArrays:
        """The frames ``indices`` (default all; any order, repeats allowed) as :class:`FrameArrays`
        (``strings=False`` leaves source/formula/labeller/tags empty and reads faster)."""
        idx = self._indices(indices)
        if idx.size == 0:
            return FrameArrays.empty()
        rows, inverse = np.unique(idx, return_inverse=True)
        names = [n for n in _PER_FRAME if n != ATOM_OFFSET and (strings or n not in FrameArrays.STRINGS)]
        offsets = self._offsets()
        starts, stops = offsets[rows], offsets[rows + 1]
        with self._reading():
            columns = self._read_frame_columns(rows, names)
            atom_columns = {name: _gather(self._atoms[name], starts, stops) for name in _PER_ATOM}
        if not strings:
            columns.update({n: np.full(len(rows), "", dtype=object) for n in FrameArrays.STRINGS})
        if np.any(columns[N_ATOMS] != stops - starts):
            raise self._damaged("a frame's atom count differs from its atom offsets")
        numbers = atom_columns[keys.NUMBERS]
        if numbers.size and (numbers.min() < 1 or numbers.max() > 118):
            raise self._damaged("atomic numbers outside 1-118")
        # reorder: frames to the requested order; atoms follow their frames
        counts = stops - starts
        unique_first = np.zeros(len(rows), dtype=np.int64)
        np.cumsum(counts[:-1], out=unique_first[1:])
        wanted_counts = counts[inverse]
        atom_order = (np.repeat(unique_first[inverse] - _exclusive_cumsum(wanted_counts), wanted_counts)
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
        ``structure_id``) for ``indices`` (default all), read in chunks."""
        if name not in _PER_FRAME:
            raise KeyError(f"no per-frame column {name!r}; columns: {', '.join(_PER_FRAME)}")
        idx = self._indices(indices)
        if idx.size == 0:
            return np.zeros((0, *_PER_FRAME[name][1]), dtype=object if _PER_FRAME[name][0] == _STR
                            else _PER_FRAME[name][0])
        rows, inverse = np.unique(idx, return_inverse=True)
        with self._reading():
            return self._read_frame_columns(rows, [name])[name][inverse]

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
                cols = self._read_frame_columns(rows, [SOURCE, ITERATION, FORMULA, HAS_STRESS, N_ATOMS])
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


def _count_attribute(value) -> Optional[int]:
    """A non-negative integer attribute value, or None if it is anything else."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        return None
    return int(value) if value >= 0 else None


def _h5_reason(error: BaseException) -> str:
    """HDF5's own words, without h5py's 'Unable to synchronously open object' framing."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return text.replace("Unable to synchronously ", "cannot ").replace("Can't synchronously ", "cannot ")


def _is_environment_error(error: OSError) -> bool:
    """A full disk or a refused permission: the file may be fine, the machine is not."""
    import errno

    return error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS) or \
        "No space left on device" in str(error)


def _exclusive_cumsum(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values), dtype=np.int64)
    if len(values) > 1:
        np.cumsum(values[:-1], out=out[1:])
    return out


def _gather(ds, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Rows [starts[k], stops[k]) of dataset ``ds`` for ascending, non-overlapping ranges,
    concatenated, in few HDF5 reads: one slice when the ranges lie close together; one listed
    read for a few scattered single rows (a string read costs ~0.5 ms, so this matters); else one
    slice per group of ranges less than a chunk apart."""
    starts = np.asarray(starts, dtype=np.int64)
    stops = np.asarray(stops, dtype=np.int64)
    strings = ds.dtype.kind == "O"
    lengths = stops - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros((0, *ds.shape[1:]), dtype=object if strings else ds.dtype)
    source = ds.asstr() if strings else ds
    lo, hi = int(starts[0]), int(stops[-1])
    if hi - lo <= 2 * total + _DENSE_SLACK:  # close together: one slice, then pick the rows
        block = np.asarray(source[lo:hi])
        if hi - lo == total:
            return block
        return block[np.repeat(starts - lo - _exclusive_cumsum(lengths), lengths) + np.arange(total)]
    if total <= _LISTED_ROWS and np.all(lengths == 1):  # a few scattered rows: one listed read
        return np.asarray(source[starts])
    gap = ds.chunks[0] if ds.chunks else _DENSE_SLACK
    new_block = np.ones(len(starts), dtype=bool)
    new_block[1:] = starts[1:] - stops[:-1] > gap
    block_of = np.cumsum(new_block) - 1
    block_start = starts[new_block]
    block_stop = np.maximum.reduceat(stops, np.flatnonzero(new_block))
    parts = [np.asarray(source[int(a):int(b)]) for a, b in zip(block_start, block_stop)]
    buffer = np.concatenate(parts)
    first = _exclusive_cumsum(block_stop - block_start)[block_of] + (starts - block_start[block_of])
    return buffer[np.repeat(first - _exclusive_cumsum(lengths), lengths) + np.arange(total)]
