"""The CSP stage: random structures of the iteration's plan relaxed with the current model by the
relaxation service (:mod:`acnn_mpi.relax.service`) into ``iter_K/relax`` (one shard per rank).

The root deals :class:`CSPTask` s (a chunk of the plan: ids, cells and seed); the rank generates
the chunk's structures itself, drops those already committed (a resumed stage), and feeds the rest
to its one continuously full batch; the fingerprints are computed on the rank as results are
committed. Generation is seeded per chunk, and every structure keeps its own optimizer state in
the batch, so a stage killed and resumed relaxes the same structures to the same minima.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .plan import Chunk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CSPTask:
    """One chunk of the plan, less the ids already committed (``skip``, a resumed stage)."""

    chunk: Chunk
    skip: frozenset = frozenset()


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


def stage_settings(config, model_path: Path) -> dict:
    """What an iteration's relaxations depend on: a resumed stage must find the same."""
    from ..relax.shards import file_digest

    return {"model_sha256": file_digest(model_path), "pressure_gpa": float(config.pressure),
            "elements": list(config.elements),
            "relax": config.relax.model_dump(mode="json", exclude={"batch_size", "max_atoms"}),
            "fingerprint_cutoff": float(config.search.fingerprint_cutoff),
            "min_distances": {f"{a}-{b}": d for (a, b), d in sorted(config.min_distance_table().items())}}


def plan_tasks(config, paths, k: int, chunks: list[Chunk]) -> tuple[list[CSPTask], Counter]:
    """Root: claim ``iter_K/relax`` for this model and these settings, and the tasks still to do
    (every chunk with an id not yet committed), with the statuses already committed."""
    from ..relax import shards

    directory = paths.relax_dir(k)
    shards.claim(directory, stage_settings(config, paths.model(k - 1)), f"{directory}")
    done = shards.read_results(directory)
    finished = set(done.structure_id.tolist())
    tasks = []
    for chunk in chunks:
        skip = finished.intersection(chunk.ids)
        if len(skip) < chunk.size:
            tasks.append(CSPTask(chunk=chunk, skip=frozenset(skip)))
    return tasks, Counter(done.status.tolist())


def make_service(config, paths, k: int, rank: int, device: str = "cpu", model=None):
    """Every rank: the relaxation service of iteration ``k`` with model k−1 (or ``model``, an
    energy model object: benchmarks)."""
    from ..csp.fingerprints import FingerprintSettings, fingerprints
    from ..model.potential import ACNN
    from ..relax import shards
    from ..relax.service import RelaxService

    if model is None:
        model = ACNN.load(paths.model(k - 1), map_location=device)
        model.eval()
    relaxer = relaxer_from_config(config, model, device)
    directory = paths.relax_dir(k)
    writer = shards.ShardWriter(shards.shard_path(directory, rank), rank=rank, pressure_gpa=config.pressure,
                                settings=shards.read_settings(directory))
    settings = FingerprintSettings(cutoff=config.search.fingerprint_cutoff)

    def make(task: CSPTask) -> list:
        structures, _, why = generate_chunk(config, task.chunk)
        if why:
            log.warning("chunk %d: %s", task.chunk.index, why)
        return [a for a in structures if a.info["structure_id"] not in task.skip]

    def annotate(results) -> dict:
        return {"fingerprints": fingerprints([r.atoms for r in results], config.elements, settings)}

    chunk = config.relax.chunk_size
    return RelaxService(relaxer, writer, make, annotate=annotate, commit_every=chunk, lookahead=chunk,
                        rank=rank)


def relaxer_from_config(config, model, device: str = "cpu"):
    """The continuous-batching engine with the campaign file's relax options."""
    import torch

    from ..relax.runner import BatchRelaxer

    dtype = torch.float64 if config.model.dtype == "float64" else torch.float32
    return BatchRelaxer(model, config.pressure, config.relax, min_distances=config.min_distance_table(),
                        device=device, dtype=dtype)


def read_iteration_results(paths, iteration: int, elements: list[str], pressure: float):
    """All relaxed structures of an iteration as a :class:`~acnn_mpi.csp.export.ResultSet`, with
    the fingerprints computed on the ranks; fingerprints, reasons and full structures stay on disk
    and are read by row (~90 bytes per structure in memory, with the loader's columns)."""
    from ..csp.export import read_relax_results

    return read_relax_results(paths.relax_dir(iteration), pressure, elements,
                              columns=("fingerprints",), empty_ok=True, lazy=True)
