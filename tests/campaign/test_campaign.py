"""The self-optimizing campaign end to end under `mpiexec -n 2`: it finishes, it recovers the known
phases of the demo system, and it resumes after kill -9 or a scheduler's signal with the same result."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import MPIEXEC, REPO, run_python

pytestmark = pytest.mark.mpi
TINY = Path(__file__).with_name("tiny.yaml")


def campaign(directory, config=TINY, ranks=2, timeout=600):
    return run_python(["-m", "acnn_mpi", "run", config, "--output-dir", directory], ranks=ranks,
                      timeout=timeout)


def final_hull(directory):
    """The final hull without the store row of each structure (labels are stored in the order
    calculations finish, which differs between runs; structure ids and energies do not)."""
    hull = json.loads((Path(directory) / "final" / "hull.json").read_text())
    return {key: [{k: v for k, v in entry.items() if k != "frame"} for entry in entries]
            for key, entries in hull.items()}


def start_campaign(directory, config=TINY):
    command = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "acnn_mpi", "run", str(config),
               "--output-dir", str(directory)]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for_stage(directory, iteration, stage, process, timeout=300):
    """Block until state.json says (iteration, stage) is next, or the run ended."""
    state = Path(directory) / "state.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if state.exists():
            try:
                data = json.loads(state.read_text())
            except json.JSONDecodeError:
                data = {}
            if (data.get("iteration"), data.get("stage")) >= (iteration, stage) or data.get("converged"):
                return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    directory = tmp_path_factory.mktemp("reference")
    result = campaign(directory)
    assert result.returncode == 0, result.stdout + result.stderr
    return directory


def test_tiny_campaign_finishes(reference):
    state = json.loads((reference / "state.json").read_text())
    assert state["final_done"] and state["iteration"] == 3
    assert [r["iteration"] for r in state["history"]] == [0, 1, 2]
    for record in state["history"][1:]:
        assert record["structures_relaxed"] > 0 and record["labelled"] > 0
        assert "energy_rmse" in record["validation"]  # learning curve: model k-1 on labels of k
    for k in range(3):
        assert (reference / f"iter_{k:03d}" / "hull.csv").exists()
        assert (reference / "models" / f"model_{k:03d}.pt").exists()
    hull = final_hull(reference)
    formulas = {p["formula"] for p in hull["stable"]}
    assert {"Cu", "Pt"} <= formulas


SLOW = pytest.mark.slow


@pytest.mark.parametrize("iteration, stage", [
    (1, "csp"),
    pytest.param(0, "label", marks=SLOW), pytest.param(0, "train", marks=SLOW),
    pytest.param(1, "process", marks=SLOW), pytest.param(1, "label", marks=SLOW),
    pytest.param(2, "train", marks=SLOW), pytest.param(3, "csp", marks=SLOW),  # 3/csp: final stage
])
def test_kill_and_resume_gives_the_same_result(reference, tmp_path, iteration, stage):
    """kill -9 the whole job once the given stage is the next to run, then rerun the command."""
    process = start_campaign(tmp_path)
    reached = wait_for_stage(tmp_path, iteration, stage, process)
    time.sleep(1.0)  # into the stage
    assert reached, "the campaign ended before the stage to kill in"
    import os

    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    result = campaign(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert final_hull(tmp_path) == final_hull(reference)


def test_sigterm_stops_cleanly_then_resumes(reference, tmp_path):
    process = start_campaign(tmp_path)
    assert wait_for_stage(tmp_path, 1, "csp", process)
    import os

    os.killpg(process.pid, signal.SIGTERM)  # what a scheduler sends before the walltime
    start = time.monotonic()
    output, _ = process.communicate(timeout=120)
    assert time.monotonic() - start < 60
    assert process.returncode == 3, output.decode()[-2000:]
    assert b"run the same command to resume" in output
    result = campaign(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert final_hull(tmp_path) == final_hull(reference)


# -- real-DFT behaviour: any energy zero, elements without labels, failed final relaxations --------

def stable_phases(directory):
    return {p["formula"]: p["formation_enthalpy_meV"] for p in final_hull(directory)["stable"]}


def test_shifted_labels_give_the_same_hull(reference, tmp_path):
    """Labels with a DFT-like energy zero (hundreds of eV per atom, of both signs, different per
    element) give the same campaign: same phases, formation enthalpies within 1 meV/atom."""
    from tests.campaign.shifted_labeller import shifted_campaign

    config = shifted_campaign(TINY, tmp_path / "shifted.yaml")
    result = campaign(tmp_path / "run", config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    plain, shifted = stable_phases(reference), stable_phases(tmp_path / "run")
    assert set(shifted) == set(plain) and len(plain) >= 3, (plain, shifted)
    for formula, value in plain.items():
        assert abs(shifted[formula] - value) < 1.0, (formula, value, shifted[formula])
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert sum(r["unphysical"] for r in state["history"]) < sum(r["structures_relaxed"]
                                                               for r in state["history"]) / 2


def test_every_final_relaxation_failing_finishes_with_the_single_point_hull(reference, tmp_path):
    """The final stage is redone with relaxations that all fail (a time limit no relaxation
    meets): the campaign says so and finishes with the labels' hull, and a rerun is a no-op."""
    import shutil

    import yaml

    run = tmp_path / "run"
    shutil.copytree(reference, run, ignore=shutil.ignore_patterns("final", "report"))
    state = json.loads((run / "state.json").read_text())
    state.update(final_done=False, final_relaxed=0, final_failed=0, final_evaluations=0)
    (run / "state.json").write_text(json.dumps(state))
    data = yaml.safe_load(TINY.read_text())
    data["labeller"] = dict(data["labeller"], relax_timeout=1e-6, retries=0)
    config = tmp_path / "failing.yaml"
    config.write_text(yaml.safe_dump(data))
    for attempt in range(2):
        result = campaign(run, config=config)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "the final hull is the single-point hull" in (run / "campaign.log").read_text()
    state = json.loads((run / "state.json").read_text())
    assert state["final_done"] and state["final_relaxed"] == 0 and state["final_failed"] >= 3
    assert state["final_hull_source"].startswith("single points")
    hull = final_hull(run)
    assert {p["source"] for p in hull["stable"]} == {"single point"}
    last = json.loads((run / "iter_002" / "hull.json").read_text())["stable"]
    assert stable_phases(run) == {p["formula"]: p["formation_enthalpy_meV"] for p in last}
    from acnn_mpi.campaign.report import write_report

    text = write_report(run).markdown.read_text()
    assert "Hull from single points (every final relaxation failed)." in text
    # every CIF (stable phases, candidates) is read from labels.h5, none from the empty relaxations
    assert text.count("(structures/single_point/") >= len(last) and "(structures/0" not in text


def test_report_counts_every_labeller_evaluation(reference, tmp_path):
    from acnn_mpi.campaign.report import write_report

    state = json.loads((reference / "state.json").read_text())
    single = sum(r["label_evaluations"] for r in state["history"])
    labelled = sum(r["labelled"] + r["label_failures"] for r in state["history"])
    assert single >= labelled > 0
    # each final relaxation takes several ionic steps, each one labeller evaluation
    assert state["final_evaluations"] > 2 * state["final_relaxed"] >= 2 * 3
    assert sum(r["label_core_seconds"] for r in state["history"]) > 0
    files = write_report(reference, out=tmp_path / "report")
    text = files.markdown.read_text()
    total = single + state["final_evaluations"]
    assert (f"labeller evaluations: {total:,} = {single:,} single points (failed attempts included) "
            f"+ {state['final_evaluations']:,} ionic steps of {state['final_relaxed']} final "
            "relaxations") in text
    steps = sum(r["structures_relaxed"] * (r["relax_steps_mean"] + 1) for r in state["history"])
    assert f"speed-up in labeller evaluations: {steps / total:.0f}×" in text


def test_elements_outside_the_space_and_failed_element_labels(tmp_path):
    """A binary-only search (include_subsystems: false) whose Pt labels all fail in iteration 0:
    Cu and Pt are sampled anyway, the iteration-0 hull covers Cu alone, Pt is labelled again in
    iteration 1, and the campaign finishes with both corners of the hull."""
    import yaml

    from acnn_mpi.campaign.plan import ITERATION_STRIDE
    from tests.campaign.shifted_labeller import CALCULATOR

    data = yaml.safe_load(TINY.read_text())
    data["compositions"]["include_subsystems"] = False
    data["search"]["max_iterations"] = 1
    data["labeller"] = {"kind": "ase", "calculator": CALCULATOR, "retries": 0,
                        "parameters": {"fail_pure_below": {"Pt": ITERATION_STRIDE}}}
    config = tmp_path / "binary.yaml"
    config.write_text(yaml.safe_dump(data))
    result = campaign(tmp_path / "run", config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert [r["missing_elements"] for r in state["history"]] == [["Pt"], []]
    assert state["history"][0]["label_failures"] >= 3  # Pt's share: 16 structures, 7 compositions
    assert {p["formula"] for p in state["history"][0]["hull"]} == {"Cu"}
    phases = stable_phases(tmp_path / "run")
    # both corners (whether a compound is found in one 16-structure iteration is chance)
    assert {"Cu", "Pt"} <= set(phases) and all(v <= 0 for v in phases.values())


def test_report_links_the_symmetrised_stable_phases(reference, tmp_path):
    """The report of a finished campaign gives each stable phase of the final hull its space group
    and links to its symmetrised conventional cell as CIF (space group, operations, Wyckoff
    sites) and POSCAR; both files hold that space group."""
    import re

    import ase.io
    from ase.formula import Formula

    from acnn_mpi.campaign.report import write_report
    from acnn_mpi.csp.symmetry import space_group

    def reduced(formula: str) -> dict:
        return Formula(formula).reduce()[0].count()

    files = write_report(reference, out=tmp_path / "report")
    text = files.markdown.read_text()
    table = text.split("## Stable phases", 1)[1].split("## ", 1)[0]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    stable = final_hull(reference)["stable"]
    assert len(stable) >= 3
    page = files.html.read_text()
    for phase in stable:
        row = rows[phase["formula"]]
        group = row.split("|")[2].strip()
        links = dict(re.findall(r"\[(cif|poscar)\]\(([^)]+)\)", row))
        assert set(links) == {"cif", "poscar"}, row
        for kind, link in links.items():
            atoms = ase.io.read(tmp_path / "report" / link)
            assert reduced(atoms.get_chemical_formula()) == reduced(phase["formula"]), (link, phase)
            symbol, number = space_group(atoms, 1e-3)  # the idealised cell: symmetric at any tolerance
            assert group == f"{symbol} ({number})", (phase["formula"], kind, group, symbol, number)
            assert f'href="{link}"' in page
        cif = (tmp_path / "report" / links["cif"]).read_text()
        assert f"_symmetry_Int_Tables_number      {number}" in cif and "_atom_site_Wyckoff_symbol" in cif
        meta = json.loads((tmp_path / "report" / links["cif"]).with_suffix(".json").read_text())
        assert meta["space_group_number"] == number and meta["stable"] and meta["wyckoff_sites"]
