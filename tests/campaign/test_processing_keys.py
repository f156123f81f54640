"""The root's composition keys and dedup groups (integer codes, no object-array sorts) agree with
the plain definitions: the reduced formula of every row, and one group per composition and kind."""

from types import SimpleNamespace

import numpy as np

from acnn_mpi.campaign.processing import composition_keys, dedup_parts
from acnn_mpi.csp.hull import reduced_formula

ELEMENTS = ["Mg", "Ca", "H"]


class Results(SimpleNamespace):
    def __len__(self):
        return len(self.counts)


def rows(n=3000, high=7, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, high, (n, 3))
    counts[counts.sum(axis=1) == 0] = [0, 0, 2]
    return Results(counts=counts, physical=rng.random(n) > 0.1, converged=rng.random(n) > 0.2), rng


def test_composition_keys_are_the_reduced_formulas():
    results, _ = rows()
    keys = composition_keys(results, ELEMENTS)
    assert keys.tolist() == [reduced_formula(row, ELEMENTS) for row in results.counts]
    # MgH2 in cells of 1 and 2 formula units is one key
    cells = Results(counts=np.array([[1, 0, 2], [2, 0, 4], [0, 3, 0]]))
    assert composition_keys(cells, ELEMENTS).tolist() == ["MgH2", "MgH2", "Ca"]


def test_dedup_parts_split_by_composition_and_by_good_or_not():
    results, rng = rows(seed=1)
    keys = composition_keys(results, ELEMENTS)
    h = rng.random(len(keys))
    h[::37] = np.nan
    groups = dedup_parts(results, keys, h)
    good = results.physical & results.converged & np.isfinite(h)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(keys)))
    assert [len(g) for g in groups] == sorted((len(g) for g in groups), reverse=True)
    expected = {}
    for r in range(len(keys)):
        expected.setdefault((keys[r], bool(good[r])), []).append(r)
    assert sorted(g.tolist() for g in groups) == sorted(expected.values())
