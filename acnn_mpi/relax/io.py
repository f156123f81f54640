"""Structure files for relaxation input: HDF5 with random access, and conversion from ASE formats.

HDF5 structure layout (also what every relaxation shard contains, so a shard can be re-relaxed)::

    numbers      (A,)      int64   atomic numbers of all structures, concatenated
    positions    (A, 3)    float64 Å
    cell         (S, 3, 3) float64 Å, lattice vectors as rows
    n_atoms      (S,)      int64
    pbc          (S, 3)    bool    (optional; default all periodic)
    structure_id (S,)      int64   (optional; default 0..S-1)
    attribute ``committed`` (optional): only the first ``committed`` structures are valid

Reading is by row (the structure's position in the file): workers fetch just the structures of
their chunk, so no rank holds the whole input in memory.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence

import numpy as np

from .. import keys

#: file suffixes read as HDF5 structure files
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


class StructureFile:
    """Random access to the structures of an HDF5 file of any of the package's layouts: a
    structure file (see the module docstring), a relaxation shard or a relax output directory's
    ``index.h5`` (the same names), or a label store (:mod:`acnn_mpi.data.store`: ``atoms/`` and
    ``frames/`` groups, ``n_frames`` committed).

    Attributes:
        path: the file; ids: (S,) int64 structure ids; n_atoms: (S,) atoms per structure.
    """

    def __init__(self, path: str | os.PathLike):
        import h5py

        self.path = os.fspath(path)
        with h5py.File(self.path, "r") as f:
            store = "atoms" in f and "frames" in f
            self._atom, self._frame = ("atoms/", "frames/") if store else ("", "")
            for name in (self._atom + keys.NUMBERS, self._atom + keys.POSITIONS, self._frame + keys.CELL,
                         self._frame + "n_atoms"):
                if name not in f:
                    raise ValueError(f"{self.path}: no dataset '{name}'; a structure file needs numbers, "
                                     "positions, cell and n_atoms (see acnn_mpi.relax.io)")
            cells = f[self._frame + keys.CELL].shape[0]
            count = int(f.attrs.get("n_frames", cells)) if store else int(f.attrs.get("committed", cells))
            self.n_atoms = np.asarray(f[self._frame + "n_atoms"][:count], dtype=np.int64)
            if self._frame + keys.STRUCTURE_ID in f:
                self.ids = np.asarray(f[self._frame + keys.STRUCTURE_ID][:count], dtype=np.int64)
            else:
                self.ids = np.arange(count, dtype=np.int64)
            if store and (self.ids < 0).any():  # frames without an id: number them after the others
                missing = self.ids < 0
                self.ids[missing] = max(int(self.ids.max()), -1) + 1 + np.arange(int(missing.sum()))
        self.atom_start = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(self.n_atoms, out=self.atom_start[1:])

    def __len__(self) -> int:
        return int(self.n_atoms.shape[0])

    def read(self, rows: Sequence[int]) -> list:
        """ASE ``Atoms`` of the given rows (in that order), each with ``info['structure_id']``."""
        import h5py
        from ase import Atoms

        rows = [int(r) for r in rows]
        if not rows:
            return []
        out = []
        atom, frame = self._atom, self._frame
        with h5py.File(self.path, "r") as f:
            has_pbc = frame + keys.PBC in f
            order = sorted(set(rows))
            lo, hi = int(self.atom_start[order[0]]), int(self.atom_start[order[-1] + 1])
            contiguous = hi - lo <= 4 * int(sum(self.n_atoms[order])) + 1024
            if contiguous:  # one slab read for clustered rows
                numbers_all = f[atom + keys.NUMBERS][lo:hi]
                positions_all = f[atom + keys.POSITIONS][lo:hi]
            cells = f[frame + keys.CELL][order[0]:order[-1] + 1]
            pbcs = f[frame + keys.PBC][order[0]:order[-1] + 1] if has_pbc else None
            for row in rows:
                a, b = int(self.atom_start[row]), int(self.atom_start[row + 1])
                if contiguous:
                    numbers, positions = numbers_all[a - lo:b - lo], positions_all[a - lo:b - lo]
                else:
                    numbers, positions = f[atom + keys.NUMBERS][a:b], f[atom + keys.POSITIONS][a:b]
                pbc = pbcs[row - order[0]] if has_pbc else True
                atoms = Atoms(numbers=numbers, positions=positions, cell=cells[row - order[0]], pbc=pbc)
                atoms.info[keys.STRUCTURE_ID] = int(self.ids[row])
                out.append(atoms)
        return out


def read_all(path: str | os.PathLike) -> list:
    """Every structure of an HDF5 file or relax output directory (see :class:`StructureFile`) as
    ASE ``Atoms`` with ``info['structure_id']``."""
    source = open_structures(path) if os.path.isdir(path) else StructureFile(path)
    return source.read(range(len(source)))


def write_structures(path: str | os.PathLike, structures: Iterable, *, chunk: int = 4096) -> int:
    """Write ASE ``Atoms`` to an HDF5 structure file (streaming, ``chunk`` at a time); ids from
    ``info['structure_id']`` (or ``info['id']``), else the running index. Returns the count.
    Written to a temporary name and renamed, so the file is complete or absent."""
    import h5py

    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    count, atoms_total = 0, 0
    with h5py.File(tmp, "w") as f:
        ds = {
            keys.NUMBERS: f.create_dataset(keys.NUMBERS, (0,), maxshape=(None,), dtype="i8", chunks=(65536,)),
            keys.POSITIONS: f.create_dataset(keys.POSITIONS, (0, 3), maxshape=(None, 3), dtype="f8", chunks=(16384, 3)),
            keys.CELL: f.create_dataset(keys.CELL, (0, 3, 3), maxshape=(None, 3, 3), dtype="f8", chunks=(4096, 3, 3)),
            keys.PBC: f.create_dataset(keys.PBC, (0, 3), maxshape=(None, 3), dtype="bool", chunks=(4096, 3)),
            "n_atoms": f.create_dataset("n_atoms", (0,), maxshape=(None,), dtype="i8", chunks=(4096,)),
            keys.STRUCTURE_ID: f.create_dataset(keys.STRUCTURE_ID, (0,), maxshape=(None,), dtype="i8", chunks=(4096,)),
        }
        buffer: list = []

        def flush():
            nonlocal count, atoms_total
            if not buffer:
                return
            n = len(buffer)
            numbers = np.concatenate([a.get_atomic_numbers() for _, a in buffer])
            positions = np.concatenate([a.get_positions() for _, a in buffer])
            columns = {
                keys.CELL: np.stack([np.asarray(a.get_cell()) for _, a in buffer]),
                keys.PBC: np.stack([np.asarray(a.get_pbc(), dtype=bool) for _, a in buffer]),
                "n_atoms": np.array([len(a) for _, a in buffer], dtype=np.int64),
                keys.STRUCTURE_ID: np.array([i for i, _ in buffer], dtype=np.int64),
            }
            for name, values in ((keys.NUMBERS, numbers), (keys.POSITIONS, positions)):
                ds[name].resize(atoms_total + len(values), axis=0)
                ds[name][atoms_total:] = values
            for name, values in columns.items():
                ds[name].resize(count + n, axis=0)
                ds[name][count:] = values
            count += n
            atoms_total += len(numbers)
            buffer.clear()

        for position, atoms in enumerate(structures):
            info = getattr(atoms, "info", {}) or {}
            sid = info.get(keys.STRUCTURE_ID, info.get("id", position))
            try:
                sid = int(sid)
            except (TypeError, ValueError):
                sid = position
            buffer.append((sid, atoms))
            if len(buffer) >= chunk:
                flush()
        flush()
        ids = f[keys.STRUCTURE_ID][:]
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"{path}: structure ids are not unique (give each structure its own "
                             "info['structure_id'], or none to number them in order)")
    os.replace(tmp, path)
    return count


def open_structures(path: str | os.PathLike, workdir: Optional[str | os.PathLike] = None) -> StructureFile:
    """An HDF5 structure file for ``path``: itself if HDF5 (structure file, shard, label store), the
    index of a relax output directory, else (extxyz, CIF, POSCAR, anything
    ``ase.io`` reads) converted once into ``workdir/input.h5`` (kept, and reused while the source
    file's size and modification time are unchanged)."""
    path = os.fspath(path)
    if os.path.isdir(path):  # a relax output directory (or a campaign's iter_K/relax)
        from .shards import list_shards, write_index

        if not list_shards(path):
            raise ValueError("a directory as input must be the output of `relax` (DIR/shards/rank*.h5)")
        return StructureFile(write_index(path))  # fresh: the directory may have grown since
    if path.lower().endswith(HDF5_SUFFIXES):
        return StructureFile(path)
    import h5py
    from ase.io import iread

    workdir = os.fspath(workdir or os.path.dirname(os.path.abspath(path)))
    target = os.path.join(workdir, "input.h5")
    stat = os.stat(path)
    stamp = f"{os.path.abspath(path)}|{stat.st_size}|{int(stat.st_mtime)}"
    if os.path.exists(target):
        try:
            with h5py.File(target, "r") as f:
                if f.attrs.get("source") == stamp:
                    return StructureFile(target)
        except OSError:
            pass
    write_structures(target, iread(path, index=":"))
    with h5py.File(target, "a") as f:
        f.attrs["source"] = stamp
    return StructureFile(target)
