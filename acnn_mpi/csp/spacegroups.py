"""Space groups for random structure generation: symmetry classes and composition compatibility.

``compatible_space_groups(cell_counts, allowed, primitive)`` answers "in which of these space groups
can a conventional (or primitive) cell with these atom counts be built from Wyckoff positions?"
with pyxtal's rule
(a Wyckoff position without free parameters holds one set of atoms; one with free parameters any
number), solved as a small integer program per group instead of pyxtal's enumeration
(``Group.check_compatible`` takes 20 s for Mg3Ca3H74 over 230 groups; this takes milliseconds and
needs no pyxtal ``Group``: the multiplicity classes of all groups are a shipped table).
Answers are cached per process, keyed by the sorted counts (species do not matter).

Centred groups (C, A, I, F, R) are built in the conventional cell and reduced to the primitive one
(``PRIMITIVE_BASIS``), so a campaign's atom limits count primitive atoms.

Symmetry classes (International Tables; counts 230 / 138 / 68):
  * noncentrosymmetric: no inversion (point groups outside the 11 Laue classes), needed for
    second-harmonic generation;
  * polar: point groups 1, 2, m, mm2, 4, 4mm, 3, 3m, 6, 6mm.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Iterable, Optional, Sequence

from ..errors import UserError

SYMMETRY_CLASSES = ("any", "noncentrosymmetric", "polar")

_CENTROSYMMETRIC_RANGES = ((2, 2), (10, 15), (47, 74), (83, 88), (123, 142), (147, 148),
                           (162, 167), (175, 176), (191, 194), (200, 206), (221, 230))
_POLAR_RANGES = ((1, 1), (3, 9), (25, 46), (75, 80), (99, 110), (143, 146), (156, 161),
                 (168, 173), (183, 186))


def _expand(ranges) -> frozenset[int]:
    return frozenset(n for low, high in ranges for n in range(low, high + 1))


CENTROSYMMETRIC = _expand(_CENTROSYMMETRIC_RANGES)
NONCENTROSYMMETRIC = frozenset(range(1, 231)) - CENTROSYMMETRIC
POLAR = _expand(_POLAR_RANGES)


_CENTRED = {
    "C": (5, 8, 9, 12, 15, 20, 21, 35, 36, 37, 63, 64, 65, 66, 67, 68),
    "A": (38, 39, 40, 41),
    "I": (23, 24, 44, 45, 46, 71, 72, 73, 74, 79, 80, 82, 87, 88, 97, 98, 107, 108, 109, 110, 119,
          120, 121, 122, 139, 140, 141, 142, 197, 199, 204, 206, 211, 214, 217, 220, 229, 230),
    "F": (22, 42, 43, 69, 70, 196, 202, 203, 209, 210, 216, 219, 225, 226, 227, 228),
    "R": (146, 148, 155, 160, 161, 166, 167),  # hexagonal (obverse) setting, as pyxtal
}
#: rows: primitive lattice vectors in units of the conventional ones (a_p = M @ a_conv)
PRIMITIVE_BASIS = {
    "P": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "C": ((0.5, 0.5, 0), (-0.5, 0.5, 0), (0, 0, 1)),
    "A": ((1, 0, 0), (0, 0.5, 0.5), (0, -0.5, 0.5)),
    "I": ((-0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.5, 0.5, -0.5)),
    "F": ((0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)),
    "R": ((2 / 3, 1 / 3, 1 / 3), (-1 / 3, 1 / 3, 1 / 3), (-1 / 3, -2 / 3, 1 / 3)),
}
#: lattice points per conventional cell
CENTRING_MULTIPLICITY = {"P": 1, "C": 2, "A": 2, "I": 2, "F": 4, "R": 3}
_LETTER = {n: letter for letter, numbers in _CENTRED.items() for n in numbers}


def centring(number: int) -> str:
    """The lattice-centring letter of space group ``number`` in its standard setting: P (also for
    trigonal/hexagonal groups with a primitive hexagonal lattice), C, A, I, F or R."""
    return _LETTER.get(int(number), "P")


def centring_multiplicity(number: int) -> int:
    """Conventional atoms per primitive atom of group ``number`` (1, 2, 3 or 4)."""
    return CENTRING_MULTIPLICITY[centring(number)]


def allowed_space_groups(space_groups: Optional[Iterable[int]] = None,
                         symmetry: str = "any") -> tuple[int, ...]:
    """Sorted space-group numbers in ``space_groups`` (default all 230) and the symmetry class.

    Raises UserError for numbers outside 1..230, an unknown class or an empty intersection.
    """
    if symmetry not in SYMMETRY_CLASSES:
        raise UserError(f"generation.symmetry = {symmetry!r}: choose one of {', '.join(SYMMETRY_CLASSES)}")
    if space_groups is None:
        groups = set(range(1, 231))
    else:
        groups = set()
        for g in space_groups:
            if isinstance(g, bool) or not isinstance(g, int) or not 1 <= g <= 230:
                raise UserError(f"generation.space_groups: {g!r} is not a space-group number 1..230")
            groups.add(g)
    if symmetry == "noncentrosymmetric":
        groups &= NONCENTROSYMMETRIC
    elif symmetry == "polar":
        groups &= POLAR
    if not groups:
        raise UserError(f"generation.space_groups {sorted(space_groups or [])} contains no "
                        f"{symmetry} group; widen the list or set symmetry: any")
    return tuple(sorted(groups))


@lru_cache(maxsize=None)
def pyxtal_group(number: int):
    """The pyxtal ``Group`` (3D, standard setting), built once per process (~10 ms each).

    Its ``check_compatible`` is replaced by the cached solver below, so pyxtal's own generator
    (which calls it on every structure) costs nothing extra.
    """
    from pyxtal.symmetry import Group

    group = Group(number, dim=3)
    group.check_compatible = lambda counts, verbose=False: check_compatible(number, counts)
    return group


def wyckoff_classes_from_pyxtal(number: int) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """(multiplicities usable any number of times, ((multiplicity, how many fixed sites), ...)).

    Same grouping as pyxtal's ``Group._get_base_and_upper_bounds``: a multiplicity with any Wyckoff
    position that has free parameters is unbounded; otherwise each fixed position is one use.
    The shipped ``_wyckoff_table.WYCKOFF_CLASSES`` holds this for every group.
    """
    group = pyxtal_group(number)
    free: set[int] = set()
    fixed: dict[int, int] = {}
    for wp in group:
        if wp.get_dof() > 0:
            free.add(int(wp.multiplicity))
        else:
            fixed[int(wp.multiplicity)] = fixed.get(int(wp.multiplicity), 0) + 1
    bounded = tuple(sorted((m, k) for m, k in fixed.items() if m not in free))
    return tuple(sorted(free)), bounded


def _wyckoff_classes(number: int) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    from ._wyckoff_table import WYCKOFF_CLASSES

    return WYCKOFF_CLASSES[number]


@lru_cache(maxsize=None)
def _free_sums(free: tuple[int, ...], limit: int) -> tuple[bool, ...]:
    """reachable[n]: n atoms fill positions of the unbounded multiplicities (n = 0 included)."""
    reachable = [False] * (limit + 1)
    reachable[0] = True
    for n in range(1, limit + 1):
        reachable[n] = any(m <= n and reachable[n - m] for m in free)
    return tuple(reachable)


@lru_cache(maxsize=200_000)
def _compatible_sorted(number: int, counts: tuple[int, ...]) -> tuple[bool, bool]:
    free, bounded = _wyckoff_classes(number)
    reachable = _free_sums(free, max(counts))
    # states: remaining fixed sites per bounded multiplicity, and whether free positions were used
    states = {(tuple(k for _, k in bounded), False)}
    for n in counts:
        next_states = set()
        for remaining, freedom in states:
            choices = [range(min(k, n // m) + 1) for (m, _), k in zip(bounded, remaining)]
            for use in itertools.product(*choices):
                left = n - sum(u * m for u, (m, _) in zip(use, bounded))
                if left >= 0 and reachable[left]:
                    next_states.add((tuple(k - u for k, u in zip(remaining, use)),
                                     freedom or left > 0))
        states = next_states
        if not states:
            return False, False
    return True, any(freedom for _, freedom in states)


def check_compatible(number: int, counts: Sequence[int]) -> tuple[bool, bool]:
    """(compatible, has_freedom) of a conventional cell with atom ``counts`` in group ``number``.

    Same answer as pyxtal's ``Group.check_compatible`` for compatibility; ``has_freedom`` is True
    when some valid assignment uses a position with free parameters.
    """
    key = tuple(sorted(int(n) for n in counts if n > 0))
    if not key:
        return False, False
    return _compatible_sorted(number, key)


@lru_cache(maxsize=100_000)
def _compatible_groups(counts: tuple[int, ...], allowed: tuple[int, ...],
                       primitive: bool) -> tuple[int, ...]:
    def conventional(g):
        return tuple(n * centring_multiplicity(g) for n in counts) if primitive else counts

    return tuple(g for g in allowed if _compatible_sorted(g, conventional(g))[0])


def compatible_space_groups(cell_counts: Iterable[int],
                            allowed: Sequence[int] = tuple(range(1, 231)),
                            primitive: bool = False) -> tuple[int, ...]:
    """Groups among ``allowed`` in which a cell with ``cell_counts`` atoms per species can be built
    (cached per process by the sorted counts). The counts are of the conventional cell, or with
    ``primitive`` of the primitive cell (the conventional cell of a centred group holds
    :func:`centring_multiplicity` times as many)."""
    key = tuple(sorted(int(n) for n in cell_counts if n > 0))
    return _compatible_groups(key, tuple(sorted(allowed)), bool(primitive))


def clear_caches(groups: bool = False) -> None:
    """Forget compatibility answers (and with ``groups``, the pyxtal Group objects): for benchmarks."""
    _compatible_groups.cache_clear()
    _compatible_sorted.cache_clear()
    _free_sums.cache_clear()
    if groups:
        pyxtal_group.cache_clear()
