"""The one HDF5 layout of every set of structures: label stores, relaxation shards, relax inputs,
final relaxations, and the one appending writer and one reader of it.

Layout (names from :mod:`acnn_mpi.keys`; A atoms and F frames committed)::

    /                 attrs: layout = "acnn_mpi frames", version = 2,
                             n_frames = committed frame count (the commit counter),
                             kind = "labels" | "relaxed" | "structures" | "index" (what the set is),
                             column_groups = JSON list of the optional groups present,
                             and the writer's own (a shard: rank, pressure_gpa, settings)
    /atoms/           per atom, frames concatenated; resizable, chunked along axis 0
        numbers       (A,)   int32, atomic numbers                                 [structure]
        positions     (A, 3) float64, Å                                            [structure]
        forces        (A, 3) float64, eV/Å                                         [labels]
    /frames/          per frame; resizable, chunked along axis 0
        atom_offset   (F,)   int64, row of the frame's first atom in /atoms        [structure]
        n_atoms       (F,)   int64                                                 [structure]
        cell          (F, 3, 3) float64, Å, rows a, b, c                           [structure]
        pbc           (F, 3) bool                                                  [structure]
        structure_id  (F,)   int64, -1 when none                                   [structure]
        energy        (F,)   float64, eV                                           [labels, relax]
        formula       (F,)   str, e.g. "Cu3Au"                                     [labels, relax]
        stress        (F, 3, 3) float64, eV/Å³, ASE sign; NaN if not labelled      [labels]
        has_stress    (F,)   bool                                                  [labels]
        iteration     (F,)   int64, campaign iteration that labelled it            [labels]
        source, labeller, tags   (F,) str                                          [labels]
        status, reason          (F,) str (acnn_mpi.relax.status)                   [relax]
        steps         (F,)   int64, optimizer steps                                [relax]
        enthalpy      (F,)   float64, eV, E + PV at the relaxation pressure        [relax]
        volume        (F,)   float64, Å³                                           [relax]
        max_force     (F,)   float64, eV/Å                                         [relax]
        pressure_residual, pressure   (F,) float64, GPa                            [relax]
        fingerprints  (F, S, D) float32 (acnn_mpi.csp.fingerprints)                [fingerprints]

Text (str) is variable-length UTF-8. Columns outside these groups may be added by a writer (their
dtype and row shape from the first data); a reader reads any column by name.

Crash safety: a file is created whole (:func:`create_file`: the empty layout in a temporary file,
renamed in), and :meth:`FrameWriter.append` writes the rows after the committed ones, flushes, and
only then raises ``n_frames`` and flushes again, so readers see all of an append or none of it.
Rows past ``n_frames`` (a writer killed mid-append) are never read, and a writer opening the file
cuts them off and continues from the counter (resume). HDF5 itself can still be damaged by a kill
during a flush of its metadata: a reader turns that into a :class:`~acnn_mpi.errors.DamagedFileError`
naming the file.

Earlier files: version-1 label stores (layout "acnn_mpi frame store") have these groups and
names, and are read as they are (a writer upgrades their attributes in place, with a log line).
Flat files of earlier versions (relaxation shards, relax structure files and ``index.h5``, campaign
chunk files: ``numbers``, ``positions``, ``cell``, ``n_atoms``, ... at the root, committed count
``committed``) are read by the same reader (:attr:`FrameReader.flat`), never written.

Concurrency: one process writes a file at a time; readers open it when no writer has it open.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from .. import keys
from ..errors import DamagedFileError

log = logging.getLogger(__name__)

LAYOUT = "acnn_mpi frames"
VERSION = 2
#: layout name of version-1 label stores (same groups and columns as version 2)
LEGACY_STORE = "acnn_mpi frame store"
COMMITTED = "n_frames"
ATOMS, FRAMES = "atoms", "frames"
KIND, GROUPS_ATTR = "kind", "column_groups"
#: what a file holds (the ``kind`` attribute)
LABELS, RELAXED, STRUCTURES, INDEX = "labels", "relaxed", "structures", "index"

ATOM_OFFSET = "atom_offset"
N_ATOMS = "n_atoms"
FINGERPRINTS = "fingerprints"
TEXT = "str"


@dataclass(frozen=True)
class Column:
    """One column: numpy dtype (or :data:`TEXT`), shape of one row (None: from the first data),
    per atom or per frame."""

    dtype: str
    shape: Optional[tuple] = ()
    per_atom: bool = False


COLUMNS: dict[str, Column] = {
    keys.NUMBERS: Column("i4", (), True), keys.POSITIONS: Column("f8", (3,), True),
    keys.FORCES: Column("f8", (3,), True),
    ATOM_OFFSET: Column("i8"), N_ATOMS: Column("i8"), keys.CELL: Column("f8", (3, 3)),
    keys.PBC: Column("bool", (3,)), keys.STRUCTURE_ID: Column("i8"),
    keys.ENERGY: Column("f8"), "formula": Column(TEXT),
    keys.STRESS: Column("f8", (3, 3)), "has_stress": Column("bool"), "iteration": Column("i8"),
    "source": Column(TEXT), "labeller": Column(TEXT), "tags": Column(TEXT),
    keys.STATUS: Column(TEXT), keys.REASON: Column(TEXT), "steps": Column("i8"),
    keys.ENTHALPY: Column("f8"), keys.VOLUME: Column("f8"), "max_force": Column("f8"),
    "pressure_residual": Column("f8"), "pressure": Column("f8"),
    FINGERPRINTS: Column("f4", None),
}
#: the columns every file has
REQUIRED = (keys.NUMBERS, keys.POSITIONS, ATOM_OFFSET, N_ATOMS, keys.CELL, keys.PBC, keys.STRUCTURE_ID)
#: optional column groups: name -> columns
GROUPS: dict[str, tuple] = {
    "labels": (keys.FORCES, keys.ENERGY, keys.STRESS, "has_stress", "iteration", "source", "formula",
               "labeller", "tags"),
    "relax": (keys.STATUS, keys.REASON, "steps", keys.ENERGY, keys.ENTHALPY, keys.VOLUME, "max_force",
              "pressure_residual", "pressure", "formula"),
    "fingerprints": (FINGERPRINTS,),
}
_CHUNK_BYTES = 1 << 20     # at most this many bytes per HDF5 chunk ...
_CHUNK_ROWS = {True: 4096, False: 1024}  # ... and rows per chunk (per atom, per frame)
_DENSE_SLACK = 1024        # rows that may be read in vain to make a read one slice
_LISTED_ROWS = 256         # up to this many scattered rows are read in one listed read
#: flat files of earlier versions: columns at the root, offset column, commit attribute
_FLAT_OFFSET, _FLAT_COMMITTED = "atom_start", "committed"
_FLAT_NEEDS = (keys.NUMBERS, keys.POSITIONS, keys.CELL, N_ATOMS)


def group_columns(groups: Iterable[str]) -> list[str]:
    """The required columns and those of ``groups``, each once, in layout order."""
    names = list(REQUIRED)
    for group in groups:
        if group not in GROUPS:
            raise ValueError(f"unknown column group {group!r}; groups: {', '.join(GROUPS)}")
        names += [n for n in GROUPS[group] if n not in names]
    return names


def _h5_dtype(dtype: str):
    import h5py

    return h5py.string_dtype("utf-8") if dtype == TEXT else np.dtype(dtype)


def _chunk_rows(shape: tuple, itemsize: int, per_atom: bool) -> int:
    row_bytes = max(int(np.prod(shape, dtype=np.int64)) * itemsize, 1)
    return int(np.clip(_CHUNK_BYTES // row_bytes, 16, _CHUNK_ROWS[per_atom]))


def create_column(group, name: str, dtype, shape: tuple, per_atom: bool, rows: int = 0):
    dtype = _h5_dtype(dtype) if isinstance(dtype, str) else dtype
    itemsize = 8 if dtype.kind == "O" else dtype.itemsize
    return group.create_dataset(name, shape=(rows, *shape), maxshape=(None, *shape), dtype=dtype,
                                chunks=(_chunk_rows(shape, itemsize, per_atom), *shape))


def create_layout(f, kind: str, groups: Sequence[str] = (), attrs: Optional[Mapping] = None) -> None:
    """Write the empty layout into the empty, writable h5py file ``f``: the required columns and
    those of ``groups`` (columns of unknown row shape, the fingerprints, are made at the first
    write), ``kind`` and the writer's ``attrs``."""
    if len(f) or LAYOUT == f.attrs.get("layout"):
        raise ValueError(f"{f.filename} is not empty")
    atoms, frames = f.create_group(ATOMS), f.create_group(FRAMES)
    for name in group_columns(groups):
        column = COLUMNS[name]
        if column.shape is not None:
            create_column(atoms if column.per_atom else frames, name, column.dtype, column.shape,
                            column.per_atom)
    for name, value in (attrs or {}).items():
        f.attrs[name] = value
    f.attrs.update({"layout": LAYOUT, "version": VERSION, KIND: kind, GROUPS_ATTR: json.dumps(list(groups)),
                    COMMITTED: 0})
    f.flush()


def create_file(path: str, kind: str, groups: Sequence[str] = (), attrs: Optional[Mapping] = None) -> None:
    """Create ``path`` (replacing any file there) holding the empty layout (:func:`create_layout`).

    The layout is written to a hidden temporary file beside ``path``, fsynced and renamed over
    it, so a process killed at any moment leaves either no file or a complete, empty one: never a
    torn superblock that a resumed job would have to stop at."""
    import h5py

    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            create_layout(f, kind, groups, attrs)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def count_attribute(value) -> Optional[int]:
    """A non-negative integer attribute value, or None if it is anything else."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        return None
    return int(value) if value >= 0 else None


class FrameReader:
    """Read side of one open h5py file of the layout (or a flat file of an earlier version).

    Attributes:
        path: the file; kind: what it holds; groups: its optional column groups; version;
        flat: a flat file of an earlier version (read only); attrs: the file's attributes.

    Raises:
        DamagedFileError: not a file of the layout, or its insides are not what a writer left
            (``fix``: how to go on, ending the message).
    """

    def __init__(self, f, path=None, *, fix: str = "restore it from a copy or write it again",
                 name: str = "frame file", check: bool = True):
        self.file, self.path, self.fix, self.name = f, str(path or f.filename), fix, name
        attrs = f.attrs
        self.attrs = attrs
        self.flat = False
        layout = attrs.get("layout")
        if layout in (LAYOUT, LEGACY_STORE) and ATOMS in f and FRAMES in f:
            self.version = int(attrs.get("version", 0))
            if self.version > VERSION:
                raise DamagedFileError(f"{self.path}: frame layout version {self.version} is newer than "
                                       f"this acnn_mpi reads ({VERSION}); upgrade acnn_mpi")
            self.atoms, self.frames = f[ATOMS], f[FRAMES]
            self._offset_name = ATOM_OFFSET
            committed = count_attribute(attrs.get(COMMITTED))
            if committed is None:
                raise self.damaged(f"its {COMMITTED} attribute is '{attrs.get(COMMITTED)}', not a frame count")
            self.kind = str(attrs.get(KIND, LABELS))
            self.groups = self._groups()
        elif layout in (LAYOUT, LEGACY_STORE):
            raise self.damaged(f"no {ATOMS}/ or {FRAMES}/ group")
        elif all(name in f for name in _FLAT_NEEDS):
            self.flat, self.version = True, 1
            self.atoms = self.frames = f
            self._offset_name = _FLAT_OFFSET if _FLAT_OFFSET in f else None
            committed = count_attribute(attrs.get(_FLAT_COMMITTED, f[keys.CELL].shape[0]))
            if committed is None:
                raise self.damaged(f"its {_FLAT_COMMITTED} attribute is not a count")
            self.kind = RELAXED if keys.STATUS in f else STRUCTURES
            self.groups = [g for g in GROUPS if g != "labels" and all(n in f for n in GROUPS[g][:2])]
        else:
            raise DamagedFileError(f"{self.path} is an HDF5 file but not an acnn_mpi {name} (no atoms/ "
                                   "and frames/ groups, see acnn_mpi.data.h5frames)")
        self._committed = committed
        self._committed_atoms: Optional[int] = None
        self._offsets: Optional[np.ndarray] = None
        self._columns: dict = {}   # name -> (dataset, per atom), looked up once (~50 µs each)
        self._indexed = False
        if check:  # without: a by-row read of a few columns opens the file in a fraction of the time
            self._index_columns()
            self._check_lengths()

    def _index_columns(self) -> dict:
        """name -> (dataset, per atom) of every column of the file."""
        import h5py

        if not self._indexed:
            pairs = ((self.frames, None),) if self.flat else ((self.frames, False), (self.atoms, True))
            for group, per_atom in pairs:
                for name, ds in group.items():
                    if isinstance(ds, h5py.Dataset):
                        self._columns[name] = (ds, COLUMNS.get(name, Column("")).per_atom if per_atom is None
                                               else per_atom)
            self._indexed = True
        return self._columns

    def _entry(self, name: str):
        """(dataset, per atom) of column ``name``, or None."""
        import h5py

        entry = self._columns.get(name)
        if entry is None and not self._indexed:
            per_atom = COLUMNS.get(name, Column("")).per_atom
            ds = (self.atoms if per_atom else self.frames).get(name)
            if ds is None and per_atom is False:
                ds = self.atoms.get(name)
                per_atom = ds is not None
            if isinstance(ds, h5py.Dataset):
                entry = self._columns[name] = (ds, per_atom)
        return entry

    def _groups(self) -> list:
        raw = self.attrs.get(GROUPS_ATTR)
        if raw is None:  # a version-1 label store
            return ["labels"]
        try:
            groups = json.loads(raw)
        except (TypeError, ValueError):
            raise self.damaged(f"its {GROUPS_ATTR} attribute is not a JSON list") from None
        unknown = [g for g in groups if g not in GROUPS] if isinstance(groups, list) else [groups]
        if unknown:
            raise self.damaged(f"unknown column groups {unknown}")
        return groups

    def damaged(self, what: str) -> DamagedFileError:
        return DamagedFileError(f"{self.path}: the {self.name} is damaged ({what}); {self.fix}")

    def _dataset(self, name: str):
        entry = self._entry(name)
        if entry is None:
            per_atom = COLUMNS.get(name, Column("")).per_atom
            where = "" if self.flat else f"{ATOMS if per_atom else FRAMES}/"
            raise self.damaged(f"{where}{name} is missing or unreadable")
        return entry[0]

    def _check_lengths(self) -> None:
        expected = [n for n in group_columns(self.groups) if not (self.flat and self._entry(n) is None)]
        for name in expected:
            if name == ATOM_OFFSET and self._offset_name != ATOM_OFFSET:
                continue
            ds = self._dataset(name)
            column = COLUMNS[name]
            text = ds.dtype.kind in "OS"
            if (column.shape is not None and ds.shape[1:] != column.shape) or text != (column.dtype == TEXT):
                raise self.damaged(f"{name} has shape {ds.shape} and type {ds.dtype}, not rows of "
                                   f"{column.shape} {column.dtype}")
            if not column.per_atom and ds.shape[0] < self._committed:
                raise self.damaged(f"{name} is shorter than the {self._committed} committed frames")
        self._committed_atoms = self._atoms_before(self._committed)
        for name in (keys.NUMBERS, keys.POSITIONS):
            if self._dataset(name).shape[0] < self._committed_atoms:
                raise self.damaged(f"{name} is shorter than the {self._committed_atoms} committed atoms")

    def _atoms_before(self, frame: int) -> int:
        if frame == 0:
            return 0
        if self._offset_name is None:
            return int(self._dataset(N_ATOMS)[:frame].sum())
        last = frame - 1
        count = int(self._dataset(self._offset_name)[last]) + int(self._dataset(N_ATOMS)[last])
        if not 0 < count < 2**48:
            raise self.damaged(f"the frames' atom offsets end at {count}")
        return count

    def __len__(self) -> int:
        return self._committed

    @property
    def n_atoms(self) -> int:
        """Atoms in all committed frames."""
        if self._committed_atoms is None:
            self._committed_atoms = self._atoms_before(self._committed)
        return self._committed_atoms

    def has(self, name: str) -> bool:
        """Whether the file has column ``name`` for every committed frame."""
        entry = self._entry(name)
        return entry is not None and entry[0].shape[0] >= (self.n_atoms if entry[1] else self._committed)

    def names(self) -> list[str]:
        """Per-frame columns of the file (those of its groups first)."""
        frame_columns = [n for n, (_, per_atom) in self._index_columns().items()
                         if not per_atom and not (self.flat and n == _FLAT_OFFSET)]
        listed = [n for n in group_columns(self.groups) if n in frame_columns]
        return listed + sorted(n for n in frame_columns if n not in listed)

    def offsets(self) -> np.ndarray:
        """(F + 1,) first atom row of each committed frame, and the atom count at the end."""
        if self._offsets is None:
            out = np.empty(self._committed + 1, dtype=np.int64)
            n_atoms = np.asarray(self._dataset(N_ATOMS)[: self._committed], dtype=np.int64)
            if self._offset_name is None:
                out[0] = 0
                np.cumsum(n_atoms, out=out[1:])
            else:
                out[:-1] = self._dataset(self._offset_name)[: self._committed]
                out[-1] = self.n_atoms
            if np.any(np.diff(out) < 0) or (len(out) > 1 and out[0] != 0) or np.any(np.diff(out) != n_atoms):
                raise self.damaged("the frames' atom offsets and counts do not add up")
            self._offsets = out
        return self._offsets

    def read(self, name: str, rows=None) -> np.ndarray:
        """Per-frame column ``name`` of ``rows`` (ascending unique frame rows; default all
        committed); text as an object array of ``str`` (equal values share one object)."""
        if name == ATOM_OFFSET:
            return self.offsets()[:-1].copy() if rows is None else self.offsets()[np.asarray(rows)]
        ds = self._dataset(name)
        if rows is None and ds.dtype.kind in "OS":  # text in slices: a million rows never exist as bytes at once
            return _decode_slices(ds, self._committed)
        if rows is None:
            return ds[: self._committed]
        rows = np.asarray(rows, dtype=np.int64)
        return _decode(gather(ds, rows, rows + 1))

    def read_atoms(self, name: str, rows=None) -> np.ndarray:
        """Per-atom column ``name`` of the frames ``rows`` (ascending unique; default all),
        concatenated in frame order."""
        ds = self._dataset(name)
        if rows is None:
            return ds[: self.n_atoms]
        rows = np.asarray(rows, dtype=np.int64)
        offsets = self.offsets()
        return gather(ds, offsets[rows], offsets[rows + 1])

    def dataset(self, name: str):
        """The h5py dataset of column ``name`` (rows past ``len(self)`` are not committed)."""
        return self._dataset(name)


def _decode_slices(ds, n: int, rows: int = 1 << 16) -> np.ndarray:
    """The first ``n`` text rows of ``ds`` decoded ``rows`` at a time (the raw bytes objects of
    a whole column would leave a root reading a million of them ~100 bytes a row of heap)."""
    out = np.empty(n, dtype=object)
    for start in range(0, n, rows):
        out[start:start + rows] = _decode(ds[start:min(start + rows, n)])
    return out


def _decode(values: np.ndarray) -> np.ndarray:
    """Text as str objects (one per distinct value, so a million statuses cost 8 bytes each)."""
    if values.dtype.kind not in "OS":
        return values
    cache: dict = {}
    out = np.empty(values.shape, dtype=object)
    flat = out.reshape(-1)
    for k, v in enumerate(values.reshape(-1)):
        text = cache.get(v)
        if text is None:
            text = cache[v] = v.decode("utf-8", "replace").rstrip("\0") if isinstance(v, bytes) else str(v)
        flat[k] = text
    return out


class FrameWriter(FrameReader):
    """The one appending writer of the layout, on an h5py file open for writing (see
    :func:`create_layout` for a new one). Opening cuts rows past the commit counter (what a
    writer killed mid-append left) and continues from the counter; a version-1 label store gets
    version-2 attributes first (a log line)."""

    def __init__(self, f, path=None, *, fix: str = "restore it from a copy or write it again",
                 name: str = "frame file"):
        super().__init__(f, path, fix=fix, name=name)
        if self.flat:
            raise DamagedFileError(f"{self.path}: a file of an earlier acnn_mpi version (flat layout) "
                                   "is read, not appended to: write a new file")
        if self.attrs.get("layout") == LEGACY_STORE or GROUPS_ATTR not in self.attrs:
            self.attrs.update({"layout": LAYOUT, "version": VERSION, KIND: self.kind,
                               GROUPS_ATTR: json.dumps(self.groups)})
            log.info("%s: frame layout version 1 -> %d (attributes only, the frames are as they were)",
                     self.path, VERSION)
        self.written, self.written_atoms = self._committed, self.n_atoms
        self.discard()

    def _all(self):
        for name, (ds, per_atom) in list(self._index_columns().items()):
            yield name, ds, per_atom

    def discard(self) -> int:
        """Cut rows past the committed ones (an uncommitted write); returns the frame rows cut."""
        cut = 0
        for name, ds, per_atom in self._all():
            keep = self.n_atoms if per_atom else self._committed
            if ds.shape[0] != keep:
                cut = max(cut, 0 if per_atom else ds.shape[0] - keep)
                ds.resize(keep, axis=0)
        self.written, self.written_atoms = self._committed, self.n_atoms
        if cut:
            self.file.flush()
        return cut

    def write(self, frames: Mapping[str, np.ndarray], atoms: Mapping[str, np.ndarray]) -> None:
        """Write frames after the written ones, without committing them. ``frames``: per-frame
        columns (every column of the file but ``atom_offset``, which follows from ``n_atoms``;
        new ones are added), ``atoms``: per-atom columns (concatenated)."""
        n = len(frames[N_ATOMS])
        n_atoms = np.asarray(frames[N_ATOMS], dtype=np.int64)
        counts = {len(np.asarray(v)) for v in atoms.values()}
        if counts != {int(n_atoms.sum())}:
            raise ValueError(f"per-atom columns of {sorted(counts)} rows for n_atoms summing to {n_atoms.sum()}")
        offsets = self.written_atoms + np.concatenate([[0], np.cumsum(n_atoms)[:-1]]).astype(np.int64)
        columns = {**frames, ATOM_OFFSET: offsets}
        present = {name for name, _, _ in self._all()}
        missing = sorted(present - set(columns) - set(atoms))
        if missing:
            raise ValueError(f"{self.path}: the write lacks the columns {', '.join(missing)}")
        wrong = [f"{name}: {len(v)} rows for {n} frames" for name, v in columns.items() if len(v) != n]
        if wrong:
            raise ValueError(f"{self.path}: {'; '.join(wrong)}")
        for table, group, start, per_atom in ((columns, self.frames, self.written, False),
                                              (atoms, self.atoms, self.written_atoms, True)):
            for name, values in table.items():
                values = np.asarray(values, dtype=object) if _is_text(name, values) else np.asarray(values)
                entry = self._columns.get(name)
                ds = entry[0] if entry is not None else self._new_column(group, name, values, start, per_atom)
                ds.resize(start + len(values), axis=0)
                ds[start:] = values
        self.written += n
        self.written_atoms += int(n_atoms.sum())

    def _new_column(self, group, name: str, values: np.ndarray, start: int, per_atom: bool):
        column = COLUMNS.get(name)
        dtype = column.dtype if column is not None else (TEXT if values.dtype.kind in "OUS" else values.dtype)
        ds = create_column(group, name, dtype, values.shape[1:], per_atom, rows=start)
        self._columns[name] = (ds, per_atom)
        for group_name, names in GROUPS.items():
            if group_name not in self.groups and all(n in self._columns for n in names):
                self.groups.append(group_name)
                self.attrs[GROUPS_ATTR] = json.dumps(self.groups)
        return ds

    def commit(self) -> int:
        """Make the written rows visible: flush the data, then raise the counter and flush."""
        self.file.flush()
        self.attrs[COMMITTED] = self.written
        self.file.flush()
        self._committed, self._committed_atoms = self.written, self.written_atoms
        self._offsets = None
        return self._committed

    def append(self, frames: Mapping[str, np.ndarray], atoms: Mapping[str, np.ndarray]) -> int:
        """:meth:`write` and :meth:`commit`; returns the committed frame count."""
        self.write(frames, atoms)
        return self.commit()


def _is_text(name: str, values) -> bool:
    column = COLUMNS.get(name)
    if column is not None:
        return column.dtype == TEXT
    return np.asarray(values).dtype.kind in "OUS"


def structure_columns(structures: Sequence, ids: Optional[Sequence[int]] = None) -> tuple[dict, dict]:
    """The required columns of ASE ``Atoms`` (``ids``: their structure ids, default -1):
    (per-frame columns, per-atom columns) for :meth:`FrameWriter.write`."""
    n = len(structures)
    frames = {
        N_ATOMS: np.array([len(a) for a in structures], dtype=np.int64),
        keys.CELL: np.stack([np.asarray(a.get_cell(), dtype=np.float64) for a in structures]) if n
        else np.zeros((0, 3, 3)),
        keys.PBC: np.stack([np.asarray(a.get_pbc(), dtype=bool) for a in structures]) if n
        else np.zeros((0, 3), bool),
        keys.STRUCTURE_ID: np.full(n, -1, np.int64) if ids is None else np.asarray(ids, dtype=np.int64),
    }
    atoms = {
        keys.NUMBERS: np.concatenate([a.get_atomic_numbers() for a in structures]).astype(np.int32) if n
        else np.zeros(0, np.int32),
        keys.POSITIONS: np.concatenate([a.get_positions() for a in structures]) if n else np.zeros((0, 3)),
    }
    return frames, atoms


def read_structures(reader: FrameReader, rows) -> list:
    """ASE ``Atoms`` (numbers, positions, cell, pbc; ``info['structure_id']``) of frame ``rows``
    (any order, repeats allowed), read in few slices."""
    from ase import Atoms

    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.size == 0:
        return []
    unique, inverse = np.unique(rows, return_inverse=True)
    offsets = reader.offsets()
    counts = offsets[unique + 1] - offsets[unique]
    first = np.concatenate([[0], np.cumsum(counts)])
    numbers = reader.read_atoms(keys.NUMBERS, unique)
    positions = reader.read_atoms(keys.POSITIONS, unique)
    cells = reader.read(keys.CELL, unique)
    pbcs = reader.read(keys.PBC, unique) if reader.has(keys.PBC) else np.ones((len(unique), 3), bool)
    ids = reader.read(keys.STRUCTURE_ID, unique) if reader.has(keys.STRUCTURE_ID) else unique
    out = []
    for k in inverse.ravel():
        a, b = first[k], first[k + 1]
        atoms = Atoms(numbers=numbers[a:b], positions=positions[a:b], cell=cells[k], pbc=pbcs[k])
        atoms.info[keys.STRUCTURE_ID] = int(ids[k])
        out.append(atoms)
    return out


def exclusive_cumsum(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values), dtype=np.int64)
    if len(values) > 1:
        np.cumsum(values[:-1], out=out[1:])
    return out


def gather(ds, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Rows [starts[k], stops[k]) of dataset ``ds`` for ascending, non-overlapping ranges,
    concatenated, in few HDF5 reads: one slice when the ranges lie close together; one listed
    read for a few scattered single rows (a string read costs ~0.5 ms, so this matters); else one
    slice per group of ranges less than a chunk apart."""
    starts = np.asarray(starts, dtype=np.int64)
    stops = np.asarray(stops, dtype=np.int64)
    lengths = stops - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros((0, *ds.shape[1:]), dtype=object if ds.dtype.kind == "O" else ds.dtype)
    lo, hi = int(starts[0]), int(stops[-1])
    if hi - lo <= 2 * total + _DENSE_SLACK:  # close together: one slice, then pick the rows
        block = np.asarray(ds[lo:hi])
        if hi - lo == total:
            return block
        return block[np.repeat(starts - lo - exclusive_cumsum(lengths), lengths) + np.arange(total)]
    if total <= _LISTED_ROWS and np.all(lengths == 1):  # a few scattered rows: one listed read
        return np.asarray(ds[starts])
    gap = ds.chunks[0] if ds.chunks else _DENSE_SLACK
    new_block = np.ones(len(starts), dtype=bool)
    new_block[1:] = starts[1:] - stops[:-1] > gap
    block_of = np.cumsum(new_block) - 1
    block_start = starts[new_block]
    block_stop = np.maximum.reduceat(stops, np.flatnonzero(new_block))
    parts = [np.asarray(ds[int(a):int(b)]) for a, b in zip(block_start, block_stop)]
    buffer = np.concatenate(parts)
    first = exclusive_cumsum(block_stop - block_start)[block_of] + (starts - block_start[block_of])
    return buffer[np.repeat(first - exclusive_cumsum(lengths), lengths) + np.arange(total)]
