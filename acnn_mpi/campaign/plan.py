"""Which structures a campaign makes, decided from the seed alone (so a resumed run makes the same).

The search space is a list of *cells*: (composition, formula units). An iteration's structure
budget is split over the **compositions** first, as evenly as whole structures allow (each gets
⌊n/C⌋ or ⌈n/C⌉), and each composition's share over its cell sizes the same way; so a composition
with many formula-unit choices (pure H: 1-80 atoms) gets no more effort than MgCa₃H₂₃ with two.
When the budget is smaller than the number of compositions (N₀ = 500 of Mg-Ca-H's 626), as many
compositions as there are structures get one each, the ``leading`` ones (the pure elements, the
hull's corners) first.

The structures are then put in *rounds*: round r holds the r-th structure of every composition, in
a random order per round, so any prefix of the list (a CSP stage stopped early by B_max) is still
spread evenly over the compositions; the list is cut into chunks of ``chunk_size`` that therefore
mix compositions. A structure's id encodes its iteration, chunk and position, so ids are unique
over the campaign.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

#: ids: iteration × ITERATION_STRIDE + chunk × chunk_size + position within the chunk
ITERATION_STRIDE = 10**10
#: ids of the j-th pressure of a campaign over several: + j × PRESSURE_STRIDE (so every pressure's
#: structures have their own ids in the one label store; 10⁸ structures per pressure and iteration)
PRESSURE_STRIDE = 10**8


@dataclass(frozen=True)
class Cell:
    """A cell to fill: {symbol: atoms} and a label such as 'Cu3Pt (x2)'."""

    counts: tuple[tuple[str, int], ...]
    formula: str
    units: int

    @property
    def n_atoms(self) -> int:
        return sum(n for _, n in self.counts)

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)


@dataclass(frozen=True)
class Chunk:
    """``size`` structures of one or several cells; ``first_id`` is the id of its first structure.

    ``members`` lists (cell, structures) in the order of the ids: the first ``members[0][1]`` ids
    are structures of ``members[0][0]``, and so on.
    """

    iteration: int
    index: int
    members: tuple[tuple[Cell, int], ...]
    size: int
    first_id: int
    seed: tuple[int, ...]   # (campaign seed, iteration, chunk[, pressure index])

    @property
    def ids(self) -> range:
        return range(self.first_id, self.first_id + self.size)

    @property
    def cells(self) -> list[Cell]:
        """The cell of each structure, in id order (length ``size``)."""
        return [cell for cell, n in self.members for _ in range(n)]

    @property
    def formula(self) -> str:
        """The compositions of the chunk, e.g. 'MgH2 CaH6 Mg' (for logs and chunk files)."""
        return " ".join(dict.fromkeys(cell.formula for cell, _ in self.members))

    def groups(self) -> Iterator[tuple[int, Cell, range]]:
        """(member index, cell, ids of its structures) for each member."""
        start = self.first_id
        for m, (cell, n) in enumerate(self.members):
            yield m, cell, range(start, start + n)
            start += n


def search_cells(space) -> list[Cell]:
    """Every (composition, formula units) pair of a composition space, in a fixed order."""
    cells = []
    for composition in space:
        for units in composition.formula_units:
            counts = tuple((s, n * units) for s, n in composition.counts)
            cells.append(Cell(counts=counts, formula=composition.formula, units=units))
    return cells


def composition_shares(n_compositions: int, n_structures: int, rng: np.random.Generator,
                       leading: Sequence[int] = ()) -> np.ndarray:
    """(C,) structures per composition: ⌊n/C⌋ each and one more for n mod C of them, drawn at
    random after the ``leading`` compositions (so with n < C those are sure to be covered)."""
    shares = np.full(n_compositions, n_structures // n_compositions, dtype=np.int64)
    extra = n_structures % n_compositions
    first = list(dict.fromkeys(int(c) for c in leading))[:extra]
    rest = rng.permutation(np.setdiff1d(np.arange(n_compositions), first))
    shares[np.concatenate([first, rest[:extra - len(first)]]).astype(np.int64)] += 1
    return shares


def plan_chunks(cells: list[Cell], iteration: int, n_structures: int, chunk_size: int,
                seed: int, leading: Sequence[Cell] = ()) -> list[Chunk]:
    """Chunks of ``chunk_size`` (the last one smaller) totalling ``n_structures`` structures,
    spread evenly over the compositions of ``cells`` and then over each one's cell sizes.

    ``leading`` cells (the smallest cell of each pure element) are sure to be sampled when the
    budget cannot cover every composition, and come first in their composition's cycle of sizes;
    one whose composition is not among ``cells`` (an element the space leaves out) is sampled as
    one more composition.
    """
    if not cells:
        raise ValueError("no cells to search")
    rng = np.random.default_rng([seed, iteration, 0x5EED])
    first = {cell.formula: cell for cell in leading}
    formulas = list(dict.fromkeys([cell.formula for cell in cells] + list(first)))
    sizes = {f: [c for c in cells if c.formula == f] or [first[f]] for f in formulas}
    shares = composition_shares(len(formulas), n_structures, rng, [formulas.index(f) for f in first])
    cell_of, rounds = [], []
    for f, share in zip(formulas, shares):
        cycle = [sizes[f][i] for i in rng.permutation(len(sizes[f]))]
        if f in first and first[f] in cycle:  # the leading cell first
            cycle.remove(first[f])
            cycle.insert(0, first[f])
        cell_of.extend(cycle[r % len(cycle)] for r in range(share))
        rounds.append(np.arange(share))
    rounds = np.concatenate(rounds) if rounds else np.zeros(0)
    order = np.lexsort((rng.random(len(rounds)), rounds))  # by round, random within a round
    return _cut(iteration, [cell_of[i] for i in order], chunk_size, seed)


def _cut(iteration: int, cell_of: list[Cell], chunk_size: int, seed: int) -> list[Chunk]:
    """Chunks of consecutive structures; inside a chunk the structures of one cell are grouped."""
    chunks = []
    for c, start in enumerate(range(0, len(cell_of), chunk_size)):
        part = cell_of[start:start + chunk_size]
        members = tuple((cell, part.count(cell)) for cell in dict.fromkeys(part))
        chunks.append(Chunk(iteration=iteration, index=c, members=members, size=len(part),
                            first_id=iteration * ITERATION_STRIDE + c * chunk_size,
                            seed=(seed, iteration, c)))
    return chunks


def at_pressure_index(chunks: list[Chunk], j: int) -> list[Chunk]:
    """The chunks of the j-th pressure (0: unchanged): ids shifted by j × PRESSURE_STRIDE and the
    generator seeds extended by j, so each pressure relaxes structures of its own."""
    if j == 0:
        return chunks
    from dataclasses import replace

    return [replace(c, first_id=c.first_id + j * PRESSURE_STRIDE, seed=(*c.seed, j)) for c in chunks]


def iteration_of(structure_id: int) -> int:
    return int(structure_id) // ITERATION_STRIDE
