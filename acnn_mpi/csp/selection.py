"""Which relaxed structures go to DFT next (paper §II.C, SPEC §7).

* **Hull candidates**: the C_max compositions whose best structure has the lowest E_hull, and
  from each up to L_max distinct (after dedup) structures of lowest enthalpy per atom. Only
  converged, physical structures take part.
* **Model failures**: unphysical structures (distance check or relaxation classification) and
  structures that did not converge, up to ``max_extra`` in all, lowest enthalpy first, the two
  kinds taken in turn so that both are represented when the bound is tight.

* **Committee** (optional ``spread``, eV/atom, with ``spread_threshold``): within each selected
  composition the lowest-enthalpy structure is always taken (the hull cannot be right without
  it); the other L_max − 1 places go first to the structures on which the committee disagrees by
  more than the threshold, then to the rest, each part by enthalpy. The budget stays C_max × L_max.

Deterministic: compositions are ranked by (E_hull of their best structure rounded to 10⁻⁹ eV/atom,
id of that structure); structures within a composition by (enthalpy per atom, id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

HULL = "hull"
UNPHYSICAL = "unphysical"
NOT_CONVERGED = "not_converged"


@dataclass(frozen=True)
class Candidate:
    """One selected structure.

    Attributes:
        index: row in the input arrays.
        id: campaign-wide structure id.
        reason: ``'hull'``, ``'unphysical'`` or ``'not_converged'``.
        rank: for hull candidates the rank of the composition (1 = lowest E_hull), else the
            position among the failures (1 = first taken).
        e_hull: eV/atom (NaN where unknown).
        spread: committee spread, eV/atom (NaN without committee or where not evaluated).
    """

    index: int
    id: int
    reason: str
    rank: int
    e_hull: float
    spread: float = float("nan")


def _mask(value, n: int, default: bool) -> np.ndarray:
    if value is None:
        return np.full(n, default)
    value = np.asarray(value, dtype=bool)
    if value.shape != (n,):
        raise ValueError(f"masks must have shape ({n},), got {value.shape}")
    return value


def select_candidates(
    ids: Sequence[int],
    composition: Sequence,
    enthalpy_per_atom: np.ndarray,
    e_hull: np.ndarray,
    *,
    c_max: int,
    l_max: int,
    distinct: Optional[np.ndarray] = None,
    converged: Optional[np.ndarray] = None,
    physical: Optional[np.ndarray] = None,
    max_extra: int = 0,
    spread: Optional[np.ndarray] = None,
    spread_threshold: float = np.inf,
) -> list[Candidate]:
    """Select structures for labelling.

    Args:
        ids: (B,) int structure ids (tie-breaking and output).
        composition: (B,) composition keys (equal for the same reduced formula).
        enthalpy_per_atom: (B,) eV/atom.
        e_hull: (B,) eV/atom above the hull.
        c_max: number of compositions (C_max ≥ 0).
        l_max: structures per composition (L_max ≥ 0).
        distinct: (B,) bool, True for dedup representatives (default: all distinct).
        converged: (B,) bool, relaxation converged (default: all).
        physical: (B,) bool, passed the distance checks and was not classified unphysical
            (default: all).
        max_extra: bound on unphysical + non-converged structures added.
        spread: (B,) committee spread, eV/atom (NaN: not evaluated, counts as below the threshold).
        spread_threshold: eV/atom; with ``spread``, structures above it are preferred after each
            composition's lowest-enthalpy one.

    Returns:
        Hull candidates (composition rank, then enthalpy) followed by the failures.
    """
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    h = np.asarray(enthalpy_per_atom, np.float64)
    e = np.asarray(e_hull, np.float64)
    if len(composition) != n or h.shape != (n,) or e.shape != (n,):
        raise ValueError("ids, composition, enthalpy_per_atom and e_hull must have the same length")
    if c_max < 0 or l_max < 0 or max_extra < 0:
        raise ValueError("c_max, l_max and max_extra must be ≥ 0")
    distinct = _mask(distinct, n, True)
    converged = _mask(converged, n, True)
    physical = _mask(physical, n, True)
    sigma = np.full(n, np.nan) if spread is None else np.asarray(spread, np.float64)
    if sigma.shape != (n,):
        raise ValueError(f"spread must have shape ({n},), got {sigma.shape}")
    selected: list[Candidate] = []

    eligible = np.flatnonzero(distinct & converged & physical & np.isfinite(h) & np.isfinite(e))
    if eligible.size and c_max and l_max:
        _, group = np.unique(np.asarray(composition)[eligible], return_inverse=True)
        group = group.ravel()
        order = np.lexsort((ids[eligible], h[eligible], group))
        rows, groups = eligible[order], group[order]
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        stops = np.r_[starts[1:], len(rows)]
        best = rows[starts]
        ranking = np.lexsort((ids[best], np.round(e[best], 9)))[:c_max]
        for rank, g in enumerate(ranking, start=1):
            block = rows[starts[g]:stops[g]]
            if spread is not None:
                block = _uncertain_first(block, sigma, spread_threshold)
            for row in block[:l_max]:
                selected.append(Candidate(int(row), int(ids[row]), HULL, rank, float(e[row]),
                                          float(sigma[row])))

    if max_extra:
        queues = []
        for mask in (~physical & distinct, physical & ~converged & distinct):
            rows = np.flatnonzero(mask)
            key = np.where(np.isfinite(h[rows]), h[rows], np.inf)
            queues.append(rows[np.lexsort((ids[rows], key))].tolist())
        reasons = (UNPHYSICAL, NOT_CONVERGED)
        taken, position = 0, [0, 0]
        while taken < max_extra and any(position[q] < len(queues[q]) for q in (0, 1)):
            for q in (0, 1):
                if taken < max_extra and position[q] < len(queues[q]):
                    row = queues[q][position[q]]
                    position[q] += 1
                    taken += 1
                    selected.append(Candidate(int(row), int(ids[row]), reasons[q], taken,
                                              float(e[row]), float(sigma[row])))
    return selected


def _uncertain_first(block: np.ndarray, spread: np.ndarray, threshold: float) -> np.ndarray:
    """``block`` (rows of one composition by enthalpy) with its first row kept first, then the
    rows whose spread exceeds ``threshold``, then the others, each part in the given order."""
    rest = block[1:]
    uncertain = spread[rest] > threshold   # NaN compares False: not evaluated counts as certain
    return np.concatenate([block[:1], rest[uncertain], rest[~uncertain]])
