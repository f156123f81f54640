"""Convex hull of formation enthalpy at the campaign pressure, and E_hull of every structure.

Inputs are arrays, one row per relaxed structure: the atom counts of each element (in the
campaign's element order) and the total enthalpy H = E + PV in eV at the pressure (computed
upstream; :func:`enthalpy` does it from E and V). Then

* h = H / N (eV/atom); the **elemental references** μ_X are the lowest h of the pure elements
  (each element must be present, else :class:`~acnn_mpi.errors.UserError` names the missing one);
* the **formation enthalpy** per atom is H_f = h - Σ_X x_X μ_X, with x the atomic fractions;
* pymatgen's ``PhaseDiagram`` is built on the lowest-enthalpy structure of each composition
  (``PDEntry`` with energy = total enthalpy), which gives the stable phases and the hull facets;
* **E_hull** of *every* structure is H_f minus the hull at its composition. The lower hull is a
  convex piecewise-linear function of x, so it is the maximum of its facet planes:
  hull(x) = max_f c_f · x, with c_f solved from the facet's vertices. This is evaluated once per
  distinct composition (a few thousand) and broadcast to the structures, so 10⁷ structures take
  seconds (``scripts/bench_hull.py``); tests check it against ``PhaseDiagram.get_e_above_hull``.

Energies are eV/atom in the arrays of :class:`HullResult` (meV/atom only where printed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import reduce
from math import gcd
from typing import Optional, Sequence

import numpy as np

from ..errors import UserError
from ..units import gpa_to_ev_per_a3

log = logging.getLogger(__name__)

#: E_hull (eV/atom) at or below which a structure counts as on the hull
ON_HULL_TOLERANCE = 1e-6


def enthalpy(energy, volume, pressure_gpa: float) -> np.ndarray:
    """H = E + P V in eV from energies (eV), volumes (Å³) and a pressure in GPa."""
    return np.asarray(energy, np.float64) + gpa_to_ev_per_a3(pressure_gpa) * np.asarray(volume, np.float64)


def reduced_formula(counts: Sequence[int], elements: Sequence[str]) -> str:
    """'MgCa3H23' from counts in the order of ``elements`` (divided by their gcd; zeros left out)."""
    counts = [int(c) for c in counts]
    divisor = reduce(gcd, counts, 0) or 1
    return "".join(f"{s}{c // divisor if c // divisor > 1 else ''}"
                   for s, c in zip(elements, counts) if c > 0)


def _reduce_counts(counts: np.ndarray) -> np.ndarray:
    divisor = np.gcd.reduce(counts, axis=1)
    divisor[divisor == 0] = 1
    return counts // divisor[:, None]


def _factorize(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, first row of each distinct key) in O(n) with pandas' hash table (a pymatgen
    dependency), else by sorting."""
    try:
        import pandas
    except ImportError:
        _, first, codes = np.unique(keys, return_index=True, return_inverse=True)
        return codes.ravel(), first
    codes, uniques = pandas.factorize(keys, sort=False)
    first = np.full(len(uniques), len(keys), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(keys)))
    return codes.astype(np.int64), first


def _composition_index(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U, n) reduced formulas and (B,) index of each row's formula.

    The cells' raw count vectors are few (formulas × formula units), so they are found first
    with one hash pass over int64 keys; only those are reduced by their gcd."""
    n_el = counts.shape[1]
    base = int(counts.max(initial=0)) + 1
    if n_el * np.log2(max(base, 2)) < 62:
        keys = counts @ (base ** np.arange(n_el, dtype=np.int64))
        raw_index, first = _factorize(keys)
        raw = counts[first]
    else:
        raw, raw_index = np.unique(counts, axis=0, return_inverse=True)
        raw_index = raw_index.ravel()
    compositions, inverse = np.unique(_reduce_counts(raw), axis=0, return_inverse=True)
    return compositions, inverse.ravel()[raw_index]


@dataclass
class HullResult:
    """The hull and every structure's place relative to it (indices are input rows).

    Attributes:
        elements: element symbols, the column order of ``fractions``.
        pressure: GPa, as given (the enthalpies carry it).
        fractions: (B, n) atomic fractions.
        n_atoms: (B,) atoms per cell.
        enthalpy_per_atom: (B,) eV/atom.
        formation_enthalpy: (B,) eV/atom relative to the elemental references.
        e_hull: (B,) eV/atom above the hull (NaN for NaN enthalpies; structures left out of the
            hull, e.g. unphysical ones, may fall below it and get negative values).
        composition_index: (B,) row of ``compositions`` for each structure.
        compositions: (U, n) reduced integer formulas of the distinct compositions.
        best: (U,) structure with the lowest enthalpy of each composition among those used for
            the hull, -1 where none was.
        references: (n,) elemental enthalpies μ_X, eV/atom; ``reference_index`` (n,) their rows.
        stable: (S,) structure rows of the stable phases, ordered by composition.
        facets: (F, n) structure rows of each hull facet's vertices (tie-lines / triangles).
        planes: (F, n) facet planes: hull(x) = max_f planes[f] · x, eV/atom.
        phase_diagram: the pymatgen ``PhaseDiagram`` (entry ``attribute`` = structure row).
    """

    elements: list[str]
    pressure: Optional[float]
    fractions: np.ndarray
    n_atoms: np.ndarray
    enthalpy_per_atom: np.ndarray
    formation_enthalpy: np.ndarray
    e_hull: np.ndarray
    composition_index: np.ndarray
    compositions: np.ndarray
    best: np.ndarray
    references: np.ndarray
    reference_index: np.ndarray
    stable: np.ndarray
    facets: np.ndarray
    planes: np.ndarray
    phase_diagram: object = field(repr=False, default=None)

    def hull_enthalpy(self, fractions: np.ndarray) -> np.ndarray:
        """Formation enthalpy of the hull (eV/atom) at (M, n) atomic fractions."""
        return _max_plane(np.atleast_2d(np.asarray(fractions, np.float64)), self.planes)

    @property
    def is_stable(self) -> np.ndarray:
        """(B,) bool: the structure is one of the stable phases."""
        mask = np.zeros(len(self.e_hull), dtype=bool)
        mask[self.stable] = True
        return mask

    def formula(self, row: int) -> str:
        """Reduced formula of structure ``row``."""
        return reduced_formula(self.compositions[self.composition_index[row]], self.elements)


def _max_plane(fractions: np.ndarray, planes: np.ndarray, chunk: int = 1 << 15) -> np.ndarray:
    out = np.empty(len(fractions))
    for s in range(0, len(fractions), chunk):
        out[s:s + chunk] = (fractions[s:s + chunk] @ planes.T).max(axis=1)
    return out


def _best_rows(composition_index: np.ndarray, h: np.ndarray, usable: np.ndarray,
               n_comp: int) -> np.ndarray:
    """(U,) lowest-enthalpy usable row of each composition (ties: lowest row), -1 if none."""
    lowest = np.full(n_comp, np.inf)
    rows = np.flatnonzero(usable)
    np.minimum.at(lowest, composition_index[rows], h[rows])
    rows = rows[h[rows] == lowest[composition_index[rows]]]
    best = np.full(n_comp, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, composition_index[rows], rows)
    best[best == np.iinfo(np.int64).max] = -1
    return best


def _hull_candidates(best: np.ndarray, fractions: np.ndarray, formation: np.ndarray,
                     reference_index: np.ndarray) -> np.ndarray:
    """Rows that can be hull vertices: the elemental references and the vertices of the lower
    hull of the compositions' best structures below zero formation enthalpy (scipy's Qhull).
    PhaseDiagram then works on tens of entries instead of thousands; all of them when Qhull
    cannot build the hull (too few or degenerate points)."""
    from scipy.spatial import ConvexHull, QhullError

    below = best[formation[best] < -1e-12]
    rows = np.unique(np.concatenate([reference_index, below]))
    n_el = fractions.shape[1]
    if n_el == 1 or len(rows) <= n_el + 1:
        return rows
    points = np.column_stack([fractions[rows, 1:], formation[rows]])
    try:
        hull = ConvexHull(points)
    except QhullError:
        return rows
    lower = hull.equations[:, -2] < -1e-12  # outward normal points down in H_f
    vertices = np.unique(hull.simplices[lower])
    return np.unique(np.concatenate([reference_index, rows[vertices]]))


def convex_hull(counts: np.ndarray, enthalpy_total: np.ndarray, elements: Sequence[str], *,
                pressure: Optional[float] = None, include: Optional[np.ndarray] = None) -> HullResult:
    """Build the hull at one pressure and place every structure relative to it.

    Args:
        counts: (B, n) int atoms of each element per cell, columns in the order of ``elements``.
        enthalpy_total: (B,) H = E + PV of each cell, eV.
        elements: the n element symbols.
        pressure: GPa, recorded in the result (the enthalpies already contain PV).
        include: (B,) bool, structures allowed to build the hull (e.g. converged and physical);
            default all with a finite enthalpy. E_hull is computed for every structure.

    Raises:
        UserError: an element has no (included) pure structure.
    """
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition, Element

    elements = list(elements)
    counts = np.asarray(counts)
    if counts.dtype.kind not in "iu":  # integer counts are used as given (no int64 copy of 10⁶ rows)
        counts = counts.astype(np.int64)
    if counts.ndim != 2 or counts.shape[1] != len(elements):
        raise ValueError(f"counts must be (B, {len(elements)}) for elements {elements}, "
                         f"got shape {counts.shape}")
    if (counts < 0).any():
        raise ValueError("counts must be ≥ 0")
    h_total = np.asarray(enthalpy_total, np.float64)
    n_atoms = counts.sum(axis=1)
    if (n_atoms <= 0).any():
        raise ValueError(f"structure {int(np.flatnonzero(n_atoms <= 0)[0])} has no atoms")
    h = h_total / n_atoms
    fractions = counts / n_atoms[:, None]
    usable = np.isfinite(h) if include is None else (np.asarray(include, bool) & np.isfinite(h))

    compositions, composition_index = _composition_index(counts)
    n_comp = len(compositions)
    best = _best_rows(composition_index, h, usable, n_comp)

    n_el = len(elements)
    reference_index = np.full(n_el, -1, dtype=np.int64)
    pure = np.flatnonzero(((compositions > 0).sum(axis=1) == 1) & (best >= 0))
    reference_index[compositions[pure].argmax(axis=1)] = best[pure]
    missing = [elements[k] for k in range(n_el) if reference_index[k] < 0]
    if missing:
        raise UserError(f"the convex hull needs a relaxed structure of every pure element; none "
                        f"for {', '.join(missing)} (add {', '.join(missing)} structures to the "
                        f"results, or leave the element out of the element list)")
    references = h[reference_index]
    formation = h - fractions @ references

    candidates = _hull_candidates(best[best >= 0], fractions, formation, reference_index)
    entries = [PDEntry(Composition({Element(elements[k]): int(c) for k, c in enumerate(counts[i]) if c}),
                       float(h_total[i]), attribute=int(i)) for i in candidates]
    diagram = PhaseDiagram(entries, elements=[Element(s) for s in elements])
    facets = np.array([[diagram.qhull_entries[v].attribute for v in facet] for facet in diagram.facets],
                      dtype=np.int64).reshape(-1, n_el)
    if n_el == 1:
        planes = np.zeros((1, 1))
    else:
        planes = np.stack([np.linalg.solve(fractions[f], formation[f]) for f in facets])
    stable = np.array(sorted({int(e.attribute) for e in diagram.stable_entries},
                             key=lambda i: (tuple(-fractions[i]), i)), dtype=np.int64)

    hull_at = _max_plane(compositions / compositions.sum(axis=1, keepdims=True), planes)
    e_hull = formation - hull_at[composition_index]
    log.info("hull: %d structures, %d compositions, %d stable phases, %d facets",
             len(h), n_comp, len(stable), len(facets))
    return HullResult(elements=elements, pressure=pressure, fractions=fractions, n_atoms=n_atoms,
                      enthalpy_per_atom=h, formation_enthalpy=formation, e_hull=e_hull,
                      composition_index=composition_index, compositions=compositions, best=best,
                      references=references, reference_index=reference_index, stable=stable,
                      facets=facets, planes=planes, phase_diagram=diagram)


def e_hull_of_rows(counts: np.ndarray, enthalpy_total: np.ndarray, elements: Sequence[str], *,
                   pressure: Optional[float] = None,
                   include: Optional[np.ndarray] = None,
                   composition_codes: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """((B,) E_hull in eV/atom, (S,) rows of the stable phases) as :func:`convex_hull` gives them
    (to rounding), from the hull of one row per composition: what a root ranking 10⁶ structures
    needs, without convex_hull's (B, n) fractions and its other per-row arrays (docs/processing.md:
    the root at 10⁶ structures). Arguments and errors as :func:`convex_hull`;
    ``composition_codes``: (B,) ints 0..U-1, equal exactly where the reduced compositions are
    (the caller's, e.g. codes of reduced formulas), saving the per-row composition search."""
    counts = np.asarray(counts)
    h = np.asarray(enthalpy_total, np.float64) / counts.sum(axis=1)
    usable = np.isfinite(h) if include is None else (np.asarray(include, bool) & np.isfinite(h))
    if composition_codes is None:
        composition_index = _composition_index(counts)[1]
    else:
        composition_index = np.asarray(composition_codes)
    n_comp = int(composition_index.max(initial=-1)) + 1
    best = _best_rows(composition_index, h, usable, n_comp)
    # a composition without a usable row is represented by its lowest finite (else first) row
    fallback = _best_rows(composition_index, h, np.isfinite(h), n_comp)
    rep = np.where(best >= 0, best, fallback)
    if (rep < 0).any():  # a composition of NaN enthalpies only: its first row
        first = np.full(n_comp, len(h), dtype=np.int64)
        np.minimum.at(first, composition_index, np.arange(len(h)))
        rep = np.where(rep >= 0, rep, first)
    sub = convex_hull(counts[rep], np.asarray(enthalpy_total, np.float64)[rep], elements, pressure=pressure,
                      include=usable[rep])
    # per composition c (sub row c): Σ x_X μ_X and the hull's formation enthalpy, eV/atom
    below = sub.fractions @ sub.references
    hull_at = sub.hull_enthalpy(sub.compositions / sub.compositions.sum(axis=1, keepdims=True))
    hull_at = hull_at[sub.composition_index]
    e_hull = h - below[composition_index]
    e_hull -= hull_at[composition_index]
    return e_hull, rep[sub.stable]  # sub row k is row rep[k]
