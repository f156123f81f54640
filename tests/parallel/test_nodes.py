"""Node layout from a shared-memory split: serial and under mpiexec (one node here)."""

import json

from acnn_mpi.parallel.comm import Comm
from acnn_mpi.parallel.nodes import node_layout
from tests.conftest import run_python


def test_serial_layout_is_one_rank_on_one_node():
    layout = node_layout(Comm(None))
    assert (layout.node, layout.n_nodes, layout.local_rank, layout.local_size) == (0, 1, 0, 1)
    assert layout.node_sizes == (1,)


def test_two_ranks_share_this_node(tmp_path):
    script = tmp_path / "layout.py"
    script.write_text(
        "import json\n"
        "from acnn_mpi.parallel.comm import get_world\n"
        "from acnn_mpi.parallel.nodes import node_layout\n"
        "comm = get_world()\n"
        "l = node_layout(comm)\n"
        "rows = comm.gather([comm.rank, l.node, l.n_nodes, l.local_rank, l.local_size, list(l.node_sizes)])\n"
        "if comm.is_root:\n"
        "    print('LAYOUT ' + json.dumps(rows), flush=True)\n")
    result = run_python([script], ranks=2, timeout=120, check=True)
    [line] = [line for line in result.stdout.splitlines() if line.startswith("LAYOUT ")]
    rows = json.loads(line[7:])
    assert rows == [[0, 0, 1, 0, 2, [2]], [1, 0, 1, 1, 2, [2]]], result.stdout + result.stderr
