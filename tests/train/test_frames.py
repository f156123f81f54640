"""Minibatches from cached neighbour lists equal those built from scratch."""

import pytest
import torch

from acnn_mpi.neighbors import neighbor_list
from acnn_mpi.train.frames import FrameBatcher, load_frames
from tests.train.helpers import emt_frames


@pytest.mark.parametrize("max_cached_edges", [0, 10 ** 9])
def test_batch_edges_equal_a_fresh_neighbour_list(max_cached_edges):
    frames = load_frames(emt_frames(5, seed=2))
    batcher = FrameBatcher(frames, 4.5, max_cached_edges=max_cached_edges)
    for chosen in ([3, 0, 4], [0, 3], [1]):
        batch, edges, targets = batcher.batch(chosen)
        fresh = neighbor_list(batch, 4.5)
        assert torch.equal(edges.index, fresh.index)
        assert torch.equal(edges.cell_shifts, fresh.cell_shifts)
        assert targets.energy.tolist() == [frames[i].energy for i in chosen]
        volume = abs(torch.linalg.det(torch.tensor(frames[chosen[0]].cell)))
        assert torch.allclose(targets.virial[0], -volume * torch.tensor(frames[chosen[0]].stress))
