"""Seed structures: known or user-supplied structures that a campaign relaxes and labels in its
initial sampling (``search.seeds``: CIF, POSCAR, extended XYZ or any file ``ase.io.read`` knows).

Each structure gets an id of iteration 0 above every random structure's (:data:`SEED_ID_OFFSET` + k,
in the order of the files and of the frames within a file), so the labels store tells them apart
and a resumed run relabels none. They are relaxed by the labeller at the campaign pressure (as the
final stage relaxes near-hull structures; at each pressure of a campaign over several, with ids
shifted by ``PRESSURE_STRIDE`` per pressure) and the relaxed frame is stored with ``source`` "seed";
from then on they are ordinary labels: trained on, and on the labels' hull.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import UserError
from .plan import ITERATION_STRIDE

log = logging.getLogger(__name__)

#: ids of seed structures: SEED_ID_OFFSET + k, inside iteration 0 and beyond any chunk's ids
SEED_ID_OFFSET = ITERATION_STRIDE * 9 // 10


def read_seeds(files: Sequence[str], elements: Sequence[str]) -> list:
    """The structures of ``files`` as ASE Atoms with ``info['structure_id']`` and ``info['seed_file']``.

    Raises:
        UserError: a file that cannot be read, holds no structure, is not periodic in 3D, or has an
            element outside ``elements``.
    """
    import ase.io

    allowed = set(elements)
    out = []
    for name in files:
        try:
            structures = ase.io.read(name, index=":")
        except Exception as error:  # ase raises many kinds for unreadable files
            raise UserError(f"search.seeds: cannot read {name} ({type(error).__name__}: {error}); "
                            "give a CIF, POSCAR or extended XYZ file") from None
        if not structures:
            raise UserError(f"search.seeds: {name} holds no structure")
        for k, atoms in enumerate(structures):
            where = f"{name}" + (f" (structure {k})" if len(structures) > 1 else "")
            foreign = sorted(set(atoms.get_chemical_symbols()) - allowed)
            if foreign:
                raise UserError(f"search.seeds: {where} contains {', '.join(foreign)}, not in "
                                f"elements {list(elements)}; remove it or add the element")
            if not atoms.pbc.all() or atoms.cell.rank < 3:
                raise UserError(f"search.seeds: {where} is not a periodic 3D crystal (give a cell)")
            atoms.calc = None
            atoms.info = {"structure_id": SEED_ID_OFFSET + len(out), "seed_file": Path(name).name}
            out.append(atoms)
    return out


def label_seeds(comm, config, labels_path: Path,
                should_stop: Optional[Callable[[], bool]] = None, id_offset: int = 0):
    """Relax the seed structures with the labeller at ``config.pressure`` and add them to
    ``labels_path`` (every rank calls; the root reads the files), their ids shifted by
    ``id_offset`` (a campaign over several pressures relaxes them at each, with ids of its own).
    Returns the labelling summary on the root."""
    from ..label.runner import label_structures

    def read():
        seeds = read_seeds(config.search.seeds, config.elements)
        for atoms in seeds:
            atoms.info["structure_id"] += id_offset
        log.info("initial sampling: relaxing %d seed structure(s) from %d file(s) with the labeller",
                 len(seeds), len(config.search.seeds))
        return [(int(a.info["structure_id"]), a) for a in seeds]

    structures = comm.root_then_bcast(read)  # a bad file fails every rank alike
    return label_structures(comm, structures if comm.is_root else None, config.labeller,
                            str(labels_path), mode="relax",
                            pressure_gpa=config.pressure, fmax=max(config.relax.fmax_ev_per_a, 0.01),
                            should_stop=should_stop, source="seed", iteration=0,
                            root_works=config.parallel.root_works)
