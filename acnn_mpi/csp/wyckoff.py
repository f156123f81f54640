"""Atoms on Wyckoff positions of a random lattice: the inner loop of random structure generation.

For one space group (pyxtal's tables, conventional standard setting) and a cell volume:

1. a random lattice of the group's crystal family at that volume (pyxtal's ``generate_cellpara``),
   with no lattice vector shorter than the largest like-pair minimum distance;
2. species by species, larger atoms first, Wyckoff positions drawn one at a time among those that
   leave a remainder the group can still hold (half the time the largest such multiplicity, as
   pyxtal does; a position without free parameters is used at most once in the cell);
3. each drawn position placed at the first of ``site_tries`` random points (one for a fixed
   position) whose orbit, the images of the point under the position's coordinate triplets, keeps
   every new atom at least d_min(A, B) from every atom already placed, from its own orbit and from
   all periodic images; a position that cannot be placed is excluded and another one drawn.

The candidate points of a position are tested together in numpy, so failed attempts are cheap
(milliseconds for small cells) and simply repeated with a new group, volume and lattice. pyxtal's own
``random_crystal`` places point by point in Python and rebuilds a ``Tol_matrix`` inside its merge
step: seconds to minutes per dense high-pressure hydride cell (docs/compositions.md compares them).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np

from .spacegroups import PRIMITIVE_BASIS, centring, centring_multiplicity, pyxtal_group


@dataclass(frozen=True)
class WyckoffPosition:
    multiplicity: int
    letter: str
    free: bool  # has free parameters (can hold several orbits)
    rotations: np.ndarray  # (m, 3, 3) on fractional coordinates
    translations: np.ndarray  # (m, 3)

    def orbits(self, points: np.ndarray) -> np.ndarray:
        """(T, m, 3) fractional coordinates in [0, 1) of the orbits generated from ``points`` (T, 3)."""
        coords = np.einsum("mij,tj->tmi", self.rotations, points) + self.translations
        return coords - np.floor(coords)


@dataclass(frozen=True)
class GroupTable:
    number: int
    lattice_type: str
    positions: tuple[WyckoffPosition, ...]  # largest multiplicity first (pyxtal's order)
    free_multiplicities: tuple[int, ...]
    bounded: tuple[tuple[int, int], ...]  # (multiplicity, fixed sites) of classes without free sites


@lru_cache(maxsize=None)
def group_table(number: int) -> GroupTable:
    """Wyckoff positions of space group ``number`` as arrays (cached per process)."""
    group = pyxtal_group(number)
    positions = []
    for wp in group:
        affine = np.array([op.affine_matrix for op in wp.ops], dtype=float)
        positions.append(WyckoffPosition(int(wp.multiplicity), str(wp.letter), bool(wp.get_dof() > 0),
                                         affine[:, :3, :3].copy(), affine[:, :3, 3].copy()))
    free = sorted({p.multiplicity for p in positions if p.free})
    fixed: dict[int, int] = {}
    for p in positions:
        if not p.free and p.multiplicity not in free:
            fixed[p.multiplicity] = fixed.get(p.multiplicity, 0) + 1
    return GroupTable(number, str(group.lattice_type), tuple(positions), tuple(free),
                      tuple(sorted(fixed.items())))


@lru_cache(maxsize=100_000)
def _fillable(number: int, n: int, available: tuple[int, ...]) -> bool:
    """Can ``n`` atoms fill free positions plus at most ``available`` fixed sites per bounded class?"""
    table = group_table(number)
    if n == 0:
        return True
    choices = [range(min(k, n // m) + 1) for (m, _), k in zip(table.bounded, available)]
    for use in itertools.product(*choices):
        left = n - sum(u * m for u, (m, _) in zip(use, table.bounded))
        if left >= 0 and _free_fill(table.free_multiplicities, left):
            return True
    return False


@lru_cache(maxsize=100_000)
def _free_fill(free: tuple[int, ...], n: int) -> bool:
    if n == 0:
        return True
    return any(m <= n and _free_fill(free, n - m) for m in free)


class SiteChooser:
    """Draws Wyckoff positions one at a time so that every species can still be completed.

    A position is offered only when the atoms left after it can still be filled (free positions
    any number of times, each fixed position at most once in the cell). ``exclude`` removes a
    position that failed to place for the current species, so the next draw tries another one.
    """

    def __init__(self, table: GroupTable):
        self.table = table
        self.used_fixed: set[int] = set()
        self.available = [k for _, k in table.bounded]
        self.bounded_index = {m: i for i, (m, _) in enumerate(table.bounded)}

    def draw(self, left: int, excluded: set[int], rng: np.random.Generator) -> Optional[int]:
        """Index of a random position for ``left`` more atoms of one species, or None."""
        table = self.table
        lost = [0] * len(self.available)  # fixed sites this species has failed on
        for index in excluded:
            wp = table.positions[index]
            if not wp.free and wp.multiplicity in self.bounded_index and index not in self.used_fixed:
                lost[self.bounded_index[wp.multiplicity]] += 1
        base = [k - x for k, x in zip(self.available, lost)]
        options = []
        for index, wp in enumerate(table.positions):
            if wp.multiplicity > left or index in excluded or (not wp.free and index in self.used_fixed):
                continue
            after = list(base)
            if not wp.free and wp.multiplicity in self.bounded_index:
                after[self.bounded_index[wp.multiplicity]] -= 1
            if _fillable(table.number, left - wp.multiplicity, tuple(after)):
                options.append(index)
        if not options:
            return None
        if rng.random() < 0.5:  # prefer the largest multiplicity, as pyxtal does half the time
            largest = max(table.positions[i].multiplicity for i in options)
            options = [i for i in options if table.positions[i].multiplicity == largest]
        return options[int(rng.integers(len(options)))]

    def take(self, index: int) -> None:
        wp = self.table.positions[index]
        if not wp.free:
            self.used_fixed.add(index)
            if wp.multiplicity in self.bounded_index:
                self.available[self.bounded_index[wp.multiplicity]] -= 1


def random_lattice(lattice_type: str, volume: float, min_length: float,
                   rng: np.random.Generator) -> Optional[np.ndarray]:
    """(3, 3) lattice vectors (rows, Å) of the crystal family at ``volume`` Å³, or None."""
    from pyxtal.lattice import generate_cellpara, para2matrix
    from pyxtal.msg import VolumeError

    try:
        para = generate_cellpara(lattice_type, volume, minvec=min(1.2, min_length), min_l=min_length,
                                 maxattempts=20, random_state=rng)
    except VolumeError:
        return None
    return np.asarray(para2matrix(para), dtype=float)


class Placer:
    """Adds orbits to a cell while keeping every pair at least its minimum distance apart."""

    def __init__(self, cell: np.ndarray, min_distances: np.ndarray, capacity: int):
        """``cell`` (3, 3) rows in Å; ``min_distances`` (S, S) Å between species indices."""
        self.cell = cell
        self.dmin = min_distances
        heights = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
        reach = np.ceil(min_distances.max() / heights + 0.5).astype(int)
        shifts = np.array(list(itertools.product(*(range(-r, r + 1) for r in reach))), dtype=float)
        self.shifts = shifts @ cell  # (K, 3) Cartesian image offsets
        self.shift_squared = np.einsum("kx,kx->k", self.shifts, self.shifts)
        self.shortest = float(np.sqrt(self.shift_squared[self.shift_squared > 0].min()))  # own image, Å
        self.dmin_squared = min_distances ** 2
        self.frac = np.empty((capacity, 3))
        self.species = np.empty(capacity, dtype=int)
        self.n = 0

    def _clear(self, delta: np.ndarray, limit: np.ndarray) -> np.ndarray:
        """For fractional differences ``delta`` (t, a, b, 3) and squared minima ``limit`` (b,) or
        (): (t,) True where every pair's shortest periodic distance is at least its minimum.

        The wrapped difference alone gives an upper bound on the shortest distance, which rejects
        most candidates; only the survivors pay for the search over the K image offsets.
        """
        delta = delta - np.round(delta)
        cart = delta @ self.cell
        squared = np.einsum("...x,...x->...", cart, cart)
        ok = (squared >= limit).all(axis=(1, 2))
        if ok.any():
            keep = np.flatnonzero(ok)
            cart, squared = cart[keep], squared[keep]
            # |c + s|² = |c|² + 2 c·s + |s|², one matrix product over the image offsets
            images = (squared[..., None] + 2.0 * (cart @ self.shifts.T) + self.shift_squared).min(axis=-1)
            ok[keep] = (images >= limit).all(axis=(1, 2))
        return ok

    def try_add(self, candidates: np.ndarray, species: int) -> bool:
        """Add the first of the orbits ``candidates`` (T, m, 3) fractional of ``species`` that clears
        every minimum distance (to the atoms placed, within itself, to its own images)."""
        if self.shortest < self.dmin[species, species]:
            return False
        limit = self.dmin_squared[species]
        total, m, _ = candidates.shape
        work = m * max(self.n, m) * len(self.shifts)
        chunk = int(min(total, max(1, 400_000 // work)))
        for start in range(0, total, chunk):
            batch = candidates[start:start + chunk]
            ok = np.ones(len(batch), dtype=bool)
            if self.n:  # against the atoms placed: (t, m, N) pairs
                ok = self._clear(self.frac[None, None, :self.n] - batch[:, :, None, :],
                                 limit[self.species[:self.n]])
            if m > 1 and ok.any():  # within the orbit: (t, m, m) pairs, i < j
                keep = np.flatnonzero(ok)
                i, j = np.triu_indices(m, k=1)
                inner = batch[keep]
                delta = (inner[:, j] - inner[:, i])[:, :, None, :]  # (t, pairs, 1, 3)
                ok[keep] = self._clear(delta, limit[species])
            if ok.any():
                coords = batch[int(np.argmax(ok))]
                self.frac[self.n:self.n + m] = coords
                self.species[self.n:self.n + m] = species
                self.n += m
                return True
        return False


def place_atoms(number: int, counts: Sequence[int], min_distances: np.ndarray, volume: float,
                rng: np.random.Generator, *, lattice_tries: int = 4, site_tries: int = 20):
    """Try to build a cell; returns (cell (3, 3), fractional (N, 3), species index (N,)) or a
    failure reason: 'lattice' (no lattice of this family at this volume) or 'placement'."""
    table = group_table(number)
    like = float(np.max(np.diag(min_distances)))
    order = np.argsort(-np.diag(min_distances), kind="stable")  # larger atoms first
    reason = "lattice"
    for _ in range(lattice_tries):
        cell = random_lattice(table.lattice_type, volume, like, rng)
        if cell is None:
            continue
        reason = "placement"
        placer = Placer(cell, min_distances, sum(counts))
        chooser = SiteChooser(table)
        if all(_place_species(placer, chooser, int(s), counts[s], rng, site_tries) for s in order):
            return cell, placer.frac[:placer.n].copy(), placer.species[:placer.n].copy()
    return reason


def _place_species(placer: Placer, chooser: SiteChooser, species: int, count: int, rng,
                   tries: int) -> bool:
    """Put ``count`` atoms of ``species`` on Wyckoff positions; a position that cannot be placed
    (fixed: its one point; free: ``tries`` random points) is excluded and another drawn."""
    left, excluded = count, set()
    while left > 0:
        index = chooser.draw(left, excluded, rng)
        if index is None:
            return False
        wp = chooser.table.positions[index]
        if placer.try_add(wp.orbits(rng.random((tries if wp.free else 1, 3))), species):
            chooser.take(index)
            left -= wp.multiplicity
        else:
            excluded.add(index)
    return True


def to_primitive(number: int, cell: np.ndarray, fractional: np.ndarray, species: np.ndarray,
                 tolerance: float = 1e-6):
    """The primitive cell of a conventional cell of group ``number`` (standard setting).

    Lattice rows a_p = M a_conv (``PRIMITIVE_BASIS`` of the centring); fractional coordinates
    x_p = x_conv M⁻¹ wrapped into [0, 1), and the centring copies of each atom, which land on the
    same primitive point, kept once. Returns (cell (3, 3) Å, fractional (N/c, 3), species (N/c,)).
    Raises ValueError when the atoms are not invariant under the centring.
    """
    letter = centring(number)
    if letter == "P":
        return cell, fractional, species
    basis = np.array(PRIMITIVE_BASIS[letter], dtype=float)
    frac = fractional @ np.linalg.inv(basis)
    frac -= np.floor(frac)
    # the same primitive point: differences within tolerance of an integer vector
    delta = frac[:, None, :] - frac[None, :, :]
    same = np.abs(delta - np.round(delta)).max(axis=-1) < tolerance
    first = np.argmax(same, axis=1)  # lowest index of each atom's class
    keep = np.flatnonzero(first == np.arange(len(frac)))
    expected = len(frac) // centring_multiplicity(number)
    if len(keep) != expected or (species[first] != species).any():
        raise ValueError(f"group {number}: {len(frac)} atoms do not reduce to {expected} primitive ones")
    wrapped = frac[keep]
    wrapped[wrapped > 1 - tolerance] = 0.0
    return basis @ cell, wrapped, species[keep]
