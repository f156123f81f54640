"""The ``chgnet`` labeller: a pretrained universal potential as an offline stand-in for DFT.

Skipped where chgnet is not installed (pip install '.[chgnet]')."""

import numpy as np
import pytest
from ase.build import bulk

pytest.importorskip("chgnet", reason="chgnet is not installed (pip install '.[chgnet]')")

from acnn_mpi.label import make_labeller  # noqa: E402


@pytest.fixture(scope="module")
def labeller():
    return make_labeller({"kind": "chgnet"})


def test_chgnet_is_labelled_as_a_stand_in(labeller):
    assert labeller.name == "chgnet (stand-in for DFT)"


def test_chgnet_labels_with_consistent_stress(labeller):
    from ase.calculators.fd import calculate_numerical_stress

    atoms = bulk("Si", "diamond", a=5.3)
    atoms.positions[1] += [0.04, -0.02, 0.03]
    result = labeller.label(atoms)
    assert result.ok, result.reason
    assert result.forces.shape == (2, 3) and result.stress.shape == (3, 3)
    assert -6.0 < result.energy / len(atoms) < -4.0          # Si cohesion in CHGNet's MP-PBE scale
    np.testing.assert_allclose(result.forces.sum(axis=0), 0.0, atol=1e-4)
    # compressed (5.3 Å < ~5.47 Å): negative ASE stress, matching the energy's strain derivative
    probe = atoms.copy()
    probe.calc = labeller.calculator()
    numerical = calculate_numerical_stress(probe, eps=1e-4, voigt=False, force_consistent=False)
    assert np.trace(result.stress) < 0
    np.testing.assert_allclose(result.stress, numerical, atol=2e-3)
