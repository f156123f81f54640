"""Deduplication of relaxed structures, near linear in their number (paper Fig. 2c, SPEC §7).

Three filters, cheapest first:

1. **Composition**: only structures with the same reduced formula can be the same crystal.
2. **Enthalpy window**: within a composition, structures are sorted by enthalpy per atom; a
   structure is compared only with representatives at most ``enthalpy_window`` (eV/atom) below it.
3. **Fingerprints** (:mod:`acnn_mpi.csp.fingerprints`): cosine distance ≤ ``fingerprint_tolerance``
   makes a pair a candidate duplicate; a distance < ``certain_tolerance`` is accepted as it stands
   (relaxations that end in the same minimum differ by ~10⁻⁶); in between, pymatgen's
   ``StructureMatcher`` decides, on structures fetched by a callback only for those pairs.

The walk is leader clustering: in enthalpy order, the lowest structure not yet claimed becomes a
representative and claims, in one vectorized step, every unclaimed structure of its composition
within the window that matches it. So each structure is the duplicate of the *lowest-enthalpy*
matching representative (ties broken by input order), representatives are the lowest-enthalpy
members of their clusters, and the work per structure is the number of representatives in its
window, not the size of its cluster: millions of structures that mostly fall into a few minima
cost about as much as their number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: defaults: eV/atom, cosine distances
ENTHALPY_WINDOW = 0.005
FINGERPRINT_TOLERANCE = 0.01
CERTAIN_TOLERANCE = 1e-4


@dataclass
class DedupResult:
    """Outcome of :func:`deduplicate`.

    Attributes:
        representative: (B,) int64, for each structure the input index of the structure it
            duplicates, or its own index when it is distinct. A representative is its own.
        fingerprint_comparisons: pairs whose fingerprints were compared.
        matcher_calls: pairs sent to the structure matcher.
        matcher_rejections: of those, pairs the matcher found to be different crystals.
    """

    representative: np.ndarray
    fingerprint_comparisons: int = 0
    matcher_calls: int = 0
    matcher_rejections: int = 0

    @property
    def is_unique(self) -> np.ndarray:
        """(B,) bool, True for representatives (distinct structures)."""
        return self.representative == np.arange(len(self.representative))

    @property
    def n_unique(self) -> int:
        return int(self.is_unique.sum())

    def cluster_sizes(self) -> np.ndarray:
        """(B,) int, for a representative the number of structures it stands for (0 for others)."""
        return np.bincount(self.representative, minlength=len(self.representative))


def composition_key(numbers) -> str:
    """Reduced formula of atomic numbers (or an ASE ``Atoms``), elements alphabetical: 'H2Mg'.

    Two cells of the same crystal (e.g. a supercell) get the same key.
    """
    from math import gcd
    from functools import reduce

    from ase.data import chemical_symbols

    if hasattr(numbers, "numbers"):
        numbers = numbers.numbers
    z, counts = np.unique(np.asarray(numbers), return_counts=True)
    divisor = reduce(gcd, counts.tolist(), 0) or 1
    parts = sorted((chemical_symbols[int(k)], int(c) // divisor) for k, c in zip(z, counts))
    return "".join(f"{s}{c if c > 1 else ''}" for s, c in parts)


def default_matcher():
    """pymatgen ``StructureMatcher`` with its default tolerances (ltol 0.2, stol 0.3, 5°),
    primitive cells and volume scaling: a supercell or another setting of a crystal matches it."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5, primitive_cell=True, scale=True,
                            attempt_supercell=False)


def _to_pymatgen(structure):
    """ASE ``Atoms`` become pymatgen ``Structure``s; anything else goes to the matcher as is."""
    from ase import Atoms

    if not isinstance(structure, Atoms):
        return structure
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(structure)


def _rows(array, index: np.ndarray) -> np.ndarray:
    """array[index] as float32 for numpy arrays, memmaps and h5py datasets (sorted reads)."""
    if isinstance(array, np.ndarray):
        return np.asarray(array[index], dtype=np.float32)
    order = np.argsort(index, kind="stable")
    rows = np.asarray(array[index[order]], dtype=np.float32)
    out = np.empty_like(rows)
    out[order] = rows
    return out


def composition_groups(composition: Sequence) -> list[np.ndarray]:
    """Row indices of each composition, largest group first.

    Compositions never share duplicates, so :func:`deduplicate` on each group separately gives
    the same representatives as on everything: the groups can be dealt out to MPI ranks (e.g.
    with ``run_dynamic``), which spreads the structure-matcher calls.
    """
    _, group = np.unique(np.asarray(composition), return_inverse=True)
    group = group.ravel()
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    groups = np.split(order, bounds)
    return sorted(groups, key=len, reverse=True)


def deduplicate(
    composition: Sequence,
    enthalpy_per_atom: np.ndarray,
    fingerprints,
    *,
    enthalpy_window: float = ENTHALPY_WINDOW,
    fingerprint_tolerance: float = FINGERPRINT_TOLERANCE,
    certain_tolerance: float = CERTAIN_TOLERANCE,
    load_structure: Optional[Callable[[int], object]] = None,
    matcher=None,
) -> DedupResult:
    """Find which structures are the same crystal.

    Args:
        composition: (B,) composition keys (reduced formulas from :func:`composition_key`, or any
            integer/str key that is equal exactly for the same composition).
        enthalpy_per_atom: (B,) eV/atom at the campaign pressure. NaN: never a duplicate.
        fingerprints: (B, D) unit fingerprints (:mod:`~acnn_mpi.csp.fingerprints`); a numpy
            array, memmap or h5py dataset (read one composition at a time).
        enthalpy_window: eV/atom, compare only with representatives this far below.
        fingerprint_tolerance: cosine distance above which two structures are different.
        certain_tolerance: cosine distance below which two structures are the same without
            asking the matcher (0: always ask when a loader is given).
        load_structure: ``index -> ASE Atoms or pymatgen Structure`` for the matcher (anything
            a custom ``matcher`` accepts); without it fingerprints alone decide.
        matcher: an object with ``fit(s1, s2) -> bool`` (default :func:`default_matcher`).

    Returns:
        :class:`DedupResult` with the representative of every structure.
    """
    h = np.asarray(enthalpy_per_atom, dtype=np.float64)
    n = len(h)
    if len(composition) != n or len(fingerprints) != n:
        raise ValueError(f"composition ({len(composition)}), enthalpy ({n}) and fingerprints "
                         f"({len(fingerprints)}) must have the same length")
    if not enthalpy_window >= 0 or not fingerprint_tolerance >= 0:
        raise ValueError("enthalpy_window and fingerprint_tolerance must be ≥ 0")
    representative = np.arange(n, dtype=np.int64)
    result = DedupResult(representative)
    if n == 0:
        return result
    if load_structure is not None and matcher is None:
        matcher = default_matcher()

    _, group = np.unique(np.asarray(composition), return_inverse=True)
    order = np.lexsort((np.arange(n), h, group.ravel()))  # NaN enthalpies sort last in a group
    sorted_group = group.ravel()[order]
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(sorted_group)) + 1, [n]])

    for start, stop in zip(bounds[:-1], bounds[1:]):
        index = order[start:stop]
        hs = h[index]
        finite = int(np.isfinite(hs).sum())
        if finite < 2:
            continue
        index, hs = index[:finite], hs[:finite]
        _cluster_group(index, hs, _rows(fingerprints, index), representative, result,
                       enthalpy_window, fingerprint_tolerance, certain_tolerance,
                       load_structure, matcher)
    log.info("dedup: %d structures, %d distinct; %d fingerprint comparisons, %d matcher calls "
             "(%d rejected)", n, result.n_unique, result.fingerprint_comparisons,
             result.matcher_calls, result.matcher_rejections)
    return result


def _cluster_group(index, hs, fps, representative, result, window, tolerance, certain,
                   load_structure, matcher) -> None:
    """Leader clustering of one composition, sorted by enthalpy (see the module docstring)."""
    m = len(index)
    stop = np.searchsorted(hs, hs + window, side="right").tolist()
    free = np.ones(m, dtype=bool)
    cache: dict[int, object] = {}

    def structure(k: int):
        if k not in cache:
            cache[k] = _to_pymatgen(load_structure(int(index[k])))
        return cache[k]

    for a in range(m):
        if not free[a]:
            continue
        free[a] = False
        b = stop[a]
        if b <= a + 1:
            continue
        candidates = np.flatnonzero(free[a + 1:b]) + (a + 1)
        if candidates.size == 0:
            continue
        result.fingerprint_comparisons += int(candidates.size)
        distance = 1.0 - fps[candidates] @ fps[a]
        close = distance <= tolerance
        candidates, distance = candidates[close], distance[close]
        if candidates.size and load_structure is not None:
            keep = distance < certain
            for k in np.flatnonzero(~keep):
                result.matcher_calls += 1
                keep[k] = bool(matcher.fit(structure(a), structure(int(candidates[k]))))
                result.matcher_rejections += int(not keep[k])
            candidates = candidates[keep]
            cache.pop(a, None)
        if candidates.size:
            free[candidates] = False
            representative[index[candidates]] = index[a]
            for k in candidates.tolist():  # claimed: never compared again
                cache.pop(k, None)
