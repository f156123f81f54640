"""ACNNCalculator: ASE energy, forces and stress equal evaluate(); loads saved files."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_stress
from ase.stress import full_3x3_to_voigt_6_stress

from acnn_mpi.model.calculator import ACNNCalculator
from acnn_mpi.model.forces import evaluate
from acnn_mpi.state import Batch


def test_calculator_matches_evaluate(make_model, crystal):
    model = make_model(attention_layers=1)
    atoms = crystal(["Mg", "Ca", "H", "H", "H", "H"], volume_per_atom=9.0)
    out = evaluate(model, Batch.from_atoms([atoms]))
    atoms.calc = ACNNCalculator(model)
    assert atoms.get_potential_energy() == pytest.approx(float(out.energy[0]), rel=1e-14)
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(float(out.energy[0]), rel=1e-14)
    np.testing.assert_allclose(atoms.get_forces(), out.forces.numpy(), atol=1e-14)
    np.testing.assert_allclose(atoms.get_stress(), full_3x3_to_voigt_6_stress(out.stress[0].numpy()), atol=1e-15)
    np.testing.assert_allclose(atoms.get_potential_energies().sum(), float(out.energy[0]), rtol=1e-13)
    # ASE's own numerical stress agrees (Voigt order and sign convention)
    numerical = calculate_numerical_stress(atoms, eps=1e-5)
    np.testing.assert_allclose(atoms.get_stress(), numerical, rtol=1e-5, atol=1e-9)
    # a new geometry triggers a new calculation
    atoms.positions[0] += 0.05
    assert atoms.get_potential_energy() != pytest.approx(float(out.energy[0]), rel=1e-12)


def test_calculator_from_file_with_dtype(make_model, crystal, tmp_path):
    model = make_model()
    model.save(tmp_path / "model.pt")
    atoms = crystal(["Mg", "H", "H"], volume_per_atom=9.0)
    calc32 = ACNNCalculator(str(tmp_path / "model.pt"), device="cpu", dtype="float32")
    assert calc32.model.dtype == torch.float32
    atoms.calc = calc32
    e32 = atoms.get_potential_energy()
    atoms.calc = ACNNCalculator(tmp_path / "model.pt")
    e64 = atoms.get_potential_energy()
    assert abs(e32 - e64) < 1e-5
    assert model.dtype == torch.float64  # the caller's model is never converted in place
    ACNNCalculator(model, dtype="float32")
    assert model.dtype == torch.float64


def test_non_periodic_cluster_has_no_stress(make_model):
    atoms = Atoms("MgH2", positions=[[0, 0, 0], [1.6, 0, 0], [-0.4, 1.5, 0]])
    atoms.calc = ACNNCalculator(make_model())
    assert np.isfinite(atoms.get_potential_energy())
    forces = atoms.get_forces()
    np.testing.assert_allclose(forces.sum(0), 0, atol=1e-13)  # no external field: Newton's third law
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()
