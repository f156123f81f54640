"""Verlet lists of the relaxer: rebuilt, selected and carried lists hold every pair within the cutoff."""

import pytest
import torch

from acnn_mpi.neighbors import neighbor_list
from acnn_mpi.relax import optimizer as opt
from acnn_mpi.relax import verlet
from acnn_mpi.relax.evaluators import as_evaluator
from acnn_mpi.state import Batch
from tests.relax.helpers import lj, random_argon


def _pairs(edges, batch, cutoff):
    """{(i, j, shift)} of the edges shorter than ``cutoff``, and whether the centres are sorted."""
    vectors = edges.vectors(batch.positions, batch.cell, batch.system_idx)
    near = torch.linalg.norm(vectors, dim=1) < cutoff
    rows = torch.cat([edges.index.t(), edges.cell_shifts.round().long()], 1)[near].tolist()
    centre = edges.index[0]
    return set(map(tuple, rows)), bool((centre[1:] >= centre[:-1]).all())


def test_rebuild_and_select_give_the_pairs_of_fresh_lists():
    batch = Batch.from_atoms(random_argon(5, seed=3))
    cutoff = 6.0
    edges = neighbor_list(batch, cutoff)
    moved = batch.with_geometry(batch.positions + 0.3 * torch.randn_like(batch.positions), batch.cell * 1.02)
    stale = torch.tensor([True, False, True, True, False])
    rebuilt = verlet.rebuild(moved, edges, stale, cutoff)
    fresh, sorted_ok = _pairs(rebuilt, moved, float("inf"))
    assert sorted_ok
    expected_stale, _ = _pairs(neighbor_list(moved, cutoff), moved, float("inf"))
    expected_kept, _ = _pairs(edges, moved, float("inf"))
    owner = moved.system_idx
    want = {p for p in expected_stale if bool(stale[owner[p[0]]])} | \
           {p for p in expected_kept if not bool(stale[owner[p[0]]])}
    assert fresh == want
    keep = [0, 3]
    mask = torch.isin(batch.system_idx, torch.tensor(keep))
    selected, sorted_ok = _pairs(verlet.select_edges(edges, mask), batch.select(keep), cutoff)
    assert sorted_ok
    assert selected == _pairs(neighbor_list(batch.select(keep), cutoff), batch.select(keep), cutoff)[0]


def test_lists_stay_complete_along_a_relaxation(monkeypatch):
    """At every step the carried list (skin 1 Å) has every pair a fresh list has within the cutoff,
    and the evaluation equals one on the fresh list."""
    model = lj()
    evaluator = as_evaluator(model)
    batch = Batch.from_atoms(random_argon(4, seed=5))
    state = opt.init(batch, 0.002, skin=1.0)
    stale_masks = []
    rebuild = verlet.rebuild
    monkeypatch.setattr(verlet, "rebuild", lambda b, e, stale, c: stale_masks.append(stale.tolist()) or
                        rebuild(b, e, stale, c))
    for _ in range(25):
        trial = state.trial_batch()
        state, info = opt.step(state, evaluator)
        assert _pairs(state.edges, trial, model.cutoff)[0] == _pairs(neighbor_list(trial, model.cutoff), trial,
                                                                      model.cutoff)[0]
        reference = evaluator(trial)
        assert torch.allclose(info.evaluation.energy, reference.energy, rtol=0, atol=1e-10)
        assert torch.allclose(info.evaluation.forces, reference.forces, rtol=0, atol=1e-10)
        assert torch.allclose(info.evaluation.stress, reference.stress, rtol=0, atol=1e-12)
    assert any(0 < sum(mask) < len(mask) for mask in stale_masks)  # some lists kept, some rebuilt
    kept = state.select([1, 3])
    trial = kept.trial_batch()
    assert _pairs(kept.edges, trial, float("inf"))[0] >= _pairs(neighbor_list(trial, model.cutoff), trial,
                                                                model.cutoff)[0]


def _skin_evaluation_matches_fresh_list():
    from acnn_mpi.model.forces import evaluate

    model = lj()
    batch = Batch.from_atoms(random_argon(3, seed=8))
    verlet_edges = neighbor_list(batch, model.cutoff + 1.5)  # pairs in the skin are dropped
    pruned = evaluate(model, batch, edges=verlet_edges, prune_edges=True)
    fresh = evaluate(model, batch)
    assert torch.allclose(pruned.energy, fresh.energy, rtol=0, atol=1e-10)
    assert torch.allclose(pruned.forces, fresh.forces, rtol=0, atol=1e-10)
    assert torch.allclose(pruned.stress, fresh.stress, rtol=0, atol=1e-12)
    assert float(fresh.forces.abs().max()) > 1e-3 and float(fresh.stress.abs().max()) > 1e-5


def test_evaluation_on_a_verlet_list_equals_a_fresh_list():
    _skin_evaluation_matches_fresh_list()


@pytest.mark.slow
def test_cpp_edge_helpers_equal_the_torch_path():
    """The one-pass C++ edge helpers (model.compile: cpp, float64 here; built on first use)."""
    from acnn_mpi.model import kernels

    if not kernels.use_cpp_kernels(True):
        pytest.skip("the C++ kernels cannot be built here (no compiler)")
    try:
        assert kernels.edge_helpers() is not None
        _skin_evaluation_matches_fresh_list()
    finally:
        kernels.use_cpp_kernels(False)
