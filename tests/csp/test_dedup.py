"""Dedup: one representative per crystal, polymorphs kept apart, cost linear in duplicates."""

import numpy as np
import pytest
from ase.build import bulk, make_supercell

from acnn_mpi.csp.dedup import composition_groups, composition_key, deduplicate
from acnn_mpi.csp.fingerprints import fingerprints

A_FCC = 3.61


def copies_of_fcc():
    """fcc Cu as a 1-atom primitive cell, a 4-atom cubic cell and a 12-atom cell on another
    basis, translated and with the atoms permuted."""
    primitive = bulk("Cu", "fcc", a=A_FCC)
    cubic = bulk("Cu", "fcc", a=A_FCC, cubic=True)
    other = make_supercell(primitive, [[1, 1, 0], [0, 1, 1], [1, 0, 2]])  # 3 atoms
    other = make_supercell(other, [[1, 1, 0], [0, 1, 0], [0, -1, 1]])  # another basis, same cell
    other.positions += [0.4, 0.9, -0.3]
    other = other[np.random.default_rng(2).permutation(len(other))]
    return [primitive, cubic, other]


def polymorphs_of_cu():
    v = A_FCC ** 3 / 4
    a_hcp = (v * 2 / (np.sqrt(3) / 2 * np.sqrt(8 / 3))) ** (1 / 3)
    return [bulk("Cu", "hcp", a=a_hcp, c=a_hcp * np.sqrt(8 / 3)),
            bulk("Cu", "bcc", a=(2 * v) ** (1 / 3))]


def run(structures, h, **kwargs):
    elements = sorted({s for a in structures for s in a.get_chemical_symbols()})
    keys = [composition_key(a) for a in structures]
    return deduplicate(keys, np.asarray(h, float), fingerprints(structures, elements),
                       load_structure=lambda i: structures[i], **kwargs)


def test_composition_key_is_the_reduced_formula():
    assert composition_key(bulk("MgO", "rocksalt", a=4.2).repeat(2)) == "MgO"
    assert composition_key(np.array([12, 1, 1, 1, 1])) == "H4Mg"


def test_same_crystal_in_other_cells_is_found_and_polymorphs_kept_apart():
    structures = copies_of_fcc() + polymorphs_of_cu()
    assert [len(a) for a in structures] == [1, 4, 3, 2, 1]
    h = [-4.000, -3.9995, -3.9998, -3.9999, -3.9997]  # all within the 5 meV/atom window
    # a loose fingerprint tolerance sends the polymorphs to the matcher, which keeps them apart
    result = run(structures, h, fingerprint_tolerance=1.0, certain_tolerance=0.0)
    assert result.representative.tolist() == [0, 0, 0, 3, 4]
    # leader fcc (-4.0000) asks about 4 structures and keeps 2; leader hcp asks about bcc
    assert result.matcher_calls == 5 and result.matcher_rejections == 3
    assert result.n_unique == 3 and result.cluster_sizes()[0] == 3


def test_rocksalt_and_zincblende_are_different():
    structures = [bulk("ZnS", "rocksalt", a=5.41), bulk("ZnS", "zincblende", a=5.41),
                  bulk("ZnS", "zincblende", a=5.41, cubic=True)]
    result = run(structures, [-3.0, -3.001, -3.0012], fingerprint_tolerance=1.0, certain_tolerance=0.0)
    assert result.representative.tolist() == [0, 2, 2]  # the lower enthalpy copy represents


def test_the_lowest_enthalpy_copy_represents_and_the_window_separates():
    structures = copies_of_fcc()
    result = run(structures, [-3.990, -4.000, -3.998], enthalpy_window=0.02)
    assert result.representative.tolist() == [1, 1, 1]
    far = run(structures, [-3.990, -4.000, -3.998], enthalpy_window=0.005)
    assert far.representative.tolist() == [0, 1, 1]  # 10 meV/atom above: not compared


def test_certain_fingerprints_skip_the_matcher_and_fingerprints_alone_work():
    structures = copies_of_fcc()
    result = run(structures, [-4.0, -4.0, -4.0])
    assert result.representative.tolist() == [0, 0, 0] and result.matcher_calls == 0
    keys = ["Cu"] * 3
    alone = deduplicate(keys, np.full(3, -4.0), fingerprints(structures, ["Cu"]))
    assert alone.representative.tolist() == [0, 0, 0]


def test_compositions_are_never_mixed_and_nan_is_never_a_duplicate():
    fp = np.tile(np.eye(1, 8, dtype=np.float32), (4, 1))  # identical fingerprints
    result = deduplicate(["A", "B", "A", "A"], np.array([0.0, 0.0, 0.001, np.nan]), fp)
    assert result.representative.tolist() == [0, 1, 0, 3]


def test_many_duplicates_cost_linear_work_and_h5py_input(tmp_path):
    """20,000 structures falling into 50 minima of 10 compositions: each is compared with the
    few representatives in its window, not with its whole cluster."""
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    n, d = 20_000, 64
    centres = rng.normal(size=(50, d))
    minimum = rng.integers(0, 50, n)
    fp = centres[minimum] + rng.normal(0, 1e-3, (n, d))
    fp = (fp / np.linalg.norm(fp, axis=1, keepdims=True)).astype(np.float32)
    enthalpy = np.linspace(-1, 0, 50)[minimum] + rng.normal(0, 1e-4, n)
    keys = minimum % 10
    with h5py.File(tmp_path / "fp.h5", "w") as f:
        f["fp"] = fp
    with h5py.File(tmp_path / "fp.h5", "r") as f:
        result = deduplicate(keys, enthalpy, f["fp"])
    assert result.n_unique == 50
    assert np.array_equal(minimum[result.representative], minimum)
    assert result.fingerprint_comparisons < 2 * n


def test_composition_groups_can_be_deduplicated_apart():
    rng = np.random.default_rng(1)
    n = 3000
    minimum = rng.integers(0, 60, n)
    centres = rng.normal(size=(60, 16))
    fp = centres[minimum] + rng.normal(0, 1e-3, (n, 16))
    fp = (fp / np.linalg.norm(fp, axis=1, keepdims=True)).astype(np.float32)
    h = np.linspace(-1, 0, 60)[minimum]
    keys = np.array(["A", "B", "C"])[minimum % 3]
    whole = deduplicate(keys, h, fp).representative
    groups = composition_groups(keys)
    assert [len(g) for g in groups] == sorted((np.unique(keys, return_counts=True)[1]), reverse=True)
    for rows in groups:
        part = deduplicate(keys[rows], h[rows], fp[rows]).representative
        assert np.array_equal(rows[part], whole[rows])
