"""GPU assignment on CPU: the pure rule (local rank → device) and its collective use under MPI."""

import pytest

from acnn_mpi.errors import UserError
from acnn_mpi.parallel.devices import assign_device
from tests.conftest import run_python


def devices(local_size, n_gpus, ranks_per_gpu=None, requested="auto"):
    return [assign_device(requested, r, local_size, n_gpus, ranks_per_gpu).device
            for r in range(local_size)]


def test_no_gpu_means_cpu_and_cuda_without_gpu_is_a_user_error():
    assert devices(4, 0) == ["cpu"] * 4
    assert devices(2, 4, requested="cpu") == ["cpu", "cpu"]
    with pytest.raises(UserError, match="model.device = cuda"):
        assign_device("cuda", 0, 1, 0)
    with pytest.raises(UserError, match="ranks_per_gpu"):
        assign_device("auto", 0, 1, 2, ranks_per_gpu=0)


def test_each_rank_its_own_gpu_round_robin():
    assert devices(4, 4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    # 8 ranks on 4 GPUs: two per GPU, interleaved
    assert devices(8, 4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"] * 2
    choice = assign_device("auto", 5, 8, 4)
    assert "2 rank(s) on this rank's GPU, 4 of 4 GPU(s) in use" in choice.reason


def test_neighbouring_ranks_share_a_gpu():
    assert devices(8, 4, ranks_per_gpu=2) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1",
                                              "cuda:2", "cuda:2", "cuda:3", "cuda:3"]
    # 4 ranks, 2 per GPU on a 4-GPU node: GPUs 2 and 3 stay free
    assert devices(4, 4, ranks_per_gpu=2) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    assert "2 of 4 GPU(s) in use" in assign_device("cuda", 3, 4, 4, 2).reason
    # more ranks than ranks_per_gpu × GPUs: wraps round, 4 ranks per GPU
    assert devices(16, 2, ranks_per_gpu=2)[:8] == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"] * 2
    assert "8 rank(s) on this rank's GPU" in assign_device("auto", 0, 16, 2, 2).reason


def test_one_visible_gpu_per_rank_is_cuda_0_everywhere():
    """srun --gpus-per-task=1 / CUDA_VISIBLE_DEVICES per rank: each sees one device, its own."""
    assert devices(4, 1) == ["cuda:0"] * 4


SELECT = """
import acnn_mpi.parallel.devices as devices
from acnn_mpi.parallel.comm import get_world
from acnn_mpi.parallel.logs import setup_logging
devices._cuda_count = lambda: {gpus}   # a node with GPUs, on CPU
comm = get_world()
setup_logging(comm.rank, comm.size)
device = devices.select_device("auto", comm, {ranks_per_gpu})
print("DEVICES", comm.gather(device), flush=True)
"""


@pytest.mark.mpi
@pytest.mark.parametrize("gpus, ranks_per_gpu, expected", [
    (2, None, "['cuda:0', 'cuda:1']"), (2, 2, "['cuda:0', 'cuda:0']"), (0, None, "['cpu', 'cpu']")])
def test_select_device_under_mpiexec_uses_the_node_layout(tmp_path, gpus, ranks_per_gpu, expected):
    script = tmp_path / "pick_device.py"
    script.write_text(SELECT.format(gpus=gpus, ranks_per_gpu=ranks_per_gpu))
    result = run_python([script], ranks=2, timeout=120, check=True)
    assert f"DEVICES {expected}" in result.stdout
    assert result.stderr.count("devices (model.device = auto)") == 1  # logged once, by the root
