"""Campaign directories of earlier acnn_mpi versions, brought up to date when the campaign resumes.

Before the relaxation service, the CSP stage wrote one HDF5 file per chunk of the plan,
``iter_K/relax/chunk_NNNNNNN.h5`` (flat datasets ``structure_id``, ``status``, ``reason``,
``energy``, ``enthalpy``, ``volume``, ``max_force``, ``pressure_residual``, ``steps``, ``n_atoms``,
``numbers``, ``positions``, ``cell``, ``fingerprints``). Today's code reads an iteration's
results from ``iter_K/relax/shards/`` only, so such a campaign resumed at ``csp`` would relax the
whole iteration again, and at ``process`` would select from nothing. :func:`upgrade_relax_dirs`
copies the chunk files' structures into ``iter_K/relax/shards/rank0000.h5`` (the frame layout of
:mod:`acnn_mpi.data.h5frames`; ``formula`` recomputed, the measured ``pressure`` unknown: NaN,
``pbc`` periodic) and moves them into ``iter_K/relax/chunks.old/``: the CSP stage then resumes
after them, and processing, ``hull`` and ``export`` read them as any shard. Label stores of
earlier versions need nothing (:mod:`acnn_mpi.data.store` reads them as they are).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import UserError

log = logging.getLogger(__name__)

CHUNK_GLOB = "chunk_*.h5"
OLD_CHUNKS = "chunks.old"
#: attribute of a shard made from chunk files: the structures it took from them
UPGRADED = "from_chunk_files"


def upgrade_relax_dirs(paths, last_iteration: int, pressure_gpa: float) -> int:
    """Root: move the chunk files of iterations 1..``last_iteration`` into one shard each (see the
    module docstring); returns the structures moved. A chunk file that cannot be read stops the
    campaign with one line naming it and what to do."""
    moved = 0
    for k in range(1, last_iteration + 1):
        directory = paths.relax_dir(k)
        chunks = sorted(directory.glob(CHUNK_GLOB)) if directory.is_dir() else []
        if chunks:
            moved += _upgrade(directory, chunks, pressure_gpa)
    return moved


def _upgrade(directory: Path, chunks: list, pressure_gpa: float) -> int:
    from ..relax import shards

    target = Path(shards.shard_path(directory, 0))
    if shards.list_shards(directory) and not _upgraded(target):
        raise UserError(f"{directory} holds chunk files of an earlier acnn_mpi ({chunks[0].name}, ...) and "
                        f"shards of this one: move the chunk files away (mkdir {directory / OLD_CHUNKS}; "
                        f"mv {directory}/{CHUNK_GLOB} {directory / OLD_CHUNKS}) and run again")
    count = _upgraded(target)
    if not count:  # a shard made and renamed first, so a kill leaves chunk files or the whole shard
        tmp = target.with_name(target.name + ".upgrade")
        if tmp.exists():
            tmp.unlink()  # a previous upgrade killed half-way
        writer = shards.ShardWriter(tmp, rank=0, pressure_gpa=pressure_gpa)
        for chunk in chunks:
            frames, atoms = _chunk_columns(chunk)
            if len(frames["n_atoms"]):
                writer.append_columns(frames, atoms)
        if writer.committed:
            import h5py

            with h5py.File(tmp, "a") as f:
                f.attrs[UPGRADED] = writer.committed
            os.replace(tmp, target)
        count = writer.committed
    old = directory / OLD_CHUNKS
    old.mkdir(exist_ok=True)
    for chunk in chunks:
        os.replace(chunk, old / chunk.name)
    log.info("%s: %d structures of %d chunk files of an earlier acnn_mpi moved into %s (the chunk files "
             "are kept in %s)", directory, count, len(chunks), target, old)
    return count


def _upgraded(shard: Path) -> int:
    """Structures a shard holds from chunk files (0: none, or not such a shard)."""
    import h5py

    if not shard.is_file():
        return 0
    try:
        with h5py.File(shard, "r") as f:
            return int(f.attrs.get(UPGRADED, 0))
    except (OSError, ValueError, TypeError):
        return 0


def _chunk_columns(path: Path) -> tuple[dict, dict]:
    """(per-frame, per-atom) columns of one chunk file, completed to the relax column group."""
    import h5py
    from ase import Atoms

    from ..data.h5frames import FrameReader
    from ..relax.shards import file_columns

    fix = (f"move it away (mv {path} {path}.bad): its structures are then relaxed again (or, once the "
           "CSP stage has ended, left out of the selection)")
    try:
        with h5py.File(path, "r") as f:
            frames, atoms = file_columns(FrameReader(f, path, fix=fix, name="chunk file"))
    except UserError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as error:
        raise UserError(f"{path}: cannot read this chunk file of an earlier acnn_mpi ({error}); {fix}") from None
    starts = np.concatenate([[0], np.cumsum(frames["n_atoms"])])
    numbers = atoms["numbers"]
    frames.setdefault("formula", np.array([Atoms(numbers=numbers[a:b]).get_chemical_formula()
                                           for a, b in zip(starts[:-1], starts[1:])], dtype=object))
    frames.setdefault("pressure", np.full(len(frames["n_atoms"]), np.nan))
    return frames, atoms
