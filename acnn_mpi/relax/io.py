"""Structure files for relaxation input: HDF5 with random access, and conversion from ASE formats.

Every HDF5 file of the package is a structure file: the one frame layout
(:mod:`acnn_mpi.data.h5frames`) holds the structures (``atoms/numbers``, ``atoms/positions``,
``frames/cell``, ``pbc``, ``n_atoms``, ``atom_offset``, ``structure_id``; only the first
``n_frames`` are committed) whatever else it holds: a label store, a relaxation shard, a relax
output directory's ``index.h5``, or a file written by :func:`write_structures` (``kind`` =
"structures", no optional columns). Flat files of earlier versions (``numbers``, ``positions``,
``cell``, ``n_atoms``, optional ``pbc``/``structure_id`` at the root) are read too.

Reading is by row (the structure's position in the file): workers fetch just the structures of
their chunk, so no rank holds the whole input in memory.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence

import numpy as np

from .. import keys
from ..data import h5frames

#: file suffixes read as HDF5 structure files
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


class StructureFile:
    """Random access to the structures of any HDF5 file of the package (see the module docstring).

    Attributes:
        path: the file; ids: (S,) int64 structure ids (frames without one, as in a label store,
        are numbered after the others); n_atoms: (S,) atoms per structure; atom_start: (S + 1,).

    Raises:
        ValueError (a :class:`~acnn_mpi.errors.DamagedFileError`): not such a file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        with self._open() as reader:
            self.atom_start = reader.offsets()
            self.n_atoms = np.diff(self.atom_start)
            count = len(reader)
            ids = reader.read(keys.STRUCTURE_ID) if reader.has(keys.STRUCTURE_ID) else np.arange(count)
        self.ids = np.asarray(ids, dtype=np.int64)
        missing = self.ids < 0
        if missing.any():  # frames without an id: number them after the others
            self.ids[missing] = max(int(self.ids.max()), -1) + 1 + np.arange(int(missing.sum()))

    def _open(self):
        from contextlib import contextmanager

        import h5py

        @contextmanager
        def reader():
            with h5py.File(self.path, "r") as f:
                yield h5frames.FrameReader(f, self.path, name="structure file",
                                           fix="write it again (acnn_mpi.relax.io.write_structures)")

        return reader()

    def __len__(self) -> int:
        return int(self.n_atoms.shape[0])

    def read(self, rows: Sequence[int]) -> list:
        """ASE ``Atoms`` of the given rows (in that order), each with ``info['structure_id']``."""
        rows = np.asarray([int(r) for r in rows], dtype=np.int64)
        if rows.size == 0:
            return []
        with self._open() as reader:
            out = h5frames.read_structures(reader, rows)
        for atoms, row in zip(out, rows):
            atoms.info[keys.STRUCTURE_ID] = int(self.ids[row])
        return out


def read_all(path: str | os.PathLike) -> list:
    """Every structure of an HDF5 file or relax output directory (see :class:`StructureFile`) as
    ASE ``Atoms`` with ``info['structure_id']``."""
    source = open_structures(path) if os.path.isdir(path) else StructureFile(path)
    return source.read(range(len(source)))


def write_structures(path: str | os.PathLike, structures: Iterable, *, chunk: int = 4096) -> int:
    """Write ASE ``Atoms`` to an HDF5 structure file (the frame layout, ``kind`` "structures";
    streaming, ``chunk`` at a time); ids from ``info['structure_id']`` (or ``info['id']``), else
    the running index. Returns the count. Written to a temporary name and renamed, so the file is
    complete or absent."""
    import h5py

    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            h5frames.create_layout(f, h5frames.STRUCTURES)
            writer = h5frames.FrameWriter(f, path)
            buffer: list = []
            for position, atoms in enumerate(structures):
                info = getattr(atoms, "info", {}) or {}
                try:
                    sid = int(info.get(keys.STRUCTURE_ID, info.get("id", position)))
                except (TypeError, ValueError):
                    sid = position
                buffer.append((sid, atoms))
                if len(buffer) >= chunk:
                    writer.append(*h5frames.structure_columns([a for _, a in buffer], [i for i, _ in buffer]))
                    buffer.clear()
            if buffer:
                writer.append(*h5frames.structure_columns([a for _, a in buffer], [i for i, _ in buffer]))
            ids = writer.read(keys.STRUCTURE_ID)
            count = len(writer)
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"{path}: structure ids are not unique (give each structure its own "
                             "info['structure_id'], or none to number them in order)")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
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
