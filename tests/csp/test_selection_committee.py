"""Selection with a committee: within each composition's L_max, after its lowest-enthalpy
structure, the structures the committee disagrees on come first; the budget does not change."""

import numpy as np

from acnn_mpi.csp.selection import select_candidates


def two_compositions():
    """A: 4 structures 0, 10, 20, 30 meV/atom above its best; B (E_hull 5 meV/atom): 3 structures."""
    ids = np.array([10, 11, 12, 13, 20, 21, 22])
    keys = np.array(["A"] * 4 + ["B"] * 3)
    h = np.array([-1.0, -0.99, -0.98, -0.97, -0.5, -0.49, -0.48])
    e_hull = np.array([0.0, 0.01, 0.02, 0.03, 0.005, 0.015, 0.025])
    return ids, keys, h, e_hull


def pick(spread=None, threshold=np.inf, l_max=2):
    ids, keys, h, e = two_compositions()
    return select_candidates(ids, keys, h, e, c_max=2, l_max=l_max, spread=spread,
                             spread_threshold=threshold)


def test_high_spread_structures_are_preferred_within_the_budget():
    # spreads (eV/atom): A's third and fourth structures and B's last are uncertain
    spread = np.array([0.001, 0.002, 0.030, 0.050, 0.0, 0.004, 0.020])
    without = pick()
    assert [c.id for c in without] == [10, 11, 20, 21]          # by enthalpy
    chosen = pick(spread, threshold=0.010)
    assert [c.id for c in chosen] == [10, 12, 20, 22]           # best, then the uncertain by enthalpy
    assert len(chosen) == len(without)                          # the same C_max × L_max budget
    assert [c.spread for c in chosen] == [0.001, 0.030, 0.0, 0.020]
    # L_max 3: both uncertain structures of A before the certain one
    assert [c.id for c in pick(spread, threshold=0.010, l_max=3)] == [10, 12, 13, 20, 22, 21]


def test_no_uncertainty_or_no_evaluation_selects_as_without_committee():
    ids = [c.id for c in pick()]
    spread = np.array([0.001, 0.002, 0.030, 0.050, 0.0, 0.004, 0.020])
    assert [c.id for c in pick(spread, threshold=0.1)] == ids    # nothing above the threshold
    assert [c.id for c in pick(np.full(7, np.nan), threshold=0.0)] == ids   # not evaluated
    # the lowest-enthalpy structure stays even when it is the only certain one
    assert [c.id for c in pick(np.array([0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]), threshold=0.01)][0] == 10
    assert all(np.isnan(c.spread) for c in pick())
