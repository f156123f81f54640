"""The DFT job layout: how many external calculations run at once and with how many cores.

Pure planning from the node of every rank, then a fake DFT code under ``mpiexec`` that records how
many copies of itself run at once and the ``{cores}`` it was given."""

import json
import sys

import pytest

from acnn_mpi.label.layout import JobSlot, fill_template, plan_jobs
from acnn_mpi.label.settings import settings_from_dict

from tests.label.test_label_cli import write_structures

PY = sys.executable


def plan(rank_nodes, root_works=False, **settings):
    return plan_jobs(rank_nodes, settings_from_dict({"kind": "command", "command": "x",
                                                     "input_format": "extxyz", **settings}),
                     root_works=root_works)


def test_default_is_one_job_per_node_with_all_its_cores():
    # 192 ranks on 3 nodes of 64: 3 jobs of 64 cores, not 191 jobs
    layout = plan([n for n in range(3) for _ in range(64)])
    assert layout.slots == {1: JobSlot(64, 1, 0), 64: JobSlot(64, 1, 1), 128: JobSlot(64, 1, 2)}
    assert not layout.notes


def test_jobs_per_node_cores_per_job_and_a_cap():
    nodes = [n for n in range(2) for _ in range(8)]
    assert sorted(plan(nodes, jobs_per_node=4).slots.values(), key=lambda s: s.node) == \
        [JobSlot(2, 1, 0)] * 4 + [JobSlot(2, 1, 1)] * 4
    by_cores = plan(nodes, cores_per_job=4)            # 8 cores / 4 = 2 jobs per node
    assert sorted(by_cores.slots) == [1, 2, 8, 9] and {s.cores for s in by_cores.slots.values()} == {4}
    capped = plan(nodes, jobs_per_node=4, max_jobs=3)   # the cap spreads over the nodes
    assert sorted(s.node for s in capped.slots.values()) == [0, 0, 1]
    assert set(plan(nodes, cores_per_node=32, jobs_per_node=2).slots.values()) == {
        JobSlot(16, 1, 0), JobSlot(16, 1, 1)}


def test_multi_node_jobs_and_leftover_nodes():
    nodes = [n for n in range(5) for _ in range(4)]
    layout = plan(nodes, nodes_per_job=2)
    assert layout.slots == {1: JobSlot(8, 2, 0), 8: JobSlot(8, 2, 2)}
    assert any("1 node(s) left idle" in note for note in layout.notes)


def test_root_deals_unless_it_is_alone_or_asked_to_work():
    assert plan([0]).slots == {0: JobSlot(1, 1, 0)}                  # serial: the root runs it
    assert plan([0, 0]).slots == {1: JobSlot(2, 1, 0)}               # mpiexec -n 2: rank 1, 2 cores
    assert plan([0, 0], root_works=True).slots == {0: JobSlot(2, 1, 0)}
    short = plan([0, 0], jobs_per_node=2)                            # one rank short on node 0
    assert short.slots == {1: JobSlot(1, 1, 0)} and "start more ranks" in short.notes[0]
    assert plan([0, 1]).slots == {1: JobSlot(1, 1, 1)}               # node 0 has only the root


def test_placeholders_filled_and_shell_variables_left_alone():
    text = JobSlot(16, 2).fill("srun -N {nodes} -n {cores} pw.x -nk ${NK} -in {input} {x}", input="a")
    assert text == "srun -N 2 -n 16 pw.x -nk ${NK} -in a {x}"
    assert fill_template("{cores}") == "{cores}"


def test_layout_settings_validated():
    from acnn_mpi.errors import UserError

    for bad, match in [({"cores_per_job": 0}, "cores_per_job = 0: must be >= 1"),
                       ({"nodes_per_job": 2, "jobs_per_node": 2}, "jobs_per_node = 2: must be 1"),
                       ({"relax_driver": "vasp"}, "relax_driver = 'vasp': must be one of")]:
        with pytest.raises(UserError, match=match):
            settings_from_dict({"kind": "ase", "calculator": "ase.calculators.emt.EMT", **bad})


#: Fake DFT code: marks itself running, records how many copies run and its core count, labels
#: with EMT after a short sleep.
FAKE_DFT = r'''
import json, os, sys, time
from ase.io import read, write
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
cores, record_dir = sys.argv[3], sys.argv[4]
running = os.path.join(record_dir, "running")
os.makedirs(running, exist_ok=True)
mark = os.path.join(running, str(os.getpid()))
open(mark, "w").close()
seen = []
for _ in range(6):
    seen.append(len(os.listdir(running)))
    time.sleep(0.05)
os.remove(mark)
with open(os.path.join(record_dir, f"run-{os.getpid()}.json"), "w") as f:
    json.dump({"cores": int(cores), "threads": os.environ.get("OMP_NUM_THREADS"),
               "concurrent": max(seen)}, f)
atoms = read(sys.argv[1], format="extxyz")
atoms.calc = EMT()
atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(),
                                   forces=atoms.get_forces(), stress=atoms.get_stress())
write(sys.argv[2], atoms, format="extxyz")
'''


def run_fake_campaign(acnn, tmp_path, ranks, layout_lines):
    (tmp_path / "fake_dft.py").write_text(FAKE_DFT)
    records = tmp_path / "records"
    records.mkdir()
    config = tmp_path / "campaign.yaml"
    config.write_text(
        "elements: [Cu, Au]\nlabeller:\n  kind: command\n"
        f"  command: '{PY} {tmp_path / 'fake_dft.py'} {{input}} {{output}} {{cores}} {records}'\n"
        "  input_format: extxyz\n  timeout: 60\n  env: {OMP_NUM_THREADS: '{cores}'}\n"
        + "".join(f"  {line}\n" for line in layout_lines))
    write_structures(tmp_path / "in.xyz", 6)
    result = acnn(["label", "--input", str(tmp_path / "in.xyz"), "--out", str(tmp_path / "l.h5"),
                   "--config", str(config)], ranks=ranks, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "labelled 6, failed 0 of 6" in result.stdout
    runs = [json.loads(p.read_text()) for p in records.glob("run-*.json")]
    assert len(runs) == 6
    summary = json.loads((tmp_path / "l.summary.json").read_text())
    return runs, summary


@pytest.mark.mpi
def test_two_ranks_run_one_job_on_both_cores(acnn, tmp_path):
    runs, summary = run_fake_campaign(acnn, tmp_path, 2, [])
    assert {r["cores"] for r in runs} == {2} and {r["threads"] for r in runs} == {"2"}
    assert max(r["concurrent"] for r in runs) == 1
    assert summary["evaluations"] == 6
    assert summary["core_seconds"] == pytest.approx(2 * sum(summary["seconds"]), abs=0.01)


@pytest.mark.mpi
def test_four_ranks_two_jobs_of_two_cores(acnn, tmp_path):
    # oversubscribed on this machine; rank 3 has no job and sleeps
    runs, summary = run_fake_campaign(acnn, tmp_path, 4, ["cores_per_job: 2"])
    assert {r["cores"] for r in runs} == {2}
    assert max(r["concurrent"] for r in runs) == 2
    assert set(summary["per_rank"]) == {"1", "2"}
