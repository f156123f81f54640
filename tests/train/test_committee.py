"""The committee: members trained from different seeds disagree, identical models agree exactly,
the energies it compares are the model's, members are dealt to rank groups as documented, and
the committee mean is the members' mean."""

import numpy as np
import pytest
import torch
from ase.build import bulk

from acnn_mpi.model.forces import evaluate
from acnn_mpi.model.potential import ACNN
from acnn_mpi.state import Batch
from acnn_mpi.train import train_model
from acnn_mpi.train.committee import (CommitteeMean, committee_spread, energies_per_atom, member_config,
                                      member_groups, member_seed)
from tests.train.helpers import emt_frames, import_script, small_config


def probes():
    """A strained L1_0 CuAu, a rattled fcc Cu supercell and a compressed Au: off the training set."""
    cuau = bulk("Cu", "fcc", a=3.85, cubic=True)
    cuau.set_chemical_symbols(["Cu", "Au", "Cu", "Au"])
    cuau.set_cell(cuau.cell * [1.02, 1.0, 0.97], scale_atoms=True)
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    cu.rattle(0.05, seed=3)
    return [cuau, cu, bulk("Au", "fcc", a=3.95)]


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Two members (seeds 0 and 1) trained 15 steps on the same 9 EMT frames."""
    root = tmp_path_factory.mktemp("committee")
    config = small_config(steps=15, validate_every=15, log_every=15)
    frames = emt_frames(9, seed=5)
    paths = []
    for m in range(2):
        result = train_model(member_config(config, m), frames, root / f"member_{m}")
        paths.append(result.model_path)
    return config, paths


def test_member_seeds_and_configs():
    config = small_config(seed=4)
    assert member_config(config, 0) is config
    other = member_config(config, 2)
    assert other.training.seed == member_seed(4, 2) == 6 and config.training.seed == 4
    assert other.model == config.model and other.training.steps == config.training.steps


def test_members_differ_and_identical_models_agree(members):
    _, (first, second) = members
    atoms = probes()
    e0 = energies_per_atom(ACNN.load(first), atoms)
    e1 = energies_per_atom(ACNN.load(second), atoms)
    assert np.all(np.isfinite(e0)) and np.all(np.isfinite(e1))
    # different seeds (initialisation, minibatch order): different energies on the same structure
    assert np.all(np.abs(e0 - e1) > 1e-5), (e0, e1)
    spread = committee_spread(np.stack([e0, e1]))
    np.testing.assert_allclose(spread, np.abs(e0 - e1) / 2, rtol=1e-12)
    # a committee of one model loaded twice: zero spread, exactly
    again = energies_per_atom(ACNN.load(first), atoms)
    assert np.array_equal(again, e0)
    assert np.array_equal(committee_spread(np.stack([e0, again])), np.zeros(len(atoms)))
    np.testing.assert_allclose(committee_spread(np.stack([e0, again, e0])), 0.0, atol=1e-12)


def test_energies_are_the_models_energies(members):
    """energies_per_atom (no forces, batched) equals evaluate()'s energy / N per structure."""
    _, (first, _) = members
    model = ACNN.load(first)
    atoms = probes()
    batch = Batch.from_atoms(atoms, dtype=next(model.parameters()).dtype)
    expected = (evaluate(model, batch).energy.detach().double() / batch.n_atoms).numpy()
    np.testing.assert_allclose(energies_per_atom(model, atoms, batch_size=2), expected, rtol=0, atol=1e-9)


def test_members_are_dealt_to_rank_groups():
    assert member_groups(1, 3) == [[0, 1, 2]]              # one rank: in turn
    assert member_groups(2, 2) == [[0], [1]]               # one member per rank
    assert member_groups(5, 2) == [[0], [1]]               # two groups of ranks (3 + 2)
    assert member_groups(3, 4) == [[0, 3], [1], [2]]       # fewer ranks than members
    with pytest.raises(ValueError):
        committee_spread(np.zeros((1, 3)))


def test_committee_mean_is_the_members_mean(members):
    """CommitteeMean's energy and forces are the members' means; a mean of one model is it."""
    _, (first, second) = members
    models = [ACNN.load(first), ACNN.load(second)]
    batch = Batch.from_atoms(probes(), dtype=next(models[0].parameters()).dtype)
    results = [evaluate(m, batch) for m in models]
    mean = evaluate(CommitteeMean(models), batch)
    np.testing.assert_allclose(mean.energy.detach().numpy(),
                               (results[0].energy + results[1].energy).detach().numpy() / 2, rtol=1e-12)
    np.testing.assert_allclose(mean.forces.detach().numpy(),
                               (results[0].forces + results[1].forces).detach().numpy() / 2, atol=1e-6)
    assert abs(float(mean.energy[0] - results[0].energy[0])) > 1e-6  # the two members do differ
    alone = evaluate(CommitteeMean(models[:1]), batch)
    assert np.array_equal(alone.energy.detach().numpy(), results[0].energy.detach().numpy())
    with pytest.raises(ValueError):
        CommitteeMean([])
    other = ACNN.load(second)
    other = other.float() if next(other.parameters()).dtype == torch.float64 else other.double()
    with pytest.raises(ValueError, match="dtype/device"):
        CommitteeMean([models[0], other])


def test_eval_models_script_reports_members_and_their_mean(members, tmp_path, capsys):
    """scripts/eval_models.py: one row per model and one for the mean, whose squared errors are at
    most the members' average (the squared error is convex), and per-frame signed energy errors
    of the chosen group that are the model's energies minus the labels."""
    import re

    from ase.io import write

    eval_models = import_script("eval_models")
    _, (first, second) = members
    frames = emt_frames(6, seed=11)
    for k, atoms in enumerate(frames):
        atoms.info["group"] = "Slab" if k < 2 else "Bulk"
    write(tmp_path / "test.xyz", frames)
    assert eval_models.main([str(tmp_path / "test.xyz"), str(first), str(second), "--signed", "Slab"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(rows) == 3 and rows[2].startswith("| mean of 2 |")
    totals = [tuple(map(float, re.search(r"all ([0-9.]+) / ([0-9.]+)", r).groups())) for r in rows]
    for column in (0, 1):
        members_ms = (totals[0][column] ** 2 + totals[1][column] ** 2) / 2
        assert totals[2][column] ** 2 <= members_ms * (1 + 1e-3) + 1e-4
    signed = [float(x) for x in re.findall(r"([+-][0-9.]+) \(\d+\)", rows[0])]
    expected = 1000 * (energies_per_atom(ACNN.load(first), frames[:2])
                       - np.array([a.get_potential_energy() / len(a) for a in frames[:2]]))
    np.testing.assert_allclose(signed, expected, atol=0.051)
    assert eval_models.main([str(tmp_path / "missing.xyz"), str(first)]) == 2
    assert eval_models.main([str(tmp_path / "test.xyz"), str(tmp_path / "test.xyz")]) == 2
    assert "is not a model file" in capsys.readouterr().err
