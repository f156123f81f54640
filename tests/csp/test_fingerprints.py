"""Fingerprints: the same crystal in any cell gives the same vector; polymorphs do not."""

import numpy as np
import pytest
from ase.build import bulk, make_supercell

from acnn_mpi.csp.fingerprints import (FingerprintSettings, cosine_distance, fingerprint,
                                       fingerprint_size, fingerprints, fingerprints_from_batch)

V_CU = 11.8  # Å³/atom


def cu(kind):
    if kind == "fcc":
        return bulk("Cu", "fcc", a=(4 * V_CU) ** (1 / 3), cubic=True)
    if kind == "bcc":
        return bulk("Cu", "bcc", a=(2 * V_CU) ** (1 / 3), cubic=True)
    a = (V_CU * 2 / (np.sqrt(3) / 2 * np.sqrt(8 / 3))) ** (1 / 3)
    return bulk("Cu", "hcp", a=a, c=a * np.sqrt(8 / 3))


def test_shape_unit_norm_and_dtype():
    f = fingerprint(bulk("MgO", "rocksalt", a=4.2), ["Mg", "Ca", "O"])
    assert f.shape == (fingerprint_size(3),) == (6 * 60,)
    assert f.dtype == np.float32
    assert np.linalg.norm(f) == pytest.approx(1.0, abs=1e-6)
    # the blocks of pairs with Ca are empty
    blocks = f.reshape(6, 60)
    assert np.all(blocks[[1, 3, 4]] == 0) and np.all(np.abs(blocks[[0, 2, 5]]).sum(1) > 0)


def test_same_crystal_in_another_cell_translated_and_permuted():
    fcc = cu("fcc")
    other = make_supercell(fcc, [[1, 1, 0], [0, 1, 1], [1, 0, 2]])  # 3× the cell, new basis
    other.positions += [0.31, -0.7, 1.1]
    other = other[np.random.default_rng(0).permutation(len(other))]
    assert len(other) == 12
    assert cosine_distance(fingerprint(fcc, ["Cu"]), fingerprint(other, ["Cu"])) < 1e-6


def test_polymorphs_are_far_apart_and_noise_is_not():
    f = {k: fingerprint(cu(k), ["Cu"]) for k in ("fcc", "hcp", "bcc")}
    # fcc and hcp share the first two shells (12 at d, 6 at √2 d); they differ from 1.63 d on
    assert cosine_distance(f["fcc"], f["hcp"]) == pytest.approx(0.045, abs=0.005)
    assert cosine_distance(f["fcc"], f["bcc"]) > 0.4
    assert cosine_distance(f["hcp"], f["bcc"]) > 0.3
    noisy = cu("fcc").repeat(2)
    noisy.positions += np.random.default_rng(1).normal(0, 0.01, noisy.positions.shape)
    assert cosine_distance(f["fcc"], fingerprint(noisy, ["Cu"])) < 1e-3
    rocksalt = fingerprint(bulk("ZnS", "rocksalt", a=5.41), ["Zn", "S"])
    zincblende = fingerprint(bulk("ZnS", "zincblende", a=5.41), ["Zn", "S"])
    assert cosine_distance(rocksalt, zincblende) > 0.4


def test_continuous_in_the_distances():
    """A 0.1 % strain moves the vector a little, not by a bin jump."""
    a = cu("fcc")
    b = a.copy()
    b.set_cell(a.cell * 1.001, scale_atoms=True)
    assert 0 < cosine_distance(fingerprint(a, ["Cu"]), fingerprint(b, ["Cu"])) < 1e-3


def test_batched_forms_equal_single():
    structures = [cu("fcc"), cu("hcp"), bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1))]
    single = np.stack([fingerprint(s, ["Cu"]) for s in structures])
    assert np.array_equal(fingerprints(structures, ["Cu"]), single)
    flat = fingerprints_from_batch(np.concatenate([s.positions for s in structures]),
                                   np.stack([s.cell.array for s in structures]),
                                   np.concatenate([s.numbers for s in structures]),
                                   [len(s) for s in structures], ["Cu"])
    assert np.array_equal(flat, single)


def test_settings_and_bad_input():
    s = FingerprintSettings(cutoff=5.0, bin_width=0.25, sigma=0.0)
    assert fingerprint(cu("fcc"), ["Cu"], s).shape == (20,)
    with pytest.raises(ValueError, match="Cu"):
        fingerprint(cu("fcc"), ["Mg"])
    with pytest.raises(ValueError):
        FingerprintSettings(bin_width=0)
