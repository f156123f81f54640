"""Threads per rank from the node layout: the ranks that may run on the same cores split them."""

import pytest

from acnn_mpi.parallel.nodes import cpu_share
from acnn_mpi.parallel.threads import choose_threads


def test_ranks_bound_to_their_own_cores_use_them_all():
    node = [{0, 1, 2, 3}, {4, 5, 6, 7}]  # srun --cpus-per-task=4 --cpu-bind=cores
    assert [cpu_share(cpus, node) for cpus in node] == [4, 4]
    one_each = [{c} for c in range(192)]
    assert cpu_share({7}, one_each) == 1


def test_unbound_ranks_split_the_node():
    everything = set(range(192))
    assert cpu_share(everything, [everything] * 192) == 1
    assert cpu_share(everything, [everything] * 4) == 48      # 4 ranks on a 192-core GPU node
    assert cpu_share({0, 1}, [{0, 1}] * 8) == 1                 # oversubscribed: never 0
    # a 64-core cgroup of a 128-core node shared by 16 unbound ranks: 4 each, not 64
    cgroup = set(range(64))
    assert cpu_share(cgroup, [cgroup] * 16) == 4


def test_choose_threads_prefers_the_request():
    assert choose_threads(None, 48) == 48
    assert choose_threads(3, 48) == 3
    with pytest.raises(ValueError):
        choose_threads(0, 4)
