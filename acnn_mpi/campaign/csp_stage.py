"""The CSP stage on a worker rank: generate a chunk of random structures, relax them with the
current model, fingerprint them, and write the chunk to its own HDF5 file.

A chunk file is written under a temporary name and renamed when complete, so after a kill a chunk
is either there in full or absent; a resumed run recomputes only absent chunks, from the same seed,
and so makes the same structures. Only a small :class:`ChunkSummary` goes back to the root.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .plan import Chunk

log = logging.getLogger(__name__)

CHUNK_FORMAT = "acnn_mpi relaxed chunk"


@dataclass
class ChunkSummary:
    """Counts of one relaxed chunk (what the root needs for progress and the B_max rule)."""

    chunk: int
    structures: int = 0
    converged: int = 0
    not_converged: int = 0
    unphysical: int = 0
    failed: int = 0
    missing: int = 0          # structures the generator could not make
    steps: int = 0            # optimizer steps of all structures
    seconds: float = 0.0
    reused: bool = False      # read from an existing chunk file (resume)


def generate_chunk(config, chunk: Chunk) -> tuple[list, int, str]:
    """The chunk's random structures (ASE Atoms with ``info['structure_id']``), how many could not
    be made, and why (empty when all were made). One generator per cell of the chunk."""
    from ..csp.generation import StructureGenerator, settings_from_config

    structures, why = [], []
    for m, cell, ids in chunk.groups():
        try:
            generator = StructureGenerator(cell.as_dict(),
                                           **settings_from_config(config, seed=[*chunk.seed, m]))
        except UserError as error:  # this cell cannot be built: count, do not stop the campaign
            why.append(str(error))
            continue
        for structure_id in ids:
            atoms = generator.next_structure()
            if atoms is not None:
                atoms.info["structure_id"] = structure_id
                structures.append(atoms)
    missing = chunk.size - len(structures)
    if missing:
        why.insert(0, f"{missing} of {chunk.size} structures ({chunk.formula}) could not be generated")
    return structures, missing, "; ".join(why)


class CSPWorker:
    """Callable run on each rank for each chunk: ``worker(chunk) -> ChunkSummary``.

    The model file is loaded once per rank and reused for every chunk of the iteration.
    """

    def __init__(self, config, paths, model_path: Path, device: str = "cpu"):
        self.config = config
        self.paths = paths
        self.model_path = Path(model_path)
        self.device = device
        self._model = None

    @property
    def model(self):
        if self._model is None:
            from ..model.potential import ACNN

            self._model = ACNN.load(self.model_path, map_location=self.device)
            self._model.eval()
        return self._model

    def __call__(self, chunk: Chunk) -> ChunkSummary:
        path = self.paths.chunk_file(chunk.iteration, chunk.index)
        if path.exists():
            return read_chunk_summary(path)
        start = time.perf_counter()
        structures, missing, why = generate_chunk(self.config, chunk)
        if why:
            log.warning("chunk %d: %s", chunk.index, why)
        results = self._relax(structures) if structures else []
        summary = ChunkSummary(chunk=chunk.index, structures=len(results), missing=missing,
                               steps=sum(r.steps for r in results))
        for r in results:
            setattr(summary, r.status, getattr(summary, r.status) + 1)
        summary.seconds = time.perf_counter() - start
        write_chunk(path, chunk, results, self._fingerprints(results), summary)
        return summary

    def _relax(self, structures):
        import torch

        from ..relax.runner import relax_structures

        settings = self.config.relax
        dtype = torch.float64 if self.config.model.dtype == "float64" else torch.float32
        return relax_structures(
            structures, self.model, self.config.pressure, batch_size=settings.batch_size,
            fmax=settings.fmax, dh_tol=settings.dh_tol, stress_tol=settings.stress_tol,
            max_steps=settings.max_steps, min_distances=self.config.min_distance_table(),
            min_distance_fraction=settings.min_distance_fraction,
            volume_window=settings.volume_window, energy_floor=settings.energy_floor,
            device=self.device, dtype=dtype)

    def _fingerprints(self, results) -> np.ndarray:
        from ..csp.fingerprints import FingerprintSettings, fingerprints

        settings = FingerprintSettings(cutoff=self.config.search.fingerprint_cutoff)
        if not results:
            from ..csp.fingerprints import fingerprint_size

            return np.zeros((0, fingerprint_size(len(self.config.elements), settings)), np.float32)
        return fingerprints([r.atoms for r in results], self.config.elements, settings)


# -- chunk files ------------------------------------------------------------------------------------

def write_chunk(path: Path, chunk: Chunk, results, fingerprints: np.ndarray, summary: ChunkSummary) -> None:
    """Write one chunk's relaxed structures atomically (temporary file, then rename)."""
    import h5py

    tmp = path.with_name(path.name + ".tmp")
    n_atoms = np.array([len(r.atoms) for r in results], dtype=np.int64)
    string = h5py.string_dtype()
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = CHUNK_FORMAT
        f.attrs["iteration"] = chunk.iteration
        f.attrs["chunk"] = chunk.index
        f.attrs["formula"] = chunk.formula
        for key, value in asdict(summary).items():
            f.attrs[f"summary_{key}"] = value
        f["structure_id"] = np.array([r.structure_id for r in results], dtype=np.int64)
        f["status"] = np.array([r.status for r in results], dtype=object).astype(string)
        f["reason"] = np.array([r.reason for r in results], dtype=object).astype(string)
        for name in ("energy", "enthalpy", "volume", "max_force", "pressure_residual"):
            f[name] = np.array([getattr(r, name) for r in results], dtype=np.float64)
        f["steps"] = np.array([r.steps for r in results], dtype=np.int64)
        f["n_atoms"] = n_atoms
        f["numbers"] = (np.concatenate([r.atoms.numbers for r in results]) if results
                        else np.zeros(0, np.int64))
        f["positions"] = (np.concatenate([r.atoms.positions for r in results]) if results
                          else np.zeros((0, 3)))
        f["cell"] = (np.stack([np.asarray(r.atoms.cell) for r in results]) if results
                     else np.zeros((0, 3, 3)))
        f["fingerprints"] = fingerprints.astype(np.float32)
        f.flush()
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_chunk_summary(path: Path) -> ChunkSummary:
    import h5py

    with h5py.File(path, "r") as f:
        values = {name[len("summary_"):]: f.attrs[name] for name in f.attrs if name.startswith("summary_")}
    summary = ChunkSummary(**{k: (v.item() if hasattr(v, "item") else v) for k, v in values.items()})
    summary.reused = True
    return summary


def read_iteration_results(paths, iteration: int, elements: list[str], pressure: float):
    """All relaxed structures of an iteration as a :class:`~acnn_mpi.csp.export.ResultSet`.

    Arrays are read in full (tens of bytes per structure); full structures are loaded on demand
    from their chunk file by ``result_set.load(row)``.
    """
    import h5py
    from ase import Atoms

    from ..csp.export import ResultSet
    from ..elements import element_counts

    files = sorted(paths.relax_dir(iteration).glob("chunk_*.h5"))
    columns = {name: [] for name in ("structure_id", "status", "reason", "enthalpy", "volume",
                                     "n_atoms", "fingerprints", "counts", "steps")}
    where = []  # row -> (file index, first atom, n atoms, row in file)
    for file_number, path in enumerate(files):
        with h5py.File(path, "r") as f:
            n_atoms = f["n_atoms"][()]
            numbers = f["numbers"][()]
            for name in ("structure_id", "enthalpy", "volume", "n_atoms", "fingerprints", "steps"):
                columns[name].append(f[name][()])
            columns["status"].extend(s.decode() if isinstance(s, bytes) else s for s in f["status"][()])
            columns["reason"].extend(s.decode() if isinstance(s, bytes) else s for s in f["reason"][()])
        offsets = np.concatenate([[0], np.cumsum(n_atoms)])
        columns["counts"].append(element_counts(numbers, offsets, elements))
        where.extend((file_number, int(offsets[row]), int(n_atoms[row]), row) for row in range(len(n_atoms)))

    def stack(name, empty):
        return np.concatenate(columns[name]) if columns[name] else empty

    status = np.array(columns["status"], dtype=object)

    def load(row: int):
        file_number, first, count, local = where[row]
        with h5py.File(files[file_number], "r") as f:
            atoms = Atoms(numbers=f["numbers"][first:first + count],
                          positions=f["positions"][first:first + count],
                          cell=f["cell"][local], pbc=True)
        atoms.info["structure_id"] = int(ids[row])
        return atoms

    ids = stack("structure_id", np.zeros(0, np.int64))
    result = ResultSet(
        elements=list(elements), ids=ids, counts=stack("counts", np.zeros((0, len(elements)), np.int64)),
        enthalpy=stack("enthalpy", np.zeros(0)), pressure=pressure, volume=stack("volume", np.zeros(0)),
        converged=status == "converged", physical=status != "unphysical",
        reason=list(columns["reason"]), load=load,
        fingerprints=stack("fingerprints", None) if columns["fingerprints"] else None,
        source=str(paths.relax_dir(iteration)))
    result.steps = stack("steps", np.zeros(0, np.int64))
    result.status = status
    return result
