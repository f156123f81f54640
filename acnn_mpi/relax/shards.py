"""Relaxation results in HDF5 shards: one file per rank and output directory, one index over all.

Layout of an output directory (the ``relax`` command's ``--out``, and each campaign iteration's
``iter_K/relax``)::

    DIR/shards/rank0003.h5   written only by rank 3; a resumed job appends to it
    DIR/index.h5             virtual datasets over the committed rows of every shard
    DIR/relax.json           the settings of the job (a resumed job must match them)

A shard holds the final structures in the structure layout of :mod:`acnn_mpi.relax.io`
(``numbers``, ``positions``, ``cell``, ``pbc``, ``n_atoms``, ``structure_id``) plus per structure
``atom_start`` (row of its first atom in the shard), ``energy``, ``enthalpy`` (eV), ``volume`` (Å³),
``steps``, ``status`` and ``reason`` (fixed-length UTF-8), ``max_force`` (eV/Å),
``pressure_residual`` and ``pressure`` (GPa), ``formula``, and optional extra per-structure
columns (``fingerprints`` (S, D) float32 in a campaign). Attributes: ``format``, ``version``,
``pressure_gpa``, ``rank``, ``settings`` (JSON) and ``committed`` — the number of structures whose
rows are complete (``committed_atoms`` likewise for the atom rows).

Crash safety: a chunk of results is appended (datasets resized and written), the file flushed,
and only then ``committed`` is raised and the file flushed again and closed. Readers use the first
``committed`` rows only, so a job killed at any moment leaves every shard with whole structures.
A resumed rank reopens its shard and writes from ``committed`` on (rows past it are overwritten);
a shard that cannot be opened at all is moved aside as ``*.damaged`` (its structures count as not
done and are relaxed again), so a resumed job and a later reader agree on what is done.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np

from .. import keys

log = logging.getLogger(__name__)

FORMAT_TAG = "acnn_mpi.relax.shard"
FORMAT_VERSION = 2
SHARD_DIR = "shards"
INDEX_NAME = "index.h5"
SETTINGS_NAME = "relax.json"
STATUS_BYTES = 16
REASON_BYTES = 200
FORMULA_BYTES = 64

#: per-structure float columns
FLOAT_FIELDS = ("energy", "enthalpy", "volume", "max_force", "pressure_residual", "pressure")
#: per-structure integer columns
INT_FIELDS = (keys.STRUCTURE_ID, "steps", "n_atoms", "atom_start")
#: per-structure text columns and their byte widths
TEXT_FIELDS = {keys.STATUS: STATUS_BYTES, keys.REASON: REASON_BYTES, "formula": FORMULA_BYTES}


def _text(value: str, width: int) -> bytes:
    data = str(value).encode("utf-8")
    if len(data) <= width:
        return data
    data = data[:width]
    while data:  # do not cut a multi-byte character in half
        try:
            data.decode("utf-8")
            return data
        except UnicodeDecodeError:
            data = data[:-1]
    return data


def shard_dir(directory: str | os.PathLike) -> str:
    return os.path.join(os.fspath(directory), SHARD_DIR)


def shard_path(directory: str | os.PathLike, rank: int) -> str:
    return os.path.join(shard_dir(directory), f"rank{rank:04d}.h5")


def _readable(path: str) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT_TAG and "committed" in f.attrs
    except (OSError, KeyError, ValueError):
        return False


class ShardWriter:
    """Appends :class:`~acnn_mpi.relax.runner.RelaxResult` rows to this rank's shard.

    An existing shard is continued from its ``committed`` rows (a resumed job); a damaged one is
    moved aside. The file is created at the first :meth:`append` and opened, extended, flushed and
    closed at each one, so between appends it is a closed, consistent file.

    Args:
        settings: what the results depend on (JSON-able); kept as the shard's ``settings``.
    """

    def __init__(self, path: str | os.PathLike, *, rank: int = 0, pressure_gpa: float = 0.0,
                 settings: Optional[dict] = None):
        import h5py

        self.path = os.fspath(path)
        self.meta = {"format": FORMAT_TAG, "version": FORMAT_VERSION, "rank": int(rank),
                     "pressure_gpa": float(pressure_gpa), "settings": json.dumps(settings or {}, sort_keys=True)}
        self.committed = 0
        self.committed_atoms = 0
        if os.path.exists(self.path):
            if _readable(self.path):
                with h5py.File(self.path, "r") as f:
                    self.committed = int(f.attrs["committed"])
                    self.committed_atoms = int(f.attrs.get("committed_atoms", 0))
            else:
                log.warning("%s is damaged: moved aside, its structures are relaxed again", self.path)
                os.replace(self.path, self.path + ".damaged")

    def _create(self):
        import h5py

        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with h5py.File(self.path, "w") as f:
            for name, value in self.meta.items():
                f.attrs[name] = value
            f.attrs["committed"] = 0
            f.attrs["committed_atoms"] = 0
            f.create_dataset(keys.NUMBERS, (0,), maxshape=(None,), dtype="i8", chunks=(8192,))
            f.create_dataset(keys.POSITIONS, (0, 3), maxshape=(None, 3), dtype="f8", chunks=(4096, 3))
            f.create_dataset(keys.CELL, (0, 3, 3), maxshape=(None, 3, 3), dtype="f8", chunks=(512, 3, 3))
            f.create_dataset(keys.PBC, (0, 3), maxshape=(None, 3), dtype="bool", chunks=(512, 3))
            for name in FLOAT_FIELDS:
                f.create_dataset(name, (0,), maxshape=(None,), dtype="f8", chunks=(512,))
            for name in INT_FIELDS:
                f.create_dataset(name, (0,), maxshape=(None,), dtype="i8", chunks=(512,))
            for name, width in TEXT_FIELDS.items():
                f.create_dataset(name, (0,), maxshape=(None,), dtype=f"S{width}", chunks=(512,))

    def _columns(self, results) -> dict:
        counts = np.array([len(r.atoms) for r in results], dtype=np.int64)
        starts = self.committed_atoms + np.concatenate([[0], np.cumsum(counts)[:-1]])
        columns = {
            keys.STRUCTURE_ID: np.array([r.structure_id for r in results], dtype=np.int64),
            "steps": np.array([r.steps for r in results], dtype=np.int64),
            "n_atoms": counts,
            "atom_start": starts.astype(np.int64),
            keys.CELL: np.stack([np.asarray(r.atoms.get_cell()) for r in results]),
            keys.PBC: np.stack([np.asarray(r.atoms.get_pbc(), dtype=bool) for r in results]),
        }
        for name in FLOAT_FIELDS:
            columns[name] = np.array([getattr(r, name) for r in results], dtype=np.float64)
        for name, width in TEXT_FIELDS.items():
            values = [r.atoms.get_chemical_formula() if name == "formula" else getattr(r, name) for r in results]
            columns[name] = np.array([_text(v, width) for v in values], dtype=f"S{width}")
        return columns

    def append(self, results: Sequence, extra: Optional[dict] = None) -> int:
        """Write ``results`` (and ``extra`` columns: name -> (n, ...) array) and commit them;
        returns the committed count."""
        import h5py

        results = list(results)
        if not results:
            return self.committed
        if not os.path.exists(self.path):
            self._create()
        n = len(results)
        columns = self._columns(results)
        for name, values in (extra or {}).items():
            columns[name] = np.asarray(values)
            if len(columns[name]) != n:
                raise ValueError(f"extra column {name}: {len(columns[name])} rows for {n} results")
        numbers = np.concatenate([r.atoms.get_atomic_numbers() for r in results]).astype(np.int64)
        positions = np.concatenate([r.atoms.get_positions() for r in results])
        with h5py.File(self.path, "a") as f:
            s0, a0 = self.committed, self.committed_atoms
            for name, values in ((keys.NUMBERS, numbers), (keys.POSITIONS, positions)):
                f[name].resize(a0 + len(values), axis=0)
                f[name][a0:] = values
            for name, values in columns.items():
                if name not in f:
                    f.create_dataset(name, (s0, *values.shape[1:]), maxshape=(None, *values.shape[1:]),
                                     dtype=values.dtype, chunks=(512, *values.shape[1:]))
                f[name].resize(s0 + n, axis=0)
                f[name][s0:] = values
            f.flush()
            f.attrs["committed"] = s0 + n
            f.attrs["committed_atoms"] = a0 + len(numbers)
            f.flush()
        self.committed += n
        self.committed_atoms += len(numbers)
        return self.committed


def list_shards(directory: str | os.PathLike) -> list[str]:
    """Shard files of ``directory`` in rank order."""
    return sorted(glob.glob(os.path.join(shard_dir(directory), "rank*.h5")))


def _read_shard(path: str, fields: Iterable[str]) -> Optional[dict]:
    """The committed rows of one shard as arrays, or None (with a warning) if it is unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT_TAG:
                log.warning("skipping %s: not a relaxation shard", path)
                return None
            count = int(f.attrs.get("committed", 0))
            out = {name: f[name][:count] for name in fields}
            out["_pressure_gpa"] = float(f.attrs.get("pressure_gpa", np.nan))
            return out
    except (OSError, KeyError, ValueError) as error:
        log.warning("skipping unreadable shard %s (%s); its structures count as not done", path, error)
        return None


def finished_ids(directory: str | os.PathLike) -> np.ndarray:
    """Sorted unique structure ids committed in the readable shards of ``directory``."""
    parts = []
    for path in list_shards(directory):
        data = _read_shard(path, [keys.STRUCTURE_ID])
        if data is not None:
            parts.append(data[keys.STRUCTURE_ID])
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


@dataclass
class RelaxResults:
    """All results of an output directory as arrays (one entry per structure), with structures
    loaded on demand.

    Arrays: ``structure_id``, ``status``, ``reason``, ``formula`` (str), ``energy``, ``enthalpy``,
    ``volume`` (eV, eV, Å³), ``steps``, ``n_atoms``, ``max_force`` (eV/Å), ``pressure_residual``,
    ``pressure`` (GPa). ``pressure_gpa`` is the relaxation pressure. ``shards`` and the private
    location arrays say where each structure is stored.
    """

    structure_id: np.ndarray
    status: np.ndarray
    reason: np.ndarray
    formula: np.ndarray
    energy: np.ndarray
    enthalpy: np.ndarray
    volume: np.ndarray
    steps: np.ndarray
    n_atoms: np.ndarray
    max_force: np.ndarray
    pressure_residual: np.ndarray
    pressure: np.ndarray
    pressure_gpa: float
    shards: list = field(default_factory=list)
    shard_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    row: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    atom_start: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    extra: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.structure_id.shape[0])

    @property
    def enthalpy_per_atom(self) -> np.ndarray:
        return self.enthalpy / self.n_atoms

    @property
    def energy_per_atom(self) -> np.ndarray:
        return self.energy / self.n_atoms

    def mask(self, status: str) -> np.ndarray:
        return self.status == status

    def atoms(self, i: int):
        """The final structure of entry ``i`` (ASE ``Atoms`` with results in ``info``)."""
        return self.load_atoms([i])[0]

    def load_atoms(self, indices: Sequence[int]) -> list:
        """Final structures of the given entries, in that order (read shard by shard)."""
        import h5py
        from ase import Atoms

        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out: list = [None] * len(indices)
        for s in np.unique(self.shard_index[indices]) if len(indices) else []:
            where = np.nonzero(self.shard_index[indices] == s)[0]
            with h5py.File(self.shards[s], "r") as f:
                for k in where:
                    i = int(indices[k])
                    row, a, n = int(self.row[i]), int(self.atom_start[i]), int(self.n_atoms[i])
                    atoms = Atoms(numbers=f[keys.NUMBERS][a:a + n], positions=f[keys.POSITIONS][a:a + n],
                                  cell=f[keys.CELL][row], pbc=f[keys.PBC][row])
                    atoms.info.update({
                        keys.STRUCTURE_ID: int(self.structure_id[i]), keys.ENERGY: float(self.energy[i]),
                        keys.ENTHALPY: float(self.enthalpy[i]), keys.STATUS: str(self.status[i]),
                        keys.REASON: str(self.reason[i]), "pressure_gpa": self.pressure_gpa,
                    })
                    out[k] = atoms
        return out

    def iter_atoms(self, indices: Optional[Sequence[int]] = None, chunk: int = 1024):
        """Yield the final structures of ``indices`` (default all), ``chunk`` at a time from disk."""
        indices = np.arange(len(self)) if indices is None else np.asarray(indices)
        for start in range(0, len(indices), chunk):
            yield from self.load_atoms(indices[start:start + chunk])

    def summary(self) -> dict:
        """{status: count}."""
        values, counts = np.unique(self.status, return_counts=True)
        return {str(v): int(c) for v, c in zip(values, counts)}


_READ_FIELDS = (keys.STRUCTURE_ID, keys.STATUS, keys.REASON, "formula", *FLOAT_FIELDS, "steps", "n_atoms", "atom_start")


class ShardColumn:
    """A per-structure column left on disk: ``column[i]`` (one entry) or ``column[indices]`` (an
    array, read shard by shard in sorted order), e.g. the fingerprints or the reasons of a million
    structures, of which a processing rank or the root needs only some."""

    def __init__(self, name: str, shards: list, shard_index: np.ndarray, row: np.ndarray, text: bool = False):
        self.name, self.shards, self.shard_index, self.row, self.text = name, shards, shard_index, row, text

    def __len__(self) -> int:
        return len(self.row)

    def __getitem__(self, index):
        import h5py

        single = np.ndim(index) == 0
        index = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index).reshape(-1)
        parts, where = [], []
        for s in np.unique(self.shard_index[index]):
            mine = np.flatnonzero(self.shard_index[index] == s)
            rows = self.row[index[mine]]
            order = np.argsort(rows, kind="stable")
            unique, inverse = np.unique(rows[order], return_inverse=True)
            with h5py.File(self.shards[s], "r") as f:
                values = _read_rows(f[self.name], unique)[inverse]
            part = np.empty_like(values)
            part[order] = values
            parts.append(part)
            where.append(mine)
        if not parts:
            return np.zeros(0, dtype=object if self.text else np.float32)
        values = np.concatenate(parts)
        out = np.empty_like(values)
        out[np.concatenate(where)] = values
        if self.text:
            out = np.array([v.decode("utf-8", "replace") for v in out], dtype=object)
        return out[0] if single else out


def _read_rows(dataset, rows: np.ndarray, block: int = 16384) -> np.ndarray:
    """dataset[rows] for sorted unique ``rows``: point reads when few, else slabs of ``block``
    rows (one sequential pass over the part of the file that holds them)."""
    if len(rows) <= 64:
        return dataset[rows]
    out = np.empty((len(rows), *dataset.shape[1:]), dtype=dataset.dtype)
    start = 0
    while start < len(rows):
        first = int(rows[start])
        stop = int(np.searchsorted(rows, first + block, side="left"))
        slab = dataset[first:int(rows[stop - 1]) + 1]
        out[start:stop] = slab[rows[start:stop] - first]
        start = stop
    return out


def _categories(raw: np.ndarray) -> np.ndarray:
    """Fixed-width UTF-8 values as an object array of shared str (8 bytes per row: few distinct)."""
    values, codes = np.unique(raw, return_inverse=True)
    decoded = np.array([v.decode("utf-8", "replace") for v in values] or [""], dtype=object)
    return decoded[codes.ravel()] if len(raw) else np.zeros(0, dtype=object)


def read_results(directory: str | os.PathLike, columns: Sequence[str] = (), lazy: bool = False) -> RelaxResults:
    """Every committed result in ``directory`` (all shards) as one :class:`RelaxResults`, with the
    optional extra ``columns`` (e.g. ``fingerprints``) in ``RelaxResults.extra`` where every shard
    has them; ``lazy``: those and ``reason`` stay on disk as :class:`ShardColumn` s (what a root
    holding a million structures needs: ~60 bytes each). Were a structure id committed twice (not
    expected), the first shard's row is kept."""
    parts, shards = [], []
    pressure = np.nan
    fields = [f for f in _READ_FIELDS if not (lazy and f == keys.REASON)]
    for path in list_shards(directory):
        data = _read_shard(path, fields)
        if data is None:
            continue
        count = len(data[keys.STRUCTURE_ID])
        for name in (keys.STATUS, "formula") + (() if lazy else (keys.REASON,)):
            data[name] = _categories(data[name])  # 8 bytes a row from here on
        present = _present(path, columns, count)
        data.update(_read_optional(path, present, count) if not lazy else {n: None for n in present})
        data["_shard"] = np.full(count, len(shards), dtype=np.int64)
        data["_row"] = np.arange(count, dtype=np.int64)
        shards.append(path)
        parts.append(data)
        pressure = data["_pressure_gpa"] if np.isnan(pressure) else pressure
    if not parts:
        empty_f = np.zeros(0)
        empty_i = np.zeros(0, dtype=np.int64)
        empty_s = np.zeros(0, dtype=object)
        return RelaxResults(structure_id=empty_i, status=empty_s, reason=empty_s, formula=empty_s,
                            energy=empty_f, enthalpy=empty_f, volume=empty_f, steps=empty_i, n_atoms=empty_i,
                            max_force=empty_f, pressure_residual=empty_f, pressure=empty_f,
                            pressure_gpa=float(pressure), shards=[], shard_index=empty_i, row=empty_i,
                            atom_start=empty_i)

    def cat(name):  # each shard's column is freed as it is joined: the peak is one copy, not two
        return np.concatenate([p.pop(name) for p in parts])

    ids = cat(keys.STRUCTURE_ID)
    _, first = np.unique(ids, return_index=True)
    keep = np.sort(first)
    if len(keep) != len(ids):
        log.warning("%d duplicate structure id(s) in %s: kept the first shard's rows", len(ids) - len(keep),
                    directory)
    else:
        keep = slice(None)  # no copies
    shard_index, row = cat("_shard")[keep], cat("_row")[keep]
    names = [n for n in columns if all(n in p for p in parts)]
    if lazy:
        extra = {n: ShardColumn(n, shards, shard_index, row) for n in names}
        reason = ShardColumn(keys.REASON, shards, shard_index, row, text=True)
    else:
        extra = {n: cat(n)[keep] for n in names}
        reason = cat(keys.REASON)[keep]
    return RelaxResults(
        structure_id=ids[keep], status=cat(keys.STATUS)[keep], reason=reason, formula=cat("formula")[keep],
        energy=cat("energy")[keep], enthalpy=cat("enthalpy")[keep], volume=cat("volume")[keep],
        steps=cat("steps")[keep], n_atoms=cat("n_atoms")[keep], max_force=cat("max_force")[keep],
        pressure_residual=cat("pressure_residual")[keep], pressure=cat("pressure")[keep],
        pressure_gpa=float(pressure), shards=shards, shard_index=shard_index, row=row,
        atom_start=cat("atom_start")[keep], extra=extra,
    )


def _present(path: str, columns: Sequence[str], count: int) -> list:
    import h5py

    with h5py.File(path, "r") as f:
        return [name for name in columns if name in f and len(f[name]) >= count]


def _read_optional(path: str, columns: Sequence[str], count: int) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        return {name: f[name][:count] for name in columns if name in f and len(f[name]) >= count}


def read_settings(directory: str | os.PathLike, fix: str = "use a new directory") -> Optional[dict]:
    """The settings recorded in ``DIR/relax.json``, or None (a damaged one: UserError ending in
    ``fix``)."""
    from ..errors import UserError

    path = os.path.join(os.fspath(directory), SETTINGS_NAME)
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as handle:
            settings = json.loads(handle.read().decode("utf-8"))
        if not isinstance(settings, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"{path} is damaged ({error}): it records which job the results in {directory} "
                        f"belong to; put back a copy, or {fix}") from None
    return settings


def claim(directory: str | os.PathLike, settings: dict, what: str) -> None:
    """Record ``settings`` as the job of ``directory``, or, when it already holds committed results,
    check that they are the same: a :class:`~acnn_mpi.errors.UserError` names each that changed
    (``what`` names the directory to the user, e.g. '--out DIR')."""
    from ..errors import UserError

    previous = read_settings(directory, f"use a new {what.split()[0]} directory" if what.startswith("--")
                             else "move the directory away to relax its structures again")
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as read back
    if previous is not None and len(finished_ids(directory)):
        changed = [f"{key} was {previous.get(key)!r}, now {settings.get(key)!r}"
                   for key in sorted(set(previous) | set(settings)) if previous.get(key) != settings.get(key)]
        if changed:
            raise UserError(f"{what} holds results of another job ({'; '.join(changed)}); use a new "
                            "directory, or the settings and model file of that job")
        return
    os.makedirs(os.fspath(directory), exist_ok=True)
    target = os.path.join(os.fspath(directory), SETTINGS_NAME)
    tmp = target + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(settings, handle, indent=1, sort_keys=True)
    os.replace(tmp, target)


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's content (a model file: the same path may hold another model later)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_index(directory: str | os.PathLike) -> str:
    """Write ``DIR/index.h5``: virtual datasets joining the committed rows of every readable shard
    (per structure: the shard columns; per atom: ``numbers``, ``positions``), plus real datasets
    ``atom_start`` (global first-atom row), ``shard`` and ``row`` and the attribute ``shards``
    (relative paths). h5py reads it as one file; written to a temporary name and renamed."""
    import h5py

    directory = os.fspath(directory)
    entries = []
    for path in list_shards(directory):
        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") != FORMAT_TAG:
                    continue
                count = int(f.attrs.get("committed", 0))
                atoms = int(f.attrs.get("committed_atoms", int(np.sum(f["n_atoms"][:count]))))
                shapes = {name: (f[name].shape, f[name].dtype) for name in f if isinstance(f[name], h5py.Dataset)}
                pressure = float(f.attrs.get("pressure_gpa", np.nan))
                n_atoms = f["n_atoms"][:count]
        except (OSError, KeyError) as error:
            log.warning("index: skipping unreadable shard %s (%s)", path, error)
            continue
        if count:
            entries.append((path, count, atoms, shapes, pressure, n_atoms))
    target = os.path.join(directory, INDEX_NAME)
    tmp = f"{target}.tmp{os.getpid()}"
    total = sum(e[1] for e in entries)
    total_atoms = sum(e[2] for e in entries)
    with h5py.File(tmp, "w", libver=("earliest", "latest")) as out:
        out.attrs["format"] = "acnn_mpi.relax.index"
        out.attrs["version"] = FORMAT_VERSION
        out.attrs["shards"] = json.dumps([os.path.relpath(e[0], directory) for e in entries])
        out.attrs["count"] = total
        if entries:
            out.attrs["pressure_gpa"] = entries[0][4]
            shapes = entries[0][3]
            per_atom = (keys.NUMBERS, keys.POSITIONS)
            for name, (full, dtype) in shapes.items():
                if name == "atom_start":
                    continue
                tail = full[1:]
                length = total_atoms if name in per_atom else total
                layout = h5py.VirtualLayout(shape=(length, *tail), dtype=dtype)
                offset = 0
                for path, count, atoms, entry_shapes, _, _ in entries:
                    n = atoms if name in per_atom else count
                    if n:
                        source = h5py.VirtualSource(os.path.relpath(path, directory), name,
                                                    shape=entry_shapes[name][0])
                        layout[offset:offset + n] = source[:n]
                    offset += n
                out.create_virtual_dataset(name, layout, fillvalue=None)
            n_atoms = np.concatenate([e[5] for e in entries]).astype(np.int64)
            start = np.zeros(total, dtype=np.int64)
            np.cumsum(n_atoms[:-1], out=start[1:])
            out.create_dataset("atom_start", data=start)
            out.create_dataset("shard", data=np.concatenate([np.full(e[1], k) for k, e in enumerate(entries)]))
            out.create_dataset("row", data=np.concatenate([np.arange(e[1]) for e in entries]))
    os.replace(tmp, target)
    return target
