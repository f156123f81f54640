"""ACNN as a TorchSim model (acnn_mpi.model.torchsim); skipped without torch-sim-atomistic."""

import pytest
import torch

ts = pytest.importorskip("torch_sim")

from acnn_mpi.model.forces import evaluate  # noqa: E402
from acnn_mpi.model.torchsim import TorchSimModel  # noqa: E402
from acnn_mpi.state import Batch  # noqa: E402
from acnn_mpi.units import gpa_to_ev_per_a3  # noqa: E402


def test_wrapper_equals_evaluate_and_counts_calls(make_model, crystal):
    model = make_model()
    structures = [crystal(["Mg", "Ca", "H", "H"] * 2, volume_per_atom=8.0),
                  crystal(["Mg", "H", "H"], volume_per_atom=8.0)]
    wrapped = TorchSimModel(model)
    state = ts.initialize_state(structures, wrapped.device, wrapped.dtype)
    out = wrapped(state)
    reference = evaluate(model, Batch.from_atoms(structures, dtype=torch.float64))
    assert torch.allclose(out["energy"], reference.energy, rtol=0, atol=1e-12)
    assert torch.allclose(out["forces"], reference.forces, rtol=0, atol=1e-12)
    assert torch.allclose(out["stress"], reference.stress, rtol=0, atol=1e-13)
    assert float(reference.forces.abs().max()) > 1e-3
    assert (wrapped.n_calls, wrapped.n_structure_evaluations) == (1, 2)


def test_torchsim_fire_lowers_the_enthalpy(make_model, crystal):
    """TorchSim's batched FIRE with its Fréchet cell filter relaxes through the wrapper."""
    model = make_model()
    structures = [crystal(["Mg", "Ca", "H", "H", "H"], volume_per_atom=9.0) for _ in range(2)]
    wrapped = TorchSimModel(model)
    pressure = gpa_to_ev_per_a3(10.0)
    init, update = ts.optimizers.frechet_cell_fire(wrapped, scalar_pressure=pressure)
    state = init(ts.initialize_state(structures, wrapped.device, wrapped.dtype))

    def enthalpy(s):
        return s.energy + pressure * torch.linalg.det(s.row_vector_cell).abs()

    start = enthalpy(state).clone()
    for _ in range(30):
        state = update(state)
    assert bool((enthalpy(state) < start - 1e-4).all())
    assert wrapped.n_structure_evaluations == 2 * 31


def test_diverged_structure_gets_nan_and_the_rest_are_evaluated(make_model, crystal):
    model = make_model()
    structures = [crystal(["Mg", "H", "H"], volume_per_atom=8.0) for _ in range(3)]
    wrapped = TorchSimModel(model)
    state = ts.initialize_state(structures, wrapped.device, wrapped.dtype)
    reference = wrapped(state)
    state.positions[3] = float("nan")  # an atom of the second structure
    out = wrapped(state)
    assert bool(torch.isnan(out["energy"][1])) and bool(torch.isnan(out["forces"][3:6]).all())
    keep = torch.tensor([0, 2])
    assert torch.allclose(out["energy"][keep], reference["energy"][keep], rtol=0, atol=1e-12)
    assert torch.allclose(out["forces"][6:], reference["forces"][6:], rtol=0, atol=1e-12)
