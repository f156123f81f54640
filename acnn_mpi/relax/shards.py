"""Relaxation results in HDF5 shards: one file per rank and output directory, one index over all.

Layout of an output directory (the ``relax`` command's ``--out``, and each campaign iteration's
``iter_K/relax``)::

    DIR/shards/rank0003.h5   written only by rank 3; a resumed job appends to it
    DIR/index.h5             virtual datasets over the committed rows of every shard
    DIR/relax.json           the settings of the job (a resumed job must match them)

A shard is a file of the package's one frame layout (:mod:`acnn_mpi.data.h5frames`, ``kind`` =
"relaxed"): the final structures (``atoms/numbers``, ``atoms/positions``, ``frames/cell``, ``pbc``,
``n_atoms``, ``atom_offset``, ``structure_id``) with the ``relax`` column group (``energy``,
``enthalpy`` eV, ``volume`` Å³, ``steps``, ``status``, ``reason``, ``max_force`` eV/Å,
``pressure_residual`` and ``pressure`` GPa, ``formula``) and optional extra columns
(``fingerprints`` (S, D) float32 in a campaign). Attributes besides the layout's: ``pressure_gpa``,
``rank``, ``settings`` (JSON). ``index.h5`` is of the same layout (``kind`` = "index"; its
``frames/shard`` and ``frames/row`` say where each row is stored), so every reader of structures
reads a shard, the index and a label store alike.

Crash safety is the layout writer's: a shard is created whole (its empty layout written to a
hidden temporary file and renamed in, :func:`~acnn_mpi.data.h5frames.create_file`), then rows are
written and flushed, and only then is the ``n_frames`` counter raised. A resumed rank reopens its
shard and writes from the counter on (rows past it are cut); a shard that cannot be opened at all
is moved aside as ``*.damaged`` (its structures count as not done and are relaxed again), so a
resumed job and a later reader agree on what is done. Shards of earlier versions (flat datasets,
``committed`` attribute) are read as they are; a resumed rank rewrites its own in this layout
first (a log line).
"""

from __future__ import annotations

import glob
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np

from .. import keys
from ..data import h5frames
from ..data.h5frames import ATOM_OFFSET, N_ATOMS

log = logging.getLogger(__name__)

SHARD_DIR = "shards"
INDEX_NAME = "index.h5"
SETTINGS_NAME = "relax.json"
#: the shard's column group, and the columns of it read into RelaxResults
RELAX_GROUP = "relax"
FLOAT_FIELDS = ("energy", "enthalpy", "volume", "max_force", "pressure_residual", "pressure")
_READ_FIELDS = (keys.STRUCTURE_ID, keys.STATUS, keys.REASON, "formula", *FLOAT_FIELDS, "steps", N_ATOMS,
                ATOM_OFFSET)
#: columns :func:`read_results` leaves on disk with ``lazy`` (processing uses none of them)
_LAZY_FIELDS = (keys.REASON, "energy", "max_force", "pressure_residual", "pressure")
_FIX = "move it away (mv {path} {path}.bad): its structures are then relaxed again"


def shard_dir(directory: str | os.PathLike) -> str:
    return os.path.join(os.fspath(directory), SHARD_DIR)


def shard_path(directory: str | os.PathLike, rank: int) -> str:
    return os.path.join(shard_dir(directory), f"rank{rank:04d}.h5")


@contextmanager
def open_frames(path: str, mode: str = "r", **kwargs):
    """(h5py file, :class:`~acnn_mpi.data.h5frames.FrameReader` or ``FrameWriter``) of a shard or
    index, closed at the end of the block."""
    import h5py

    with h5py.File(path, mode) as f:
        kind = h5frames.FrameReader if mode == "r" else h5frames.FrameWriter
        yield f, kind(f, path, fix=kwargs.pop("fix", _FIX.format(path=path)), name="relaxation shard", **kwargs)


class ShardWriter:
    """Appends :class:`~acnn_mpi.relax.runner.RelaxResult` rows to this rank's shard.

    An existing shard is continued from its commit counter (a resumed job; one of an earlier
    version is first rewritten in the current layout); a damaged one is moved aside. The file is
    created at the first :meth:`append` and opened, extended, flushed and closed at each one, so
    between appends it is a closed, consistent file.

    Args:
        settings: what the results depend on (JSON-able); kept as the shard's ``settings``.
    """

    def __init__(self, path: str | os.PathLike, *, rank: int = 0, pressure_gpa: float = 0.0,
                 settings: Optional[dict] = None):
        self.path = os.fspath(path)
        self.meta = {"rank": int(rank), "pressure_gpa": float(pressure_gpa),
                     "settings": json.dumps(settings or {}, sort_keys=True)}
        self.committed = 0
        self.committed_atoms = 0
        if os.path.exists(self.path):
            try:
                with open_frames(self.path) as (_, reader):
                    flat = reader.flat
                    self.committed, self.committed_atoms = len(reader), reader.n_atoms
                if flat:
                    upgrade_flat_shard(self.path)
            except (OSError, KeyError, ValueError, RuntimeError):
                log.warning("%s is damaged: moved aside, its structures are relaxed again", self.path)
                os.replace(self.path, self.path + ".damaged")
                self.committed = self.committed_atoms = 0

    def append(self, results: Sequence, extra: Optional[dict] = None) -> int:
        """Write ``results`` (and ``extra`` columns: name -> (n, ...) array) and commit them;
        returns the committed count."""
        results = list(results)
        if not results:
            return self.committed
        frames, atoms = result_columns(results)
        for name, values in (extra or {}).items():
            frames[name] = np.asarray(values)
            if len(frames[name]) != len(results):
                raise ValueError(f"extra column {name}: {len(frames[name])} rows for {len(results)} results")
        return self.append_columns(frames, atoms)

    def append_columns(self, frames: dict, atoms: dict) -> int:
        """Append per-frame and per-atom columns (:meth:`~acnn_mpi.data.h5frames.FrameWriter.write`)
        and commit them; returns the committed count."""
        if not os.path.exists(self.path):
            h5frames.create_file(self.path, h5frames.RELAXED, [RELAX_GROUP], self.meta)
        with open_frames(self.path, "a") as (_, writer):
            self.committed = writer.append(frames, atoms)
            self.committed_atoms = writer.n_atoms
        return self.committed


def result_columns(results: Sequence) -> tuple[dict, dict]:
    """(per-frame, per-atom) columns of :class:`~acnn_mpi.relax.runner.RelaxResult` s: the
    structure and the ``relax`` group."""
    structures = [r.atoms for r in results]
    frames, atoms = h5frames.structure_columns(structures, [r.structure_id for r in results])
    frames["steps"] = np.array([r.steps for r in results], dtype=np.int64)
    for name in FLOAT_FIELDS:
        frames[name] = np.array([getattr(r, name) for r in results], dtype=np.float64)
    for name in (keys.STATUS, keys.REASON):
        frames[name] = np.array([str(getattr(r, name)) for r in results], dtype=object)
    frames["formula"] = np.array([a.get_chemical_formula() for a in structures], dtype=object)
    return frames, atoms


def file_columns(reader) -> tuple[dict, dict]:
    """Every committed column of a file (any version) as (per-frame, per-atom) arrays for
    :meth:`ShardWriter.append_columns`."""
    frames = {name: reader.read(name) for name in reader.names() if name != ATOM_OFFSET}
    atoms = {name: reader.read_atoms(name) for name in (keys.NUMBERS, keys.POSITIONS)}
    n = len(reader)
    frames.setdefault(keys.PBC, np.ones((n, 3), dtype=bool))
    frames.setdefault(keys.STRUCTURE_ID, np.arange(n, dtype=np.int64))
    return frames, atoms


def upgrade_flat_shard(path: str) -> None:
    """Rewrite a shard of an earlier version (flat datasets) in the current layout, in place
    (a temporary file, then a rename), keeping its committed rows and attributes."""
    import h5py

    with open_frames(path) as (f, reader):
        frames, atoms = file_columns(reader)
        meta = {k: f.attrs[k] for k in ("rank", "pressure_gpa", "settings") if k in f.attrs}
    tmp = f"{path}.upgrade{os.getpid()}"
    with h5py.File(tmp, "w") as f:
        h5frames.create_layout(f, h5frames.RELAXED, [], meta)
        h5frames.FrameWriter(f, tmp).append(frames, atoms)
    os.replace(tmp, path)
    log.info("%s: a shard of an earlier acnn_mpi rewritten in frame layout %d (%d structures kept)",
             path, h5frames.VERSION, len(frames[N_ATOMS]))


def list_shards(directory: str | os.PathLike) -> list[str]:
    """Shard files of ``directory`` in rank order."""
    return sorted(glob.glob(os.path.join(shard_dir(directory), "rank*.h5")))


def _read_shard(path: str, fields: Iterable[str], extra: Sequence[str] = (), lazy: bool = False,
                rows=None) -> Optional[dict]:
    """The committed rows (or ``rows``, ascending) of one shard as arrays (``fields``, and those of
    ``extra`` it has; None for each of those with ``lazy``), or None (with a warning) if it is
    unreadable."""
    try:
        with open_frames(path) as (f, reader):
            if reader.kind != h5frames.RELAXED or RELAX_GROUP not in reader.groups:
                log.warning("skipping %s: not a relaxation shard", path)
                return None
            out = {name: reader.read(name, rows) for name in fields}
            out.update({name: None if lazy else reader.read(name, rows) for name in extra if reader.has(name)})
            out["_pressure_gpa"] = float(f.attrs.get("pressure_gpa", np.nan))
            return out
    except (OSError, KeyError, ValueError, RuntimeError) as error:
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
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out: list = [None] * len(indices)
        reasons = self.reason[indices] if len(indices) else []
        energies = self.energy[indices] if len(indices) else []
        for s in np.unique(self.shard_index[indices]) if len(indices) else []:
            where = np.nonzero(self.shard_index[indices] == s)[0]
            with open_frames(self.shards[s], check=False) as (_, reader):
                structures = h5frames.read_structures(reader, self.row[indices[where]])
            for k, atoms in zip(where, structures):
                i = int(indices[k])
                atoms.info.update({
                    keys.STRUCTURE_ID: int(self.structure_id[i]), keys.ENERGY: float(energies[k]),
                    keys.ENTHALPY: float(self.enthalpy[i]), keys.STATUS: str(self.status[i]),
                    keys.REASON: str(reasons[k]), "pressure_gpa": self.pressure_gpa,
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


class ShardColumn:
    """A per-structure column left on disk: ``column[i]`` (one entry) or ``column[indices]`` (an
    array, read shard by shard in sorted order), e.g. the fingerprints or the reasons of a million
    structures, of which a processing rank or the root needs only some."""

    def __init__(self, name: str, shards: list, shard_index: np.ndarray, row: np.ndarray, text: bool = False):
        self.name, self.shards, self.shard_index, self.row, self.text = name, shards, shard_index, row, text

    def __len__(self) -> int:
        return len(self.row)

    def __getitem__(self, index):
        single = np.ndim(index) == 0
        index = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index).reshape(-1)
        parts, where = [], []
        for s in np.unique(self.shard_index[index]):
            mine = np.flatnonzero(self.shard_index[index] == s)
            unique, inverse = np.unique(self.row[index[mine]], return_inverse=True)
            with open_frames(self.shards[s], check=False) as (_, reader):  # read_results checked it
                parts.append(reader.read(self.name, unique)[inverse.ravel()])
            where.append(mine)
        if not parts:
            return np.zeros(0, dtype=object if self.text else np.float32)
        values = np.concatenate(parts)
        out = np.empty_like(values)
        out[np.concatenate(where)] = values
        return out[0] if single else out


def _shard_rows(path: str) -> int:
    """Committed rows of a shard (0 if it cannot be read: :func:`_read_shard` says why)."""
    try:
        with open_frames(path) as (_, reader):
            return len(reader)
    except (OSError, KeyError, ValueError, RuntimeError):
        return 0


#: rows read from a shard at a time by :func:`read_results`
_READ_BLOCK = 1 << 16


def _read_all(directory, fields: Sequence[str], columns: Sequence[str], lazy: bool):
    """({column: array over all shards}, readable shard paths, pressure): each column is allocated
    once at its full length and every shard is read into its slice (a root reading a million
    rows holds one copy, not the shards' parts and their concatenation). ``_shard``/``_row``
    (int32) say where each row is; an extra column is kept where every shard has it (None
    for all with ``lazy``)."""
    paths = list_shards(directory)
    rows = {p: _shard_rows(p) for p in paths}
    total = sum(rows.values())
    out: dict = {"_shard": np.empty(total, np.int32), "_row": np.empty(total, np.int32)}
    seen: dict = {}
    shards, start, pressure = [], 0, np.nan
    for path in paths:
        n = 0
        for block in range(0, rows[path], _READ_BLOCK):  # bounded temporaries, whatever a shard holds
            part = _read_shard(path, fields, columns, lazy, np.arange(block, min(block + _READ_BLOCK, rows[path])))
            if part is None:
                break
            m = len(part[keys.STRUCTURE_ID])
            shard_pressure = part.pop("_pressure_gpa")
            pressure = shard_pressure if np.isnan(pressure) else pressure
            for name, values in part.items():
                seen[name] = seen.get(name, 0) + (block == 0)
                if values is not None:
                    if name not in out:
                        out[name] = np.empty((total, *values.shape[1:]), dtype=values.dtype)
                    out[name][start + n:start + n + m] = values
            n += m
        if n == 0:
            continue
        out["_shard"][start:start + n] = len(shards)
        out["_row"][start:start + n] = np.arange(n)
        shards.append(path)
        start += n
    extra = [n for n in columns if seen.get(n) == len(shards)]
    data = {name: values[:start] for name, values in out.items() if name not in columns or name in extra}
    data.update({name: None for name in extra if name not in data})
    return data, shards, pressure


def read_results(directory: str | os.PathLike, columns: Sequence[str] = (), lazy: bool = False) -> RelaxResults:
    """Every committed result in ``directory`` (all shards) as one :class:`RelaxResults`, with the
    optional extra ``columns`` (e.g. ``fingerprints``) in ``RelaxResults.extra`` where every shard
    has them; ``lazy``: those, ``reason``, ``energy``, ``max_force``, ``pressure_residual`` and
    ``pressure`` stay on disk as :class:`ShardColumn` s (what a root holding a million structures
    needs: 72 bytes each, each column allocated once and filled shard by shard). Were a structure id committed twice (not expected), the first shard's row
    is kept."""
    fields = [f for f in _READ_FIELDS if not (lazy and f in _LAZY_FIELDS)]
    data, shards, pressure = _read_all(directory, fields, columns, lazy)
    if not shards:
        empty_f = np.zeros(0)
        empty_i = np.zeros(0, dtype=np.int64)
        empty_s = np.zeros(0, dtype=object)
        return RelaxResults(structure_id=empty_i, status=empty_s, reason=empty_s, formula=empty_s,
                            energy=empty_f, enthalpy=empty_f, volume=empty_f, steps=empty_i, n_atoms=empty_i,
                            max_force=empty_f, pressure_residual=empty_f, pressure=empty_f,
                            pressure_gpa=float(pressure), shards=[], shard_index=empty_i, row=empty_i,
                            atom_start=empty_i)

    def cat(name):
        return data.pop(name)

    ids = cat(keys.STRUCTURE_ID)
    keep = slice(None)  # no copies
    ordered = np.sort(ids)
    if np.any(ordered[1:] == ordered[:-1]):
        keep = np.sort(np.unique(ids, return_index=True)[1])
        log.warning("%d duplicate structure id(s) in %s: kept the first shard's rows", len(ids) - len(keep),
                    directory)
    del ordered
    shard_index, row = cat("_shard")[keep], cat("_row")[keep]
    names = [n for n in columns if n in data]
    if lazy:
        extra = {n: ShardColumn(n, shards, shard_index, row) for n in names}
        left = {n: ShardColumn(n, shards, shard_index, row, text=n == keys.REASON) for n in _LAZY_FIELDS}
    else:
        extra = {n: cat(n)[keep] for n in names}
        left = {n: cat(n)[keep] for n in _LAZY_FIELDS}
    return RelaxResults(
        structure_id=ids[keep], status=cat(keys.STATUS)[keep], reason=left[keys.REASON],
        formula=cat("formula")[keep], energy=left["energy"], enthalpy=cat("enthalpy")[keep],
        volume=cat("volume")[keep], steps=cat("steps")[keep], n_atoms=cat("n_atoms")[keep],
        max_force=left["max_force"], pressure_residual=left["pressure_residual"], pressure=left["pressure"],
        pressure_gpa=float(pressure), shards=shards, shard_index=shard_index, row=row,
        atom_start=cat(ATOM_OFFSET)[keep], extra=extra,
    )


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
    """Write ``DIR/index.h5``, a file of the frame layout (``kind`` "index") whose columns are
    virtual datasets joining the committed rows of every readable shard (the columns all of them
    have; shards of earlier versions are rewritten in the current layout first), plus real ``frames/atom_offset`` (global first-atom row), ``frames/shard`` and
    ``frames/row`` and the attribute ``shards`` (relative paths). h5py reads it as one file;
    written to a temporary name and renamed."""
    import h5py

    directory = os.fspath(directory)
    entries = []  # (relative path, frames, atoms, {column: (dataset path, shape, dtype)}, n_atoms, pressure)
    for path in list_shards(directory):
        try:
            with open_frames(path) as (f, reader):
                flat = reader.flat
            if flat:  # one dtype per column across shards: a virtual dataset needs it
                upgrade_flat_shard(path)
            with open_frames(path) as (f, reader):
                if reader.kind != h5frames.RELAXED or not len(reader):
                    continue
                columns = {name: reader.dataset(name) for name in [*reader.names(), keys.NUMBERS, keys.POSITIONS]
                           if name != ATOM_OFFSET}
                columns = {name: (ds.name, ds.shape, ds.dtype) for name, ds in columns.items()}
                entries.append((os.path.relpath(path, directory), len(reader), reader.n_atoms, columns,
                                reader.read(N_ATOMS), float(f.attrs.get("pressure_gpa", np.nan))))
        except (OSError, KeyError, ValueError, RuntimeError) as error:
            log.warning("index: skipping unreadable shard %s (%s)", path, error)
    target = os.path.join(directory, INDEX_NAME)
    tmp = f"{target}.tmp{os.getpid()}"
    first = entries[0][3] if entries else {}
    common = [name for name in first if all(name in e[3] and e[3][name][1][1:] == first[name][1][1:]
                                            and e[3][name][2] == first[name][2] for e in entries)]
    groups = [g for g, names in h5frames.GROUPS.items() if all(n in common for n in names)]
    with h5py.File(tmp, "w", libver=("earliest", "latest")) as out:
        atoms, frames = out.create_group(h5frames.ATOMS), out.create_group(h5frames.FRAMES)
        for name in common:
            per_atom = name in (keys.NUMBERS, keys.POSITIONS)
            _, shape, dtype = entries[0][3][name]
            layout = h5py.VirtualLayout(shape=(sum(e[2 if per_atom else 1] for e in entries), *shape[1:]),
                                        dtype=dtype)
            offset = 0
            for relative, count, n_atoms, columns, _, _ in entries:
                n = n_atoms if per_atom else count
                dataset, full, _ = columns[name]
                layout[offset:offset + n] = h5py.VirtualSource(relative, dataset, shape=full)[:n]
                offset += n
            (atoms if per_atom else frames).create_virtual_dataset(name, layout, fillvalue=None)
        n_atoms = np.concatenate([e[4] for e in entries]).astype(np.int64) if entries else np.zeros(0, np.int64)
        frames.create_dataset(ATOM_OFFSET, data=h5frames.exclusive_cumsum(n_atoms))
        frames.create_dataset("shard", data=np.concatenate([np.full(e[1], k) for k, e in enumerate(entries)])
                              if entries else np.zeros(0, np.int64))
        frames.create_dataset("row", data=np.concatenate([np.arange(e[1]) for e in entries])
                              if entries else np.zeros(0, np.int64))
        if not entries:  # an empty index still has every required column
            for name in h5frames.REQUIRED:
                if name != ATOM_OFFSET:
                    column = h5frames.COLUMNS[name]
                    h5frames.create_column(atoms if column.per_atom else frames, name, column.dtype,
                                             column.shape, column.per_atom)
        out.attrs.update({"layout": h5frames.LAYOUT, "version": h5frames.VERSION, h5frames.KIND: h5frames.INDEX,
                          h5frames.GROUPS_ATTR: json.dumps(groups), h5frames.COMMITTED: len(n_atoms),
                          "shards": json.dumps([e[0] for e in entries]),
                          "pressure_gpa": entries[0][5] if entries else np.nan})
    os.replace(tmp, target)
    return target
