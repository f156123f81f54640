"""Interatomic distance checks of relaxed structures (paper Fig. 2c, SPEC §7).

A structure is *unphysical* when two atoms A and B are closer than ``fraction`` × d_min(A, B),
with d_min from the campaign's per-pair matrix (``CampaignConfig.min_distance_table()``). Such
structures are not thrown away: they are kept with the reason (they are the ones the model gets
wrong, and the selection sends some of them to DFT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence, Union

import numpy as np

#: default fraction of the minimum distance below which a pair is unphysical
FRACTION = 0.5

PairTable = Mapping[Union[tuple[str, str], str], float]


@dataclass(frozen=True)
class DistanceCheck:
    """Outcome for one structure.

    Attributes:
        ok: True when no pair is closer than fraction × d_min.
        reason: '' when ok, else the worst pair, e.g. 'Mg-H 0.62 Å < 0.5 × 1.4 Å (3 pairs)'.
        worst_ratio: min over pairs of d / d_min (inf without any pair in range).
    """

    ok: bool
    reason: str
    worst_ratio: float


def pair_matrix(min_distances: PairTable, elements: Sequence[str]) -> np.ndarray:
    """(n, n) Å matrix of minimum distances in the order of ``elements``.

    ``min_distances`` maps ('Mg', 'H') or 'Mg-H' to Å; one order of each pair is enough.
    Raises ValueError naming a missing pair.
    """
    n = len(elements)
    table: dict[tuple[str, str], float] = {}
    for key, value in min_distances.items():
        a, b = key.split("-") if isinstance(key, str) else key
        table[(a, b)] = table[(b, a)] = float(value)
    matrix = np.zeros((n, n))
    for i, a in enumerate(elements):
        for j, b in enumerate(elements):
            if (a, b) not in table:
                raise ValueError(f"no minimum distance for the pair {a}-{b}")
            matrix[i, j] = table[(a, b)]
    return matrix


def _format(x: float) -> str:
    return f"{x:.3g}" if x < 10 else f"{x:.1f}"


def check_distances(atoms, min_distances: PairTable, fraction: float = FRACTION,
                    *, elements: Sequence[str] | None = None) -> DistanceCheck:
    """Check one ASE ``Atoms`` (periodic or not) against the pair table.

    Args:
        atoms: the structure.
        min_distances: pair -> d_min in Å (see :func:`pair_matrix`).
        fraction: a pair closer than fraction × d_min is unphysical.
        elements: element order (default: the structure's elements in order of appearance).
    """
    from ase.data import chemical_symbols

    if not 0 < fraction:
        raise ValueError(f"fraction must be positive, got {fraction}")
    numbers = atoms.numbers
    present = sorted(set(numbers.tolist()))
    symbols = list(elements) if elements is not None else \
        list(dict.fromkeys(atoms.get_chemical_symbols()))
    matrix = pair_matrix(min_distances, symbols) if not isinstance(min_distances, np.ndarray) \
        else np.asarray(min_distances)
    lookup = np.full(max(present) + 1, -1)
    for k, s in enumerate(symbols):
        z = chemical_symbols.index(s)
        if z < len(lookup):
            lookup[z] = k
    species = lookup[numbers]
    if (species < 0).any():
        raise ValueError(f"structure has elements outside {symbols}")
    limit = fraction * matrix
    cutoff = float(limit[np.ix_(np.unique(species), np.unique(species))].max())
    if len(atoms) < 1 or cutoff <= 0:
        return DistanceCheck(True, "", float("inf"))
    import vesin

    pbc = np.asarray(atoms.pbc)
    box = atoms.cell.array if pbc.any() else np.zeros((3, 3))
    i, j, d = vesin.NeighborList(cutoff=cutoff, full_list=False).compute(
        points=atoms.positions, box=box, periodic=pbc.tolist() if pbc.any() else False,
        quantities="ijd")
    if d.size == 0:
        return DistanceCheck(True, "", float("inf"))
    si, sj = species[i], species[j]
    ratio = d / matrix[si, sj]
    bad = ratio < fraction
    worst = int(np.argmin(ratio))
    if not bad.any():
        return DistanceCheck(True, "", float(ratio[worst]))
    a, b = sorted((int(si[worst]), int(sj[worst])))
    count = int(bad.sum())
    reason = (f"{symbols[a]}-{symbols[b]} {d[worst]:.2f} Å < {fraction:g} × "
              f"{_format(matrix[a, b])} Å" + (f" ({count} pairs)" if count > 1 else ""))
    return DistanceCheck(False, reason, float(ratio[worst]))


def check_many(structures: Iterable, min_distances: PairTable, fraction: float = FRACTION,
               *, elements: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Check many structures: ((B,) bool ok, [reason or ''] * B)."""
    ok, reasons = [], []
    for atoms in structures:
        result = check_distances(atoms, min_distances, fraction, elements=elements)
        ok.append(result.ok)
        reasons.append(result.reason)
    return np.array(ok, dtype=bool), reasons
