"""scripts/descriptor_probe.py: the ridge fit, the structure features' invariances, the command line."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from tests.train.helpers import import_script

SMALL = {"r_cut_radial": 4.5, "r_cut_angular": 4.0, "n_radial": 4, "n_angular": 3, "l_max": 2,
         "bispectrum_l_max": 2}


@pytest.fixture(scope="module")
def probe():
    return import_script("descriptor_probe")


def test_ridge_recovers_a_linear_target_and_follows_an_energy_zero_shift(probe):
    rng = np.random.default_rng(0)
    design = rng.normal(size=(40, 6)) * [1, 10, 0.1, 1, 5, 2] + [0, 3, -1, 0, 0, 7]
    design[:, 3] = 2.0  # a constant column: no information, weight 0
    targets = design @ np.array([0.5, -0.02, 3.0, 0.0, 0.1, -0.4]) - 4.2
    fit = probe.fit_ridge(design, targets, 1e-12)
    assert np.abs(fit.predict(design) - targets).max() < 1e-8
    assert fit.weights[3] == 0.0
    shifted = probe.fit_ridge(design, targets - 1234.5, 1e-3)
    plain = probe.fit_ridge(design, targets, 1e-3)
    assert np.allclose(shifted.predict(design), plain.predict(design) - 1234.5, atol=1e-9)
    assert np.allclose(shifted.weights, plain.weights, atol=1e-12)


def test_structure_features_are_intensive_and_rotation_invariant(probe):
    model = probe.probe_model(SMALL, ["Ge"])
    cell = bulk("Ge", "diamond", a=5.658, cubic=True)
    cell.rattle(0.05, seed=1)
    repeated = cell.repeat((2, 1, 1))
    turned = cell.copy()
    turned.rotate(37, "z", rotate_cell=True)
    turned.rotate(-20, "x", rotate_cell=True)
    features = probe.atom_features(model, [cell, repeated, turned])
    atoms = np.concatenate([x for x, _ in features])
    mean, scale = atoms.mean(axis=0), np.where(atoms.std(axis=0) > 0, atoms.std(axis=0), 1.0)
    for quadratic in (False, True):
        rows = probe.design_matrix(features, mean, scale, quadratic)
        assert rows.shape[1] == (atoms.shape[1] * (atoms.shape[1] + 3) // 2 if quadratic else atoms.shape[1])
        assert np.allclose(rows[1], rows[0], atol=1e-4)  # a supercell has the same per-atom features
        assert np.allclose(rows[2], rows[0], atol=1e-4)
    assert np.abs(rows[0]).max() > 0.01  # the rattled cell's features are not all at their mean


def test_force_rows_are_minus_the_gradient_of_the_linear_energy(probe):
    """The linear model's forces from force_rows match central finite differences of its total
    energy N·(mean_i z_i · w + c) (float64 descriptor, h = 1e-4 Å)."""
    model = probe.probe_model({**SMALL, "dtype": "float64"}, ["Ge"])
    cell = bulk("Ge", "diamond", a=5.658, cubic=True)
    cell.rattle(0.08, seed=3)
    features = probe.atom_features(model, [cell], derivatives=True)
    x, jacobian = features[0]
    assert jacobian.shape == (3 * len(cell), x.shape[1])
    mean, scale = x.mean(axis=0), np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    rng = np.random.default_rng(4)
    fit = probe.RidgeFit(np.zeros(x.shape[1]), np.full(x.shape[1], 1.7), rng.normal(size=x.shape[1]), -4.0)
    forces = fit.predict_forces(probe.force_rows(features, scale))

    def total_energy(atoms):
        design = probe.design_matrix(probe.atom_features(model, [atoms]), mean, scale)
        return len(atoms) * float(fit.predict(design)[0])

    h = 1e-4
    for atom, axis in ((0, 0), (5, 2), (7, 1)):
        plus, minus = cell.copy(), cell.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        numeric = -(total_energy(plus) - total_energy(minus)) / (2 * h)
        assert forces[3 * atom + axis] == pytest.approx(numeric, rel=1e-5, abs=1e-7)
    assert np.abs(forces).max() > 1e-3


def labelled_frames(n, seed):
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.05 * rng.normal(), cubic=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        energy = atoms.get_potential_energy()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((len(atoms), 3)))
        atoms.info["group"] = "Strained" if k % 2 else "Rattled"
        frames.append(atoms)
    return frames


def probe_lines(probe, tmp_path, capsys, n_train, n_held, extra) -> list[str]:
    """The ``| ridge ...`` lines of the command line on EMT frames with the small descriptor."""
    write(tmp_path / "train.xyz", labelled_frames(n_train, 0))
    write(tmp_path / "held.xyz", labelled_frames(n_held, 1))
    args = [str(tmp_path / "train.xyz"), str(tmp_path / "held.xyz")] + extra
    assert probe.main(args + [f"--set=model.{k}={v}" for k, v in SMALL.items()]) == 0
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ridge")]


def test_command_line_prints_each_strength_and_the_signed_group(probe, tmp_path, capsys):
    lines = probe_lines(probe, tmp_path, capsys, 12, 4, ["--ridge", "1e-3,1e-1", "--signed", "Strained"])
    assert len(lines) == 2 and lines[0].startswith("| ridge 0.001 |")
    assert "Rattled" in lines[0] and lines[0].count("Strained signed") == 1
    signed = lines[0].split("Strained signed ")[1].rstrip(" |").split()
    assert len(signed) == 2 and all(float(e) == float(e) for e in signed)  # the two Strained frames
    train_rmse = [float(line.split("| train ")[1].split()[0]) for line in lines]
    assert train_rmse[0] <= train_rmse[1]  # less shrinkage fits the training frames at least as well


def test_command_line_with_forces_reports_force_errors(probe, tmp_path, capsys):
    line = probe_lines(probe, tmp_path, capsys, 8, 2, ["--ridge", "1e-3", "--force-weight", "0.1"])[0]
    train_energy, train_force = line.split("| train ")[1].split(" |")[0].split(" / ")
    held_force = float(line.split("| all ")[1].split(" |")[0].split(" / ")[1])
    assert float(train_energy) >= 0 and float(train_force) > 0 and held_force > 0


@pytest.mark.parametrize("extra,named", [(["--set", "model.l_max=99"], "model.l_max = 99"),
                                         (["--set", "training.steps=1"], "use model.KEY=VALUE"),
                                         (["--ridge", "a"], "--ridge a"),
                                         (["--force-weight", "1", "--quadratic"], "without --quadratic")])
def test_bad_input_is_one_line_and_exit_2(probe, tmp_path, capsys, extra, named):
    write(tmp_path / "f.xyz", labelled_frames(2, 0))
    with pytest.raises(SystemExit) as stop:
        probe.main([str(tmp_path / "f.xyz"), str(tmp_path / "f.xyz")] + extra)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1


def test_frames_without_forces_or_with_a_new_element_are_one_line_errors(probe, tmp_path, capsys):
    write(tmp_path / "cu.xyz", labelled_frames(2, 0))
    bare = bulk("Cu", "fcc", a=3.6, cubic=True)
    bare.calc = SinglePointCalculator(bare, energy=-1.0)
    write(tmp_path / "bare.xyz", [bare])
    gold = bulk("Au", "fcc", a=4.08, cubic=True)
    gold.calc = SinglePointCalculator(gold, energy=-2.0, forces=np.zeros((4, 3)))
    write(tmp_path / "au.xyz", [gold])
    small = [f"--set=model.{k}={v}" for k, v in SMALL.items()]
    for held, extra, named in (("bare.xyz", ["--force-weight", "0.1"], "needs forces"),
                               ("au.xyz", [], "element Au")):
        with pytest.raises(SystemExit) as stop:
            probe.main([str(tmp_path / "cu.xyz"), str(tmp_path / held)] + extra + small)
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and named in err and len(err.splitlines()) == 1


def test_missing_file_is_a_clear_error(probe, capsys):
    assert probe.main(["no_such_train.xyz", "no_such_test.xyz"]) == 2
    assert "no_such_train.xyz not found" in capsys.readouterr().err


def test_leave_one_out_predicts_each_frame_without_its_own_label(probe):
    """On an exactly linear energy the left-out frames are predicted to 1e-6 meV/atom; a frame whose
    label is shifted by +0.05 eV/atom is then predicted 50 meV/atom below it, since the fit never
    sees that label (and the other frames of its group stay exact)."""
    rng = np.random.default_rng(5)
    design = rng.normal(size=(30, 4))
    energies = design @ np.array([0.2, -0.1, 0.05, 0.3]) - 3.0
    groups = ["Surface" if k % 5 == 0 else "Bulk" for k in range(30)]
    split = probe.ProbeSplit(design, energies.copy(), groups)
    assert np.abs(probe.leave_one_out(split, "Surface", 1e-12)).max() < 1e-6
    energies[10] += 0.05
    errors = probe.leave_one_out(probe.ProbeSplit(design, energies, groups), "Surface", 1e-12)
    assert len(errors) == 6
    assert errors[2] == pytest.approx(-50.0, abs=1e-6)  # frame 10 is the third Surface frame
    assert np.abs(np.delete(errors, 2)).max() > 0.1  # the shifted label now bends the others' fits


def test_command_line_leave_one_out_reports_each_strength_and_refuses_a_missing_group(probe, tmp_path, capsys):
    lines = probe_lines(probe, tmp_path, capsys, 12, 2, ["--ridge", "1e-3,1e-1", "--leave-one-out", "Strained"])
    loo = [line for line in lines if "leave-one-out Strained (6 frames)" in line]
    assert len(loo) == 2 and len(lines) == 4
    rmse = float(loo[0].split("RMSE ")[1].split(",")[0])
    signed = [float(e) for e in loo[0].split(" | ")[2].rstrip(" |").split()]
    assert len(signed) == 6 and rmse == pytest.approx(np.sqrt(np.mean(np.square(signed))), abs=0.01)
    with pytest.raises(SystemExit) as stop:
        probe_lines(probe, tmp_path, capsys, 4, 2, ["--leave-one-out", "Surface"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "--leave-one-out Surface" in err and len(err.splitlines()) == 1
