"""A campaign over two pressures (tiny Cu-Pt under EMT at 0 and 10 GPa, one iteration after the
initial sampling) under `mpiexec -n 2`: one label store and one model, a hull per pressure built
from H = E + PV of the same labels, final relaxations at each pressure, the enthalpy-pressure
plot, `export` records per (structure, pressure), and a kill -9 between the pressures' CSP
relaxations resumes to the same result."""

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.campaign.test_campaign import start_campaign
from tests.conftest import run_python

pytestmark = pytest.mark.mpi
TINY = Path(__file__).with_name("tiny.yaml")
PRESSURES = (0.0, 10.0)
EV_PER_A3_PER_GPA = 1 / 160.21766208   # 1 GPa in eV/Å³


def two_pressure_config(path: Path) -> Path:
    data = yaml.safe_load(TINY.read_text())
    data["pressure"] = list(PRESSURES)
    data["search"]["max_iterations"] = 1
    path.write_text(yaml.safe_dump(data))
    return path


def run(config, directory):
    result = run_python(["-m", "acnn_mpi", "run", config, "--output-dir", directory], ranks=2, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def hulls(directory) -> dict:
    """{pressure: final hull} without the store rows (they follow the order labels finish in)."""
    out = {}
    for p in PRESSURES:
        hull = json.loads((Path(directory) / "final" / f"P{p:g}" / "hull.json").read_text())
        out[p] = {key: [{k: v for k, v in e.items() if k != "frame"} for e in entries]
                  for key, entries in hull.items()}
    return out


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pressures")
    config = two_pressure_config(directory / "two.yaml")
    run(config, directory / "run")
    return config, directory / "run"


def labels(directory):
    from acnn_mpi.data.store import FrameStore

    with FrameStore(directory / "labels.h5", mode="r") as store:
        arrays = store.read_arrays()
    return arrays, np.abs(np.linalg.det(arrays.cell))


def test_one_potential_a_hull_and_a_relaxation_directory_per_pressure(campaign):
    from acnn_mpi.config import load_config
    from acnn_mpi.relax.shards import read_results, read_settings

    _, run_dir = campaign
    state = json.loads((run_dir / "state.json").read_text())
    assert state["final_done"] and state["pressures_gpa"] == list(PRESSURES)
    assert sorted(p.name for p in (run_dir / "models").glob("*.pt")) == ["model_000.pt", "model_001.pt"]
    record = state["history"][1]
    assert set(record["hulls"]) == {"0", "10"} and set(state["stable_streaks"]) == {"0", "10"}
    for p in PRESSURES:
        relax = run_dir / "iter_001" / "relax" / f"P{p:g}"
        assert read_settings(relax)["pressure_gpa"] == p
        done = read_results(relax)
        assert done.pressure_gpa == p and len(done) == 16   # structures_per_iteration at each pressure
        assert record["by_pressure"][f"{p:g}"]["structures_relaxed"] == 16
        for k in (0, 1):
            assert (run_dir / f"iter_{k:03d}" / f"P{p:g}" / "hull.json").exists()
        assert (run_dir / "final" / f"P{p:g}" / "hull.json").exists()
    ids = [set(read_results(run_dir / "iter_001" / "relax" / f"P{p:g}").structure_id.tolist()) for p in PRESSURES]
    assert not ids[0] & ids[1]  # each pressure relaxes structures of its own, labelled in one store
    arrays, _ = labels(run_dir)
    picks = [set(json.loads((run_dir / "iter_001" / f"P{p:g}" / "selection.json").read_text())["ids"])
             for p in PRESSURES]
    assert picks[0] and picks[1] and (picks[0] | picks[1]) <= set(arrays.structure_id.tolist())
    config = load_config(run_dir / "campaign.resolved.yaml")
    assert config.pressures_gpa == list(PRESSURES)
    rows = (run_dir / "final" / "enthalpy_vs_pressure.csv").read_text().splitlines()
    assert rows[0].startswith("formula,pressure_gpa,formation_enthalpy_meV")
    assert (run_dir / "final" / "enthalpy_vs_pressure.png").stat().st_size > 10_000
    compounds = {p["formula"] for hull in hulls(run_dir).values() for p in hull["stable"]} - {"Cu", "Pt"}
    assert {r.split(",")[0] for r in rows[1:]} == compounds and len(rows) - 1 == 2 * len(compounds)


def test_label_hull_at_each_pressure_is_e_plus_pv_of_the_same_frames(campaign):
    """Every stable phase's formation enthalpy, recomputed by hand from labels.h5 with
    H = E + P·V (P in eV/Å³) against the stable elements at that pressure; and the best structure
    of each composition is no less dense at the higher pressure (the same frames: H is linear in
    P with slope V, so the minimum can only move to smaller volumes)."""
    _, run_dir = campaign
    arrays, volume = labels(run_dir)
    elements = ["Cu", "Pt"]
    best_volume = {}
    for p in PRESSURES:
        hull = json.loads((run_dir / "iter_001" / f"P{p:g}" / "hull.json").read_text())
        enthalpy = arrays.energy + p * EV_PER_A3_PER_GPA * volume
        n = arrays.n_atoms
        corners = {e["formula"]: enthalpy[e["frame"]] / n[e["frame"]] for e in hull["stable"] if e["formula"] in elements}
        assert set(corners) == set(elements)
        for entry in hull["stable"]:
            f = entry["frame"]
            symbols = arrays.numbers[arrays.offsets[f]:arrays.offsets[f + 1]]
            x_pt = float(np.mean(symbols == 78))
            by_hand = enthalpy[f] / n[f] - ((1 - x_pt) * corners["Cu"] + x_pt * corners["Pt"])
            assert entry["formation_enthalpy_meV"] == pytest.approx(1000 * by_hand, abs=2e-3)
        best_volume[p] = {e["formula"]: volume[e["frame"]] / n[e["frame"]] for e in hull["compositions"]}
    low, high = best_volume[PRESSURES[0]], best_volume[PRESSURES[1]]
    assert set(low) == set(high) and len(low) >= 5
    for formula in low:
        assert high[formula] <= low[formula] + 1e-9, (formula, low[formula], high[formula])


def test_final_relaxations_at_the_higher_pressure_are_compressed(campaign):
    from acnn_mpi.data.store import FrameStore

    _, run_dir = campaign
    final = {}
    for p in PRESSURES:
        with FrameStore(run_dir / "final" / f"P{p:g}" / "relaxed.h5", mode="r") as store:
            frames = store.read(list(range(len(store))))
        final[p] = {int(a.info["structure_id"]): a for a in frames}
        for atoms in frames:  # relaxed to the target pressure: -tr(σ)/3 = P
            measured = -np.trace(atoms.get_stress(voigt=False)) / 3 / EV_PER_A3_PER_GPA
            assert measured == pytest.approx(p, abs=1.0)
    both = set(final[PRESSURES[0]]) & set(final[PRESSURES[1]])
    assert both
    for sid in both:
        v0 = final[PRESSURES[0]][sid].get_volume() / len(final[PRESSURES[0]][sid])
        v1 = final[PRESSURES[1]][sid].get_volume() / len(final[PRESSURES[1]][sid])
        assert v1 < 0.99 * v0, (sid, v0, v1)


def test_export_gives_a_record_per_structure_and_pressure(campaign, acnn, tmp_path):
    from ase.db import connect

    _, run_dir = campaign
    out = acnn(["export", run_dir, "--format", "ase-db", "-o", tmp_path / "all.db", "--no-space-groups"])
    assert out.returncode == 0, out.stderr
    assert "at 0, 10 GPa" in out.stdout
    db = connect(tmp_path / "all.db")
    arrays, volume = labels(run_dir)
    assert db.count(kind="label") == 2 * len(arrays)
    for p in PRESSURES:
        assert db.count(kind="relaxed", pressure_gpa=p) == 16
    sid, frame = int(arrays.structure_id[3]), 3
    rows = {r.pressure_gpa: r for r in db.select(kind="label", structure_id=sid)}
    assert set(rows) == set(PRESSURES)
    assert rows[10.0].enthalpy - rows[0.0].enthalpy == pytest.approx(10 * EV_PER_A3_PER_GPA * volume[frame])
    finals = list(db.select(kind="final", pressure_gpa=10.0))
    assert finals and all(r.e_hull >= -1e-9 for r in finals)


def test_report_has_a_hull_per_pressure_and_the_pressure_plot(campaign, tmp_path):
    from acnn_mpi.campaign.report import write_report

    _, run_dir = campaign
    files = write_report(run_dir, out=tmp_path / "report")
    text = files.markdown.read_text()
    for p in PRESSURES:
        assert f"## Stable phases at {p:g} GPa" in text
        assert f"(structures/P{p:g}/" in text and f"Hull at {p:g} GPa from " in text
    assert "![enthalpy_vs_pressure](enthalpy_vs_pressure.png)" in text
    assert "| 1 | 10 | 16 |" in text   # the CSP per pressure table


def kill_when(path: Path, process, timeout=300) -> None:
    """kill -9 the whole job as soon as ``path`` exists."""
    deadline = time.monotonic() + timeout
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, f"the campaign ended before {path} was written"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def test_kill_between_pressures_resumes_to_the_same_result(campaign, tmp_path):
    """kill -9 once the second pressure's CSP relaxations have begun, then rerun the command."""
    config, reference = campaign
    kill_when(tmp_path / "iter_001" / "relax" / f"P{PRESSURES[1]:g}" / "shards",
              start_campaign(tmp_path, config=config))
    state = json.loads((tmp_path / "state.json").read_text())
    assert (state["iteration"], state["stage"]) == (1, "csp")
    run(config, tmp_path)
    assert hulls(tmp_path) == hulls(reference)
    assert (tmp_path / "final" / "enthalpy_vs_pressure.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("marker", [
    "iter_001/P10/selection.json",     # Process: the second pressure's selection written
    "final/P10/relaxed.h5",            # Final: the second pressure's labeller relaxations begun
])
def test_kill_in_other_stages_between_pressures(campaign, tmp_path, marker):
    config, reference = campaign
    kill_when(tmp_path / marker, start_campaign(tmp_path, config=config))
    run(config, tmp_path)
    assert hulls(tmp_path) == hulls(reference)
