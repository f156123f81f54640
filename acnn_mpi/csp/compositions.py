"""The composition space of a campaign (paper §II.C, SPEC §4).

Vocabulary, used the same way everywhere in acnn_mpi:

* A **formula** is the irreducible integer formula of a composition: counts with greatest common
  divisor 1 (Mg2H4 is the formula MgH2). **Atoms per formula** is the sum of those counts (MgH2: 3,
  MgCa2H12: 15). ``max_atoms_per_formula`` and ``per_element_bounds`` act on the irreducible formula,
  never on a cell.
* A **cell** holds k **formula units** (k = 1, 2, ...) of a formula; **atoms per cell** = k × atoms
  per formula. ``formula_units`` lists every k with min_atoms_per_cell ≤ k·n ≤ max_atoms_per_cell.
* The **grid** is every formula over the campaign's elements with every element present, within
  the bounds. With ``include_subsystems`` the same rules are applied to every proper subset of the
  elements (binaries, ternaries, ... of the system) and the pure elements are always added: the
  hull needs its corners and edges. ``joins`` add the compositions x·A + y·B (+ z·C) between given
  end members; ``formulas`` add explicit formulas.

The paper's "a maximum of 30 atoms" reading that reproduces its counts is *fewer than 30 atoms per
formula*, every element present: ``max_atoms_per_formula=29`` gives 269 binary, 3,196 ternary and
22,619 quaternary formulas (tests/csp/test_compositions.py; docs/compositions.md).
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from functools import reduce
from typing import Iterable, Iterator, Mapping, Optional, Sequence

from ..elements import parse_formula, validate_symbols
from ..errors import UserError

log = logging.getLogger(__name__)

#: where a composition came from
ORIGINS = ("element", "grid", "join", "formula")


@dataclass(frozen=True)
class Composition:
    """One irreducible composition and the cells it is searched in.

    Attributes:
        counts: ((symbol, count), ...) of the irreducible formula, only elements present, in the
            campaign's element order; gcd of the counts is 1.
        formula_units: the multipliers k with min_atoms_per_cell ≤ k·natoms ≤ max_atoms_per_cell.
        is_subsystem: True when some campaign element is absent (pure elements, lower-order systems).
        origin: 'element', 'grid', 'join' or 'formula' (the first rule that produced it).
        formula: e.g. 'MgCa2H12' (element order of the campaign, counts of 1 omitted).
    """

    counts: tuple[tuple[str, int], ...]
    formula_units: tuple[int, ...]
    is_subsystem: bool
    origin: str = "grid"
    formula: str = field(init=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "formula", "".join(
            s if n == 1 else f"{s}{n}" for s, n in self.counts))

    @property
    def elements(self) -> tuple[str, ...]:
        return tuple(s for s, _ in self.counts)

    @property
    def natoms(self) -> int:
        """Atoms per (irreducible) formula."""
        return sum(n for _, n in self.counts)

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)

    def count(self, symbol: str) -> int:
        return dict(self.counts).get(symbol, 0)

    def cell_counts(self, units: int) -> dict[str, int]:
        """{symbol: atoms} of a cell of ``units`` formula units."""
        return {s: n * units for s, n in self.counts}

    @property
    def cell_sizes(self) -> tuple[int, ...]:
        """Atoms per cell for each entry of ``formula_units``."""
        return tuple(k * self.natoms for k in self.formula_units)


class CompositionSpace(list):
    """A list of :class:`Composition` plus ``notes``: what was left out and why."""

    def __init__(self, items: Iterable[Composition] = (), notes: Sequence[str] = ()):
        super().__init__(items)
        self.notes = list(notes)

    @property
    def n_cells(self) -> int:
        """Number of (composition, formula units) pairs: the distinct cells searched."""
        return sum(len(c.formula_units) for c in self)

    def by_order(self) -> dict[int, int]:
        """{number of elements present: number of compositions}."""
        out: dict[int, int] = {}
        for c in self:
            out[len(c.counts)] = out.get(len(c.counts), 0) + 1
        return dict(sorted(out.items()))


@dataclass(frozen=True)
class RatioBound:
    """Σ(numerator atoms) ≤ max × Σ(denominator atoms), e.g. H per metal ≤ 16."""

    numerator: tuple[str, ...]
    denominator: tuple[str, ...]
    max: float

    def allows(self, counts: Mapping[str, int]) -> bool:
        top = sum(counts.get(s, 0) for s in self.numerator)
        bottom = sum(counts.get(s, 0) for s in self.denominator)
        if bottom == 0:
            return top == 0  # an infinite ratio breaks the bound; 0/0 is unconstrained
        return top <= self.max * bottom * (1 + 1e-12)


def enumerate_compositions(
    elements: Sequence[str],
    *,
    max_atoms_per_formula: int,
    max_atoms_per_cell: int,
    min_atoms_per_formula: int = 1,
    min_atoms_per_cell: int = 1,
    max_formula_units: Optional[int] = None,
    per_element_bounds: Optional[Mapping[str, Sequence[int]]] = None,
    ratio_bounds: Optional[Sequence] = None,
    oxidation_states: Optional[Mapping[str, Sequence[int]]] = None,
    mixed_valence: bool = False,
    joins: Optional[Sequence] = None,
    join_max_coefficient: int = 4,
    formulas: Optional[Sequence[str]] = None,
    include_subsystems: bool = True,
) -> CompositionSpace:
    """All compositions of ``elements`` a campaign searches, each with its formula units.

    Args:
        elements: campaign element symbols; their order sets the order inside formulas.
        max_atoms_per_formula / min_atoms_per_formula: bounds on atoms in the irreducible formula
            (the grid only; see the module docstring).
        max_atoms_per_cell / min_atoms_per_cell: bounds on k × atoms per formula of each cell.
        max_formula_units: an upper bound on k as well (CALYPSO's NumberOfFormula); None: only the
            cell bounds limit k (a pure element then has cells of 1..max_atoms_per_cell atoms).
        per_element_bounds: {symbol: (min, max)} atoms of that element in the irreducible formula,
            applied when the element is present (a min of 0 and of 1 are the same: absence is
            governed by ``include_subsystems``).
        ratio_bounds: items (numerator symbols, denominator symbols, max), or mappings/objects with
            ``numerator``, ``denominator``, ``max``: Σ numerator ≤ max × Σ denominator. A formula
            with numerator atoms and no denominator atoms breaks the bound.
        oxidation_states: {symbol: allowed integer states}; when given, grid formulas must be
            charge neutral for some choice of one state per element (``mixed_valence=True``: per
            atom, so Fe3O4 is neutral with Fe [2, 3]). Pure elements are always neutral.
        joins: end-member formulas. Plain formulas ('BeO', 'P2O5', ...) make a pseudo-binary join
            between every pair of them; 'A-B' / 'A-B-C' strings or [A, B(, C)] lists make one
            pseudo-binary / pseudo-ternary join. Compositions Σ x_i·E_i with 0 ≤ x_i ≤
            ``join_max_coefficient`` (the end members as written, then reduced). Join and
            ``formulas`` compositions skip the grid's bounds but must fit a cell.
        formulas: extra explicit formulas (reduced to their irreducible form).
        include_subsystems: add the lower-order subsystems (same rules) and the pure elements.

    Returns:
        A :class:`CompositionSpace` (a list of :class:`Composition`), sorted by number of elements,
        then element set, then formula; its ``notes`` say what was left out and why.

    Raises:
        UserError: unknown or repeated elements, bounds naming other elements, missing oxidation
            states, explicit formulas or join end members that cannot fit a cell, an empty space.
    """
    elements = validate_symbols(elements, "compositions: elements")
    if not elements:
        raise UserError("elements: give at least one element")
    _check_positive_int("max_atoms_per_formula", max_atoms_per_formula)
    _check_positive_int("max_atoms_per_cell", max_atoms_per_cell)
    _check_positive_int("min_atoms_per_formula", min_atoms_per_formula)
    _check_positive_int("min_atoms_per_cell", min_atoms_per_cell)
    _check_positive_int("join_max_coefficient", join_max_coefficient)
    if max_formula_units is not None:
        _check_positive_int("max_formula_units", max_formula_units)
    if min_atoms_per_cell > max_atoms_per_cell:
        raise UserError(f"compositions.min_atoms_per_cell = {min_atoms_per_cell} exceeds "
                        f"max_atoms_per_cell = {max_atoms_per_cell}")
    bounds = _element_bounds(elements, per_element_bounds, max_atoms_per_formula)
    ratios = [_ratio_bound(item, elements) for item in (ratio_bounds or [])]
    charges = _charge_checker(elements, oxidation_states, mixed_valence)
    cell = (min_atoms_per_cell, max_atoms_per_cell, max_formula_units)

    found: dict[tuple[int, ...], str] = {}  # counts in element order -> origin
    notes: list[str] = []

    def add(vector: tuple[int, ...], origin: str) -> None:
        vector = _reduce(vector)
        found.setdefault(vector, origin)

    # the grid: every element present (and every subset, with include_subsystems)
    orders = range(1, len(elements) + 1) if include_subsystems else [len(elements)]
    too_big = 0
    for order in orders:
        for subset in itertools.combinations(range(len(elements)), order):
            for vector in _grid(subset, len(elements), bounds, min_atoms_per_formula,
                                max_atoms_per_formula):
                counts = {elements[i]: vector[i] for i in subset}
                if order > 1 and not all(r.allows(counts) for r in ratios):
                    continue
                if order > 1 and charges is not None and not charges(vector):
                    continue
                if not _formula_units(sum(vector), *cell):
                    too_big += 1
                    continue
                add(vector, "grid")
    if include_subsystems:  # the hull's corners, whatever the bounds say
        for i, symbol in enumerate(elements):
            vector = tuple(int(j == i) for j in range(len(elements)))
            found[vector] = "element"
    if too_big:
        notes.append(f"{too_big} grid formula(s) left out: no number of formula units makes a cell "
                     f"of {min_atoms_per_cell}-{max_atoms_per_cell} atoms (compositions.max_atoms_per_cell"
                     f"{', max_formula_units' if max_formula_units else ''})")

    # explicit formulas and joins
    for text in formulas or []:
        vector = _vector(parse_formula(text, "compositions.formulas"), elements, "compositions.formulas", text)
        if not _formula_units(sum(_reduce(vector)), *cell):
            raise UserError(f"compositions.formulas: {text} ({sum(_reduce(vector))} atoms per formula) "
                            f"does not fit a cell of {min_atoms_per_cell}-{max_atoms_per_cell} atoms "
                            "(compositions.max_atoms_per_cell)")
        add(vector, "formula")
    join_dropped = 0
    for members in _joins(joins):
        vectors = []
        for text in members:
            vector = _vector(parse_formula(text, "compositions.joins"), elements, "compositions.joins", text)
            if not _formula_units(sum(_reduce(vector)), *cell):
                raise UserError(f"compositions.joins: end member {text} does not fit a cell of "
                                f"{min_atoms_per_cell}-{max_atoms_per_cell} atoms "
                                "(compositions.max_atoms_per_cell)")
            vectors.append(vector)
        for coefficients in itertools.product(range(join_max_coefficient + 1), repeat=len(vectors)):
            if not any(coefficients) or math.gcd(*coefficients) != 1:
                continue
            vector = tuple(sum(x * v[i] for x, v in zip(coefficients, vectors))
                           for i in range(len(elements)))
            if not _formula_units(sum(_reduce(vector)), *cell):
                join_dropped += 1
                continue
            add(vector, "join")
    if join_dropped:
        notes.append(f"{join_dropped} join composition(s) left out: they do not fit a cell of "
                     f"{min_atoms_per_cell}-{max_atoms_per_cell} atoms")

    if not found:
        raise UserError(
            "compositions: the composition space is empty: no formula of "
            f"{'-'.join(elements)} satisfies max_atoms_per_formula = {max_atoms_per_formula}, "
            f"min_atoms_per_formula = {min_atoms_per_formula}, per_element_bounds, ratio_bounds"
            f"{', oxidation_states (charge neutrality)' if charges else ''} and fits "
            f"{min_atoms_per_cell}-{max_atoms_per_cell} atoms per cell; loosen one of them")

    items = []
    for vector, origin in found.items():
        present = tuple((elements[i], n) for i, n in enumerate(vector) if n > 0)
        items.append(Composition(
            counts=present,
            formula_units=_formula_units(sum(vector), *cell),
            is_subsystem=len(present) < len(elements),
            origin=origin,
        ))
    items.sort(key=lambda c: (len(c.counts), [elements.index(s) for s in c.elements],
                              c.natoms, [n for _, n in c.counts]))
    space = CompositionSpace(items, notes)
    for note in notes:
        log.info("compositions: %s", note)
    return space


def compositions_from_config(config) -> CompositionSpace:
    """The composition space of a :class:`acnn_mpi.config.CampaignConfig` (its ``compositions``
    section; oxidation states are used only when ``charge_neutral`` is true)."""
    settings = config.compositions
    return enumerate_compositions(
        config.elements,
        max_atoms_per_formula=settings.max_atoms_per_formula,
        min_atoms_per_formula=settings.min_atoms_per_formula,
        max_atoms_per_cell=settings.max_atoms_per_cell,
        min_atoms_per_cell=settings.min_atoms_per_cell,
        per_element_bounds=settings.per_element_bounds,
        ratio_bounds=settings.ratio_bounds,
        oxidation_states=settings.oxidation_states if settings.charge_neutral else None,
        mixed_valence=getattr(settings, "mixed_valence", False),
        joins=settings.joins,
        join_max_coefficient=getattr(settings, "join_max_coefficient", 4),
        max_formula_units=getattr(settings, "max_formula_units", None),
        formulas=settings.formulas,
        include_subsystems=settings.include_subsystems,
    )


# -- the grid ---------------------------------------------------------------------------------------

def _grid(subset: tuple[int, ...], n_elements: int, bounds: list[tuple[int, int]],
          min_total: int, max_total: int) -> Iterator[tuple[int, ...]]:
    """Count vectors (full length, zeros outside ``subset``) with gcd 1 within the bounds."""
    lows = [bounds[i][0] for i in subset]
    highs = [bounds[i][1] for i in subset]
    # suffix sums of the lows, to prune early
    rest_low = [sum(lows[k + 1:]) for k in range(len(subset))]
    vector = [0] * n_elements

    def place(k: int, used: int, divisor: int) -> Iterator[tuple[int, ...]]:
        i = subset[k]
        top = min(highs[k], max_total - used - rest_low[k])
        for n in range(lows[k], top + 1):
            vector[i] = n
            g = math.gcd(divisor, n)
            if k + 1 < len(subset):
                yield from place(k + 1, used + n, g)
            elif g == 1 and used + n >= min_total:
                yield tuple(vector)
        vector[i] = 0

    if sum(lows) <= max_total:
        yield from place(0, 0, 0)


def _reduce(vector: Sequence[int]) -> tuple[int, ...]:
    g = reduce(math.gcd, vector, 0)
    return tuple(n // g for n in vector) if g > 1 else tuple(vector)


def _formula_units(natoms: int, min_cell: int, max_cell: int,
                   max_units: Optional[int] = None) -> tuple[int, ...]:
    top = max_cell // natoms if max_units is None else min(max_units, max_cell // natoms)
    return tuple(range(max(1, -(-min_cell // natoms)), top + 1))


# -- input normalisation ----------------------------------------------------------------------------

def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"compositions.{name} = {value!r}: must be a positive integer")


def _element_bounds(elements, per_element_bounds, max_total) -> list[tuple[int, int]]:
    bounds = [(1, max_total)] * len(elements)
    for symbol, pair in (per_element_bounds or {}).items():
        if symbol not in elements:
            raise UserError(f"compositions.per_element_bounds names {symbol!r}, which is not in "
                            f"elements {elements}")
        try:
            low, high = (int(x) for x in pair)
        except (TypeError, ValueError):
            raise UserError(f"compositions.per_element_bounds.{symbol} = {pair!r}: "
                            "give [min, max] atoms per formula") from None
        if low < 0 or high < low:
            raise UserError(f"compositions.per_element_bounds.{symbol} = [{low}, {high}]: "
                            "need 0 ≤ min ≤ max")
        bounds[elements.index(symbol)] = (max(1, low), min(high, max_total))
    return bounds


def _ratio_bound(item, elements) -> RatioBound:
    if isinstance(item, RatioBound):
        bound = item
    elif isinstance(item, Mapping):
        bound = RatioBound(tuple(item["numerator"]), tuple(item["denominator"]), float(item["max"]))
    elif hasattr(item, "numerator"):
        bound = RatioBound(tuple(item.numerator), tuple(item.denominator), float(item.max))
    else:
        try:
            numerator, denominator, top = item
        except (TypeError, ValueError):
            raise UserError(f"compositions.ratio_bounds: {item!r} is not (numerator symbols, "
                            "denominator symbols, max ratio)") from None
        numerator = (numerator,) if isinstance(numerator, str) else tuple(numerator)
        denominator = (denominator,) if isinstance(denominator, str) else tuple(denominator)
        bound = RatioBound(numerator, denominator, float(top))
    for symbol in bound.numerator + bound.denominator:
        if symbol not in elements:
            raise UserError(f"compositions.ratio_bounds names {symbol!r}, which is not in "
                            f"elements {elements}")
    if not bound.numerator or not bound.denominator or not bound.max > 0:
        raise UserError(f"compositions.ratio_bounds: {item!r} needs numerator and denominator "
                        "symbols and a positive max")
    return bound


def _charge_checker(elements, oxidation_states, mixed_valence):
    """A function vector -> bool (charge neutral), or None when no states are given."""
    if not oxidation_states:
        return None
    missing = [s for s in elements if s not in oxidation_states]
    extra = [s for s in oxidation_states if s not in elements]
    if extra:
        raise UserError(f"compositions.oxidation_states names {extra}, not in elements {elements}")
    if missing:
        raise UserError(f"compositions.oxidation_states misses {missing}: give the allowed "
                        "oxidation states of every element for charge neutrality")
    states = {}
    for symbol, values in oxidation_states.items():
        values = [values] if isinstance(values, int) else list(values)
        if not values or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
            raise UserError(f"compositions.oxidation_states.{symbol} = {values!r}: "
                            "give a list of integers such as [2] or [5, 3]")
        states[elements.index(symbol)] = sorted(set(values))
    cache: dict[tuple[int, int], frozenset[int]] = {}

    def charges(i: int, n: int) -> frozenset[int]:
        key = (i, n)
        if key not in cache:
            if mixed_valence:
                cache[key] = frozenset(sum(c) for c in
                                       itertools.combinations_with_replacement(states[i], n))
            else:
                cache[key] = frozenset(n * q for q in states[i])
        return cache[key]

    def neutral(vector: Sequence[int]) -> bool:
        totals = {0}
        for i, n in enumerate(vector):
            if n:
                totals = {t + q for t in totals for q in charges(i, n)}
        return 0 in totals

    return neutral


def _vector(counts: Mapping[str, int], elements, setting: str, text: str) -> tuple[int, ...]:
    outside = [s for s in counts if s not in elements]
    if outside:
        raise UserError(f"{setting}: {text} contains {outside}, not in elements {elements}")
    return tuple(int(counts.get(s, 0)) for s in elements)


def _joins(joins) -> list[tuple[str, ...]]:
    """Normalise ``joins`` to a list of end-member tuples (2 or 3 formulas each)."""
    singles, explicit = [], []
    for item in joins or []:
        if isinstance(item, str) and "-" in item:
            members = tuple(part.strip() for part in item.split("-"))
        elif isinstance(item, str):
            singles.append(item.strip())
            continue
        else:
            members = tuple(str(part).strip() for part in item)
        if len(members) not in (2, 3) or not all(members):
            raise UserError(f"compositions.joins: {item!r} must name 2 or 3 end members "
                            "('BeO-P2O5' or ['BeO', 'P2O5', 'P3N5'])")
        explicit.append(members)
    if len(singles) == 1:
        raise UserError(f"compositions.joins: {singles[0]!r} alone makes no join; list at least two "
                        "end members, or write a join as 'A-B'")
    return list(itertools.combinations(singles, 2)) + explicit
