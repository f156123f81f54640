"""Batched BFGS with the Fréchet cell filter: physical minima, pressure, safeguards, batching."""

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

from acnn_mpi.relax import cell as cellf
from acnn_mpi.relax import optimizer as opt
from acnn_mpi.relax.evaluators import as_evaluator
from acnn_mpi.relax.runner import relax_structures
from acnn_mpi.state import Batch
from acnn_mpi.units import ev_per_a3_to_gpa, gpa_to_ev_per_a3
from tests.relax.helpers import (ModelCalculator, fcc_energy_per_atom, lj, random_argon, scan_lattice_constant,
                                 strained_fcc)

TIGHT = dict(fmax=1e-5, dh_tol=1e-10, stress_tol=1e-5, max_steps=500)


def test_frechet_adjoint_matches_scipy():
    from scipy.linalg import expm_frechet

    rng = np.random.default_rng(0)
    L = rng.normal(scale=0.1, size=(2, 3, 3))
    U = rng.normal(size=(2, 3, 3))
    got = cellf.frechet_exp_adjoint(torch.tensor(L), torch.tensor(U)).numpy()
    for b in range(2):
        expected = np.zeros((3, 3))
        for m in range(3):
            for n in range(3):
                E = np.zeros((3, 3))
                E[m, n] = 1.0
                expected[m, n] = np.sum(expm_frechet(L[b], E, compute_expm=False) * U[b])
        np.testing.assert_allclose(got[b], expected, rtol=1e-10, atol=1e-12)


def test_lj_strained_fcc_relaxes_to_scanned_lattice_constant():
    model = lj()
    a0 = scan_lattice_constant(model, "Ar", 4.8, 5.8)
    assert 5.2 < a0 < 5.35  # near 1.5424 σ = 5.244 Å (the shifted-force cutoff moves it a little)
    start = [strained_fcc("Ar", a0, 0.94, shear=0.03, rattle=0.05, seed=1),
             strained_fcc("Ar", a0, 1.05, shear=-0.02, rattle=0.05, seed=2)]
    for result in relax_structures(start, model, 0.0, **TIGHT):
        assert result.status == "converged", result.reason
        lengths = result.atoms.cell.lengths()
        angles = result.atoms.cell.angles()
        np.testing.assert_allclose(lengths, a0, atol=2e-4)
        np.testing.assert_allclose(angles, 90.0, atol=1e-2)
        assert result.energy / 4 == pytest.approx(fcc_energy_per_atom(model, "Ar", a0), abs=1e-9)


def test_emt_copper_relaxes_to_scanned_lattice_constant():
    a0 = scan_lattice_constant(EMT(), "Cu", 3.4, 3.8)
    assert a0 == pytest.approx(3.59, abs=0.02)  # ASE's EMT copper: a0 ≈ 3.590 Å
    start = strained_fcc("Cu", a0, 0.96, shear=0.02, rattle=0.03, seed=3)
    (result,) = relax_structures([start], EMT(), 0.0, **TIGHT)
    assert result.status == "converged", result.reason
    np.testing.assert_allclose(result.atoms.cell.lengths(), a0, atol=2e-4)
    assert result.max_force < 1e-5


def test_same_trajectory_as_ase_bfgs_on_frechet_filter():
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    model = lj()
    atoms = strained_fcc("Ar", 5.25, 0.95, shear=0.02, rattle=0.1, seed=3, repeat=(2, 1, 1))
    pressure = 1.0
    reference = atoms.copy()
    reference.calc = ModelCalculator(model)
    filtered = FrechetCellFilter(reference, scalar_pressure=gpa_to_ev_per_a3(pressure))
    bfgs = BFGS(filtered, logfile=None)
    ase_enthalpies = []
    bfgs.attach(lambda: ase_enthalpies.append(filtered.get_potential_energy()))
    bfgs.run(fmax=1e-6, steps=25)
    state = opt.init(Batch.from_atoms([atoms]), gpa_to_ev_per_a3(pressure))
    evaluator = as_evaluator(model)
    ours = []
    for _ in range(len(ase_enthalpies)):
        state, info = opt.step(state, evaluator)
        assert bool(info.accepted.all())
        ours.append(float(state.enthalpy[0]))
    np.testing.assert_allclose(ours, ase_enthalpies, rtol=0, atol=1e-10)


def test_accepted_enthalpy_never_rises_and_trust_shrinks_on_rejection():
    model = lj()
    structures = random_argon(4, seed=5)
    state = opt.init(Batch.from_atoms(structures), 0.0, maxstep=1.0, alpha=0.2)  # big steps overshoot
    evaluator = as_evaluator(model)
    history = []
    for _ in range(60):
        before_trust = state.trust.clone()
        state, info = opt.step(state, evaluator)
        history.append(state.enthalpy.clone())
        rejected = ~info.accepted
        assert bool((state.trust[rejected] < before_trust[rejected]).all())
    h = torch.stack(history)
    assert bool((h[1:] <= h[:-1] + 1e-12).all())
    assert int(state.n_rejected.sum()) > 0


@pytest.mark.parametrize("pressure", [2.0, 20.0])
def test_final_stress_is_minus_pressure(pressure):
    model = lj()
    start = strained_fcc("Ar", 5.25, 1.0, shear=0.03, rattle=0.05, seed=4)
    (result,) = relax_structures([start], model, pressure, fmax=1e-5, dh_tol=1e-10, stress_tol=1e-4, max_steps=500)
    assert result.status == "converged", result.reason
    batch = Batch.from_atoms([result.atoms])
    from acnn_mpi.model.forces import evaluate

    out = evaluate(model, batch)
    stress_gpa = ev_per_a3_to_gpa(out.stress[0].numpy())
    np.testing.assert_allclose(stress_gpa, -pressure * np.eye(3), atol=1e-4)
    assert result.pressure == pytest.approx(pressure, abs=1e-4)
    assert result.pressure_residual < 1e-4
    assert result.enthalpy == pytest.approx(result.energy + gpa_to_ev_per_a3(pressure) * result.volume, rel=1e-12)
    assert result.volume < 4 * 5.25 ** 3  # compressed below the zero-pressure volume


def test_batch_equals_one_by_one_and_continuous_batching():
    model = lj()
    structures = random_argon(9, seed=11)
    for k, atoms in enumerate(structures):
        atoms.info["structure_id"] = 1000 + k
    batched = relax_structures(structures, model, 0.5, batch_size=4)  # more structures than the batch
    single = [relax_structures([a], model, 0.5, batch_size=1)[0] for a in structures]
    assert [r.structure_id for r in batched] == [1000 + k for k in range(9)]  # input order, nothing lost
    for b, s in zip(batched, single):
        assert b.status == s.status == "converged"
        assert b.enthalpy / len(b.atoms) == pytest.approx(s.enthalpy / len(s.atoms), abs=1e-7)
        assert b.volume == pytest.approx(s.volume, rel=1e-4)
    assert max(r.max_force for r in batched) < 1e-3


def test_same_code_path_for_ase_calculator_and_model():
    """EMT through the calculator adapter, LJ through the same relaxer and its ASE wrapper."""
    model = lj()
    structures = random_argon(3, seed=2)
    direct = relax_structures(structures, model, 0.0, batch_size=3)
    wrapped = relax_structures(structures, ModelCalculator(model), 0.0, batch_size=3)
    for d, w in zip(direct, wrapped):
        assert d.status == w.status == "converged"
        assert d.enthalpy == pytest.approx(w.enthalpy, abs=1e-6)
    copper = [bulk("Cu", "fcc", a=3.5, cubic=True), bulk("Cu", "fcc", a=3.7) * (2, 1, 1)]
    results = relax_structures(copper, EMT(), 5.0, batch_size=2)
    assert [r.status for r in results] == ["converged", "converged"]
    assert results[0].enthalpy / 4 == pytest.approx(results[1].enthalpy / 2, abs=1e-5)
