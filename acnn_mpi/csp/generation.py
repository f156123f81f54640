"""Random symmetric crystal structures (CALYPSO's random mode; paper §IV.B, Eqs. 17-20).

Every attempt draws a space group uniformly among the allowed ones that are compatible with the
cell's atom counts, a volume factor f uniformly in ``volume_factor_range`` and builds (``wyckoff.py``,
on pyxtal's Wyckoff tables and lattice generator) a primitive cell of volume
V = f × Σ_i n_i V_i (``atomic_volumes``, Å³ per atom) whose atoms sit on Wyckoff positions no closer
than the per-pair minimum distance d_min(A, B) (Å): the counts n_i are of the primitive cell, and a
centred group (C, A, I, F, R with c = 2, 2, 2, 4, 3 lattice points) is built in its conventional
cell with c × n_i atoms and c × V, then reduced, so a centred phase costs no more atoms than its
primitive cell holds. Each output is checked again, independently
(vesin neighbour list: all pairs, periodic, an atom's own images included) and for V/Σ n_i V_i
inside the factor range; a failed attempt is counted by space group and reason and retried, never
dropped silently. ``atoms.info`` records ``generated_space_group`` (the group drawn; the structure's
own symmetry can be higher when atoms sit on special positions) and ``volume_factor``.

Randomness comes from ``numpy.random.SeedSequence(seed)``: the k-th structure of a generator
depends only on (seed, k), so the same seed gives identical structures, and worker ranks can
stream structures next to relaxation with seeds such as (campaign seed, iteration, task id).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from ..elements import default_atomic_volume, default_min_distance, validate_symbols
from ..errors import UserError
from .spacegroups import allowed_space_groups, centring_multiplicity, compatible_space_groups
from .wyckoff import place_atoms, to_primitive

log = logging.getLogger(__name__)

#: Kepler's bound: no packing of equal spheres fills more than π/√18 of space
MAX_PACKING_FRACTION = math.pi / math.sqrt(18.0)
#: reasons an attempt fails
FAILURE_REASONS = ("placement", "lattice", "distance", "volume")

Seed = Union[None, int, Sequence[int]]


@dataclass
class GenerationStats:
    """What generating cost: attempts and failures per space group and per reason."""

    attempts: int = 0
    successes: int = 0
    missing: int = 0  # structures not made after max_attempts tries each
    gave_up: bool = False  # stopped after give_up_after structures in a row were missing
    attempts_per_group: Counter = field(default_factory=Counter)
    failures_per_group: Counter = field(default_factory=Counter)
    failure_reasons: Counter = field(default_factory=Counter)

    @property
    def failures(self) -> int:
        return self.attempts - self.successes


@dataclass
class GenerationResult:
    """``structures`` (ase.Atoms, ≤ requested) and the statistics of making them."""

    structures: list
    requested: int
    stats: GenerationStats

    @property
    def complete(self) -> bool:
        return len(self.structures) == self.requested

    @property
    def attempts(self) -> int:
        return self.stats.attempts

    @property
    def attempts_per_group(self) -> Counter:
        return self.stats.attempts_per_group

    @property
    def failures_per_group(self) -> Counter:
        return self.stats.failures_per_group

    @property
    def message(self) -> str:
        s = self.stats
        text = (f"{len(self.structures)} of {self.requested} structures in {s.attempts} attempts "
                f"({s.failures} failed: {dict(s.failure_reasons) or 'none'})")
        if not self.complete:
            text += (f"; {self.requested - len(self.structures)} missing: "
                     f"{s.missing} structure(s) took more than max_attempts tries"
                     + (" and generation gave up" if s.gave_up else ""))
        return text


class StructureGenerator:
    """Random symmetric structures of one cell composition; inputs checked before any work.

    Args:
        composition_counts: {symbol: atoms in the primitive cell}, e.g. {'Mg': 1, 'Ca': 1, 'H': 12}.
        min_distances: d_min in Å for every pair of the elements present; keys 'A-B' strings,
            (A, B) tuples (either order) or frozensets. Default: 0.8 × sum of covalent radii.
        atomic_volumes: {symbol: Å³ per atom}. Default: :func:`acnn_mpi.elements.default_atomic_volume`.
        volume_factor_range: (low, high) for the uniform random factor on Σ n_i V_i.
        space_groups: allowed space-group numbers (default all 230), intersected with ``symmetry``
            ('any', 'noncentrosymmetric', 'polar') and with the groups compatible with the counts.
        seed: int, sequence of ints or None (fresh entropy).
        max_attempts: tries per structure before that structure counts as missing.
        give_up_after: stop after this many structures in a row were missing.

    Raises:
        UserError: unknown elements, non-positive counts, missing or non-positive distances or
            volumes, a bad factor range, no compatible space group, or a minimum-distance matrix
            that cannot pack the atoms into the largest allowed volume.
    """

    def __init__(self, composition_counts: Mapping[str, int], *,
                 min_distances: Optional[Mapping] = None,
                 atomic_volumes: Optional[Mapping[str, float]] = None,
                 volume_factor_range: Sequence[float] = (0.8, 1.2),
                 space_groups: Optional[Sequence[int]] = None,
                 symmetry: str = "any",
                 seed: Seed = None,
                 max_attempts: int = 50,
                 give_up_after: int = 3):
        self.species, self.counts = _check_counts(composition_counts)
        self.min_distances = _pair_table(min_distances, self.species)
        self.atomic_volumes = _volumes(atomic_volumes, self.species)
        low, high = (float(x) for x in volume_factor_range)
        if not 0 < low <= high:
            raise UserError(f"generation.volume_factor = [{low}, {high}]: need 0 < low ≤ high")
        self.volume_factor_range = (low, high)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise UserError(f"generation.max_attempts = {max_attempts!r}: must be a positive integer")
        self.max_attempts = max_attempts
        self.give_up_after = max(1, int(give_up_after))
        self.base_volume = sum(n * self.atomic_volumes[s] for s, n in zip(self.species, self.counts))
        self._check_packing()
        allowed = allowed_space_groups(space_groups, symmetry)
        self.space_groups = compatible_space_groups(self.counts, allowed, primitive=True)
        if not self.space_groups:
            raise UserError(f"generation: no allowed space group (symmetry {symmetry!r}, space_groups "
                            f"{space_groups or 'all'}) fits a cell of {self.formula}; allow more groups "
                            "or use more formula units")
        self._seeds = np.random.SeedSequence(seed if seed is None or isinstance(seed, int) else list(seed))
        self._dmin_matrix = np.array([[self.min_distances[(a, b)] for b in self.species]
                                      for a in self.species])
        self.stats = GenerationStats()
        self._missing_in_row = 0

    @property
    def formula(self) -> str:
        return "".join(s if n == 1 else f"{s}{n}" for s, n in zip(self.species, self.counts))

    # -- one structure ------------------------------------------------------------------------------

    def next_structure(self):
        """The next structure (ase.Atoms), or None when ``max_attempts`` tries all failed."""
        rng = np.random.default_rng(self._seeds.spawn(1)[0])
        for _ in range(self.max_attempts):
            atoms = self._attempt(rng)
            if atoms is not None:
                self._missing_in_row = 0
                return atoms
        self.stats.missing += 1
        self._missing_in_row += 1
        log.warning("generation: no %s structure after %d attempts (%s)", self.formula,
                    self.max_attempts, dict(self.stats.failure_reasons))
        return None

    def _attempt(self, rng: np.random.Generator):
        group = int(rng.choice(self.space_groups))
        factor = float(rng.uniform(*self.volume_factor_range))
        self.stats.attempts += 1
        self.stats.attempts_per_group[group] += 1
        atoms, reason = self._build(group, factor * self.base_volume, rng)
        if atoms is not None:
            reason = self.violation(atoms)
        if reason is not None:
            self.stats.failures_per_group[group] += 1
            self.stats.failure_reasons[reason] += 1
            return None
        self.stats.successes += 1
        atoms.info.update(generated_space_group=group,
                          volume_factor=round(atoms.get_volume() / self.base_volume, 6))
        return atoms

    def _build(self, group: int, volume: float, rng: np.random.Generator):
        """The primitive cell of volume ``volume``: built in the conventional cell (c × the atoms
        and the volume for a group with c lattice points per cell), then reduced."""
        from ase import Atoms

        c = centring_multiplicity(group)
        built = place_atoms(group, [c * n for n in self.counts], self._dmin_matrix, c * volume, rng)
        if isinstance(built, str):
            return None, built
        cell, fractional, species = to_primitive(group, *built)
        order = np.argsort(species, kind="stable")
        atoms = Atoms([self.species[i] for i in species[order]], scaled_positions=fractional[order],
                      cell=cell, pbc=True)
        return atoms, None

    # -- checks -------------------------------------------------------------------------------------

    def violation(self, atoms) -> Optional[str]:
        """None if ``atoms`` respects every pair's minimum distance (periodically) and the volume
        window; else 'distance' or 'volume'."""
        ratio = atoms.get_volume() / self.base_volume
        low, high = self.volume_factor_range
        if not low * (1 - 1e-9) <= ratio <= high * (1 + 1e-9):
            return "volume"
        return "distance" if shortest_violation(atoms, self.min_distances) is not None else None

    def _check_packing(self) -> None:
        """UserError when spheres of radius r_i = min_j d_ij/2 cannot fit the largest volume."""
        radius = {a: min(self.min_distances[(a, b)] for b in self.species) / 2 for a in self.species}
        spheres = sum(n * 4 / 3 * math.pi * radius[s] ** 3 for s, n in zip(self.species, self.counts))
        largest = self.volume_factor_range[1] * self.base_volume
        if spheres > MAX_PACKING_FRACTION * largest:
            raise UserError(
                f"generation: {self.formula} cannot be packed: spheres of half the minimum distances "
                f"fill {spheres:.1f} Å³ but the largest cell is {largest:.1f} Å³ "
                f"(volume_factor {self.volume_factor_range[1]} × Σ atomic_volumes) and no packing "
                f"exceeds {MAX_PACKING_FRACTION:.3f}; lower generation.min_distances or raise "
                "generation.atomic_volumes / volume_factor")

    # -- streams ------------------------------------------------------------------------------------

    def stream(self, n: Optional[int] = None) -> Iterator:
        """Yield up to ``n`` structures (forever when None); missing ones are counted in ``stats``.
        Stops early, with ``stats.gave_up``, after ``give_up_after`` missing structures in a row."""
        for _ in (range(n) if n is not None else itertools.count()):
            atoms = self.next_structure()
            if atoms is not None:
                yield atoms
            elif self._missing_in_row >= self.give_up_after:
                self.stats.gave_up = True
                log.warning("generation: gave up on %s after %d structures in a row failed",
                            self.formula, self._missing_in_row)
                return


def generate_structures(composition_counts: Mapping[str, int], n: int, **settings) -> GenerationResult:
    """``n`` random symmetric structures of one cell composition; see :class:`StructureGenerator`
    for the keyword arguments (min_distances, atomic_volumes, volume_factor_range, space_groups,
    symmetry, seed, max_attempts, give_up_after). The result says when fewer than ``n`` were made."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise UserError(f"generation: number of structures = {n!r} must be a non-negative integer")
    generator = StructureGenerator(composition_counts, **settings)
    structures = list(generator.stream(n))
    result = GenerationResult(structures=structures, requested=n, stats=generator.stats)
    if not result.complete:
        log.warning("generation: %s: %s", generator.formula, result.message)
    return result


def iter_structures(composition_counts: Mapping[str, int], n: Optional[int] = None, *,
                    stats: Optional[GenerationStats] = None, **settings) -> Iterator:
    """A generator of random structures (up to ``n``, or until the caller stops), for worker ranks
    that generate next to relaxation. Inputs are checked when this is called, before the first
    ``next()``. Pass ``stats`` to collect attempts and failures (it is updated in place)."""
    generator = StructureGenerator(composition_counts, **settings)
    if stats is not None:
        generator.stats = stats
    return generator.stream(n)


def settings_from_config(config, seed: Seed = None) -> dict:
    """Keyword arguments for :class:`StructureGenerator` from a campaign configuration (its
    ``generation`` section; defaults for distances and volumes resolved by the config)."""
    settings = config.generation
    return dict(min_distances=config.min_distance_table(), atomic_volumes=config.atomic_volume_table(),
                volume_factor_range=tuple(settings.volume_factor), space_groups=settings.space_groups,
                symmetry=settings.symmetry, max_attempts=settings.max_attempts,
                seed=config.seed if seed is None else seed)


def shortest_violation(atoms, min_distances: Mapping[tuple[str, str], float]):
    """(i, j, distance, minimum) of the worst pair closer than its minimum distance, or None.

    Periodic, all pairs including an atom and its own images; ``min_distances`` keyed by (A, B)
    tuples in both orders (as :func:`normalize_min_distances` returns).
    """
    from vesin import NeighborList

    symbols = atoms.get_chemical_symbols()
    cutoff = max(min_distances[(a, b)] for a in set(symbols) for b in set(symbols))
    calculator = NeighborList(cutoff=cutoff, full_list=False, n_threads=1)
    i, j, d = calculator.compute(points=atoms.positions, box=atoms.cell.array,
                                 periodic=True, quantities="ijd")
    if len(d) == 0:
        return None
    minimum = np.array([min_distances[(symbols[a], symbols[b])] for a, b in zip(i, j)])
    excess = minimum - d
    worst = int(np.argmax(excess))
    if excess[worst] <= 1e-9:
        return None
    return int(i[worst]), int(j[worst]), float(d[worst]), float(minimum[worst])


# -- inputs -------------------------------------------------------------------------------------------

def _check_counts(composition_counts: Mapping[str, int]) -> tuple[list[str], list[int]]:
    if not composition_counts:
        raise UserError("generation: empty composition: give {symbol: atoms in the cell}")
    species = validate_symbols(list(composition_counts), "generation: composition")
    counts = []
    for symbol in species:
        n = composition_counts[symbol]
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise UserError(f"generation: {symbol} count {n!r} must be a positive integer")
        counts.append(int(n))
    return species, counts


def normalize_min_distances(min_distances: Optional[Mapping], species: Sequence[str]) -> dict:
    """{(A, B): Å} over every ordered pair of ``species`` from any accepted key form."""
    return _pair_table(min_distances, list(species))


def _pair_table(min_distances, species: list[str]) -> dict[tuple[str, str], float]:
    table: dict[tuple[str, str], float] = {}
    for key, value in (min_distances or {}).items():
        if isinstance(key, str):
            pair = tuple(key.split("-"))
        else:
            pair = tuple(key)
            if len(pair) == 1:  # frozenset({'H'}) is the H-H pair
                pair = pair * 2
        if len(pair) != 2 or not all(isinstance(s, str) for s in pair):
            raise UserError(f"generation.min_distances: key {key!r} must name a pair such as 'Mg-H'")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise UserError(f"generation.min_distances.{'-'.join(pair)} = {value!r}: give Å") from None
        if not value > 0:
            raise UserError(f"generation.min_distances.{'-'.join(pair)} = {value} Å must be positive")
        a, b = pair
        table[(a, b)] = table[(b, a)] = value
    if min_distances is None:
        for a, b in itertools.combinations_with_replacement(species, 2):
            table[(a, b)] = table[(b, a)] = default_min_distance(a, b)
    missing = [f"{a}-{b}" for a, b in itertools.combinations_with_replacement(species, 2)
               if (a, b) not in table]
    if missing:
        raise UserError(f"generation.min_distances has no value for {', '.join(missing)}")
    return {(a, b): table[(a, b)] for a in species for b in species}


def _volumes(atomic_volumes, species: list[str]) -> dict[str, float]:
    out = {}
    for symbol in species:
        if atomic_volumes is None:
            out[symbol] = default_atomic_volume(symbol)
            continue
        if symbol not in atomic_volumes:
            raise UserError(f"generation.atomic_volumes has no value for {symbol}")
        value = float(atomic_volumes[symbol])
        if not value > 0:
            raise UserError(f"generation.atomic_volumes.{symbol} = {value} Å³ must be positive")
        out[symbol] = value
    return out
