"""Selection (C_max compositions × L_max distinct structures + failures) and distance checks."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from acnn_mpi.csp.distances import check_distances, check_many, pair_matrix
from acnn_mpi.csp.selection import HULL, NOT_CONVERGED, UNPHYSICAL, select_candidates


def table():
    """5 compositions; E_hull of the best structure: A 0.00, B 0.03, C 0.01, D 0.01 (tie with C,
    broken by id), E 0.20. Each composition has 4 structures, the 2nd one a duplicate."""
    keys, ids, h, e = [], [], [], []
    best = {"A": 0.0, "B": 0.03, "C": 0.01, "D": 0.01, "E": 0.2}
    first_id = {"A": 100, "B": 200, "C": 400, "D": 300, "E": 500}
    for key, e0 in best.items():
        for k in range(4):
            keys.append(key)
            ids.append(first_id[key] + k)
            h.append(-1.0 + e0 + 0.01 * k)
            e.append(e0 + 0.01 * k)
    distinct = np.ones(len(ids), bool)
    distinct[1::4] = False
    return np.array(ids), np.array(keys), np.array(h), np.array(e), distinct


def test_c_max_and_l_max_are_obeyed_exactly():
    ids, keys, h, e, distinct = table()
    chosen = select_candidates(ids, keys, h, e, c_max=3, l_max=2, distinct=distinct)
    assert [c.id for c in chosen] == [100, 102, 300, 302, 400, 402]  # A, D (id 300 < 400), C
    assert [c.rank for c in chosen] == [1, 1, 2, 2, 3, 3]
    assert all(c.reason == HULL for c in chosen)
    assert chosen[1].e_hull == pytest.approx(0.02)
    everything = select_candidates(ids, keys, h, e, c_max=10, l_max=10, distinct=distinct)
    assert len(everything) == 5 * 3
    assert select_candidates(ids, keys, h, e, c_max=0, l_max=3) == []


def test_deterministic_under_shuffling():
    ids, keys, h, e, distinct = table()
    reference = [c.id for c in select_candidates(ids, keys, h, e, c_max=4, l_max=3, distinct=distinct)]
    for seed in range(3):
        p = np.random.default_rng(seed).permutation(len(ids))
        again = select_candidates(ids[p], keys[p], h[p], e[p], c_max=4, l_max=3, distinct=distinct[p])
        assert [c.id for c in again] == reference


def test_failures_are_added_up_to_the_bound_in_turn():
    ids, keys, h, e, distinct = table()
    physical = np.ones(len(ids), bool)
    converged = np.ones(len(ids), bool)
    physical[[0, 4, 8]] = False          # ids 100, 200, 400 unphysical
    h[8] = -50.0                          # the worst model failure comes first
    converged[[12, 13]] = False           # ids 300, 301 (301 is a duplicate: skipped)
    chosen = select_candidates(ids, keys, h, e, c_max=1, l_max=1, distinct=distinct,
                               physical=physical, converged=converged, max_extra=3)
    assert [(c.id, c.reason) for c in chosen] == [
        (102, HULL),                       # A's best physical, converged, distinct structure
        (400, UNPHYSICAL), (300, NOT_CONVERGED), (100, UNPHYSICAL)]
    assert [c.rank for c in chosen[1:]] == [1, 2, 3]
    assert len(select_candidates(ids, keys, h, e, c_max=1, l_max=1, physical=physical,
                                 converged=converged, max_extra=100)) == 1 + 3 + 2


def test_distance_check_reason_and_batch():
    table_ = {"Mg-H": 1.4, "Mg-Mg": 2.6, "H-H": 0.7}
    good = Atoms("MgH2", positions=[[0, 0, 0], [1.8, 0, 0], [0, 1.8, 0]], cell=[5, 5, 5], pbc=True)
    bad = Atoms("MgH2", positions=[[0, 0, 0], [0.62, 0, 0], [0, 1.8, 0]], cell=[5, 5, 5], pbc=True)
    assert check_distances(good, table_).ok
    result = check_distances(bad, table_, 0.5)
    assert not result.ok and result.reason == "Mg-H 0.62 Å < 0.5 × 1.4 Å"
    assert result.worst_ratio == pytest.approx(0.62 / 1.4)
    # periodic images count: two Mg 2.0 Å apart through the cell boundary
    images = Atoms("Mg2", positions=[[0.5, 0, 0], [3.5, 0, 0]], cell=[5, 5, 5], pbc=True)
    assert check_distances(images, table_, 0.8).reason == "Mg-Mg 2.00 Å < 0.8 × 2.6 Å"
    ok, reasons = check_many([good, bad, bulk("Mg", "hcp", a=3.2)], table_, 0.5)
    assert ok.tolist() == [True, False, True] and reasons[0] == "" and reasons[1].startswith("Mg-H")


def test_pair_matrix_accepts_config_tables_and_names_missing_pairs():
    matrix = pair_matrix({("Mg", "H"): 1.4, ("H", "Mg"): 1.4, ("Mg", "Mg"): 2.6, ("H", "H"): 0.7},
                         ["Mg", "H"])
    assert matrix.tolist() == [[2.6, 1.4], [1.4, 0.7]]
    with pytest.raises(ValueError, match="H-H"):
        pair_matrix({"Mg-H": 1.4, "Mg-Mg": 2.6}, ["Mg", "H"])
