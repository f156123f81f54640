"""Which structures a campaign makes, decided from the seed alone (so a resumed run makes the same).

The search space is a list of *cells*: (composition, formula units). Every iteration's structure
budget is cut into chunks of ``chunk_size`` structures of one cell, drawn uniformly over the cells
(the paper: the sampling bias goes into which structures get labelled, not into the exploration).
A structure's id encodes its iteration, chunk and position, so ids are unique over the campaign.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: ids: iteration × ITERATION_STRIDE + chunk × chunk_size + position within the chunk
ITERATION_STRIDE = 10**10


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
    """``size`` structures of one cell; ``first_id`` is the id of its first structure."""

    iteration: int
    index: int
    cell: Cell
    size: int
    first_id: int
    seed: tuple[int, int, int]

    @property
    def ids(self) -> range:
        return range(self.first_id, self.first_id + self.size)


def search_cells(space) -> list[Cell]:
    """Every (composition, formula units) pair of a composition space, in a fixed order."""
    cells = []
    for composition in space:
        for units in composition.formula_units:
            counts = tuple((s, n * units) for s, n in composition.counts)
            cells.append(Cell(counts=counts, formula=composition.formula, units=units))
    return cells


def plan_chunks(cells: list[Cell], iteration: int, n_structures: int, chunk_size: int,
                seed: int, leading: list[Cell] = ()) -> list[Chunk]:
    """Chunks of ``chunk_size`` (the last one smaller) totalling ``n_structures`` structures.

    The first chunks fill the ``leading`` cells, one chunk each (the pure elements, which every
    hull needs); the others are drawn uniformly from ``cells``.
    """
    if not cells:
        raise ValueError("no cells to search")
    rng = np.random.default_rng([seed, iteration, 0x5EED])
    n_chunks = -(-n_structures // chunk_size)
    picks = [cells[int(p)] for p in rng.integers(0, len(cells), size=n_chunks)]
    picks[: len(leading)] = list(leading)[:n_chunks]
    chunks = []
    for c, cell in enumerate(picks):
        size = min(chunk_size, n_structures - c * chunk_size)
        chunks.append(Chunk(iteration=iteration, index=c, cell=cell, size=size,
                            first_id=iteration * ITERATION_STRIDE + c * chunk_size,
                            seed=(seed, iteration, c)))
    return chunks


def iteration_of(structure_id: int) -> int:
    return int(structure_id) // ITERATION_STRIDE
