"""Validation errors against a hand computation, frame by frame."""

import numpy as np
import pytest

from acnn_mpi.model.forces import evaluate
from acnn_mpi.model.lennard_jones import LennardJones
from acnn_mpi.state import Batch
from acnn_mpi.train.metrics import evaluate_errors
from tests.train.helpers import emt_frames


def test_rmse_and_mae_by_hand():
    atoms_list = emt_frames(9, seed=5, stress_every=2)  # frames 0, 2, 4, 6, 8 carry stress
    model = LennardJones(epsilon=0.05, sigma=2.3, cutoff=5.0)
    de, df, ds = [], [], []
    for atoms in atoms_list:
        out = evaluate(model, Batch.from_atoms([atoms]))
        de.append((float(out.energy[0]) - atoms.get_potential_energy()) / len(atoms))
        df.append(out.forces.detach().numpy() - atoms.get_forces())
        if "stress" in atoms.calc.results:
            voigt = out.stress.detach().numpy()[0][[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
            ds.append(voigt - atoms.calc.results["stress"])
    de, df, ds = np.array(de), np.concatenate(df).ravel(), np.concatenate(ds) * 160.21766208
    errors = evaluate_errors(model, atoms_list, batch_size=4)
    assert errors["n_frames"] == 9 and errors["n_stress_frames"] == 5
    assert errors["n_atoms"] == sum(len(a) for a in atoms_list)
    assert errors["energy_rmse"] == pytest.approx(1000 * np.sqrt(np.mean(de ** 2)), rel=1e-10)
    assert errors["energy_mae"] == pytest.approx(1000 * np.mean(np.abs(de)), rel=1e-10)
    assert errors["force_rmse"] == pytest.approx(1000 * np.sqrt(np.mean(df ** 2)), rel=1e-10)
    assert errors["force_mae"] == pytest.approx(1000 * np.mean(np.abs(df)), rel=1e-10)
    assert errors["stress_rmse"] == pytest.approx(np.sqrt(np.mean(ds ** 2)), rel=1e-10)
    assert errors["stress_mae"] == pytest.approx(np.mean(np.abs(ds)), rel=1e-10)
    # a subset by index, and one structure per call, give the same numbers
    subset = evaluate_errors(model, atoms_list, indices=[1, 3], batch_size=1)
    assert subset["energy_rmse"] == pytest.approx(1000 * np.sqrt(np.mean(de[[1, 3]] ** 2)), rel=1e-10)
    assert subset["stress_rmse"] is None and subset["n_stress_frames"] == 0


def test_extxyz_file_is_accepted(tmp_path):
    import ase.io

    atoms_list = emt_frames(3, seed=1)
    path = tmp_path / "frames.xyz"
    ase.io.write(path, atoms_list, format="extxyz")
    model = LennardJones(epsilon=0.05, sigma=2.3, cutoff=5.0)
    from_file = evaluate_errors(model, path)
    in_memory = evaluate_errors(model, atoms_list)
    for key in ("energy_rmse", "force_rmse", "stress_rmse"):
        assert from_file[key] == pytest.approx(in_memory[key], rel=1e-8)
