"""The sampling plan: budget per composition, chunks that mix compositions, N₀ coverage (Mg-Ca-H)."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from acnn_mpi.campaign.plan import ITERATION_STRIDE, plan_chunks, search_cells
from acnn_mpi.config import load_config
from acnn_mpi.csp.compositions import compositions_from_config

MGCAH = Path(__file__).resolve().parents[2] / "inputs" / "mgcah_300gpa.yaml"


@pytest.fixture(scope="module")
def cells():
    return search_cells(compositions_from_config(load_config(MGCAH)))


def elemental(cells):
    """The smallest cell of each pure element (as the controller passes them)."""
    smallest = {}
    for cell in cells:
        if len(cell.counts) == 1 and cell.units < getattr(smallest.get(cell.formula), "units", 1e9):
            smallest[cell.formula] = cell
    return list(smallest.values())


def per_structure(chunks):
    return [cell for chunk in chunks for cell in chunk.cells]


def test_budget_is_split_evenly_over_compositions_then_cell_sizes(cells):
    formulas = {c.formula for c in cells}
    assert len(formulas) == 626 and len(cells) == 2819
    n = 40_000
    chunks = plan_chunks(cells, 3, n, 16, seed=2025, leading=elemental(cells))
    structures = per_structure(chunks)
    assert len(structures) == n == sum(c.size for c in chunks)
    share = Counter(c.formula for c in structures)
    assert set(share) == formulas
    uniform = n / len(formulas)  # 63.9
    assert max(share.values()) - min(share.values()) <= 1  # within one structure of uniform
    assert max(share.values()) <= np.ceil(uniform) and min(share.values()) >= np.floor(uniform)
    # pure H (80 cell sizes) gets no more than MgCa3H23 (the paper's stable phase)
    assert share["H"] <= share["MgCa3H23"] + 1
    pure = sum(share[e] for e in ("Mg", "Ca", "H")) / n
    assert pure < 0.006  # 3 of 626 compositions: 0.48 %, was 8.5-9.9 %
    # within a composition, its cell sizes by the same rule
    sizes = Counter((c.formula, c.units) for c in structures if c.formula == "H")
    assert max(sizes.values()) - min(sizes.values()) <= 1


def test_every_prefix_is_spread_over_compositions(cells):
    """A CSP stage stopped early (B_max) has still sampled every composition about equally."""
    chunks = plan_chunks(cells, 1, 20_000, 16, seed=7)
    prefix = Counter(c.formula for c in per_structure(chunks[:200]))  # 3,200 structures, 5.1 each
    assert len(prefix) == 626 and max(prefix.values()) - min(prefix.values()) <= 1


def test_chunks_mix_compositions(cells):
    chunks = plan_chunks(cells, 2, 4_000, 16, seed=1)
    distinct = [len({c.formula for c in chunk.cells}) for chunk in chunks]
    assert min(distinct) >= 12 and np.mean(distinct) > 15  # of 16 (626 compositions to draw from)
    ids = [i for chunk in chunks for i in chunk.ids]
    assert ids == sorted(set(ids)) and ids[0] == 2 * ITERATION_STRIDE
    for chunk in chunks:  # members group a chunk's structures by cell, in id order
        assert [len(r) for _, _, r in chunk.groups()] == [n for _, n in chunk.members]


def test_initial_sampling_covers_as_many_compositions_as_n0(cells):
    lead = elemental(cells)
    chunks = plan_chunks(cells, 0, 500, 16, seed=2025, leading=lead)
    structures = per_structure(chunks)
    assert len(structures) == 500 and len({c.formula for c in structures}) == 500
    assert set(lead) <= set(structures)  # the smallest cell of each element is there
    assert sum(len(c.counts) == 1 for c in structures) == 3
    # N₀ above the number of compositions: all covered, each once or twice
    share = Counter(c.formula for c in per_structure(plan_chunks(cells, 0, 1000, 16, 2025, lead)))
    assert len(share) == 626 and set(share.values()) == {1, 2}


def test_same_seed_same_plan(cells):
    a = plan_chunks(cells, 4, 1000, 16, seed=3)
    b = plan_chunks(cells, 4, 1000, 16, seed=3)
    c = plan_chunks(cells, 4, 1000, 16, seed=4)
    assert a == b and per_structure(a) != per_structure(c)


def test_leading_cells_outside_the_space_are_sampled_as_compositions(cells):
    from acnn_mpi.campaign.plan import Cell

    binary = [c for c in cells if c.formula in ("MgH2", "CaH2")]
    lead = [Cell(counts=(("Mg", 1),), formula="Mg", units=1), Cell(counts=(("H", 2),), formula="H", units=2)]
    share = Counter(c.formula for c in per_structure(plan_chunks(binary, 0, 40, 16, 1, lead)))
    assert share == {"MgH2": 10, "CaH2": 10, "Mg": 10, "H": 10}
    assert Counter(c.formula for c in per_structure(plan_chunks(binary, 0, 3, 16, 1, lead)))["Mg"] == 1
