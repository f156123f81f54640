"""The demo campaign (inputs/demo.yaml, Cu-Pt under EMT) recovers the ordered phases that are
stable under EMT: L1_2 Cu3Pt, L1_0 CuPt and CuPt3, checked against the same phases built by hand.

It runs with DFT-like labels (EMT plus −1480.25 eV per Cu and +362.5 eV per Pt atom,
tests/campaign/shifted_labeller.py), the energy zero of a real DFT code, and is checked against
plain EMT's formation enthalpies: the campaign must not depend on the labeller's energy zero
(test_campaign.py shows the same campaign with and without the shift gives the same hull). Its
learning curve (model n−1 on the labels of iteration n) falls to 30 meV/atom or below."""

import json

import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

from tests.campaign.shifted_labeller import shifted_campaign
from tests.conftest import REPO, run_python

pytestmark = pytest.mark.mpi


def relaxed_energy_per_atom(atoms):
    atoms.calc = EMT()
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-4, steps=500)
    return atoms.get_potential_energy() / len(atoms)


def l12(minority, majority, a):
    return Atoms([minority] + [majority] * 3, cell=[a] * 3, pbc=True,
                 scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def hand_built_formation_enthalpies():
    """meV/atom under EMT at 0 GPa, relaxed by ASE."""
    cu = relaxed_energy_per_atom(bulk("Cu", "fcc", a=3.6))
    pt = relaxed_energy_per_atom(bulk("Pt", "fcc", a=3.92))
    l10 = Atoms(["Cu", "Pt"], cell=[2.75, 2.75, 3.8], pbc=True, scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]])
    phases = {"Cu3Pt": (l12("Pt", "Cu", 3.7), 0.25), "CuPt": (l10, 0.5), "CuPt3": (l12("Cu", "Pt", 3.85), 0.75)}
    return {name: 1000 * (relaxed_energy_per_atom(atoms) - ((1 - x) * cu + x * pt))
            for name, (atoms, x) in phases.items()}


def test_demo_recovers_known_phases(tmp_path):
    config = shifted_campaign(REPO / "inputs" / "demo.yaml", tmp_path / "demo_shifted.yaml")
    out = tmp_path / "run"
    result = run_python(["-m", "acnn_mpi", "run", config, "--output-dir", out], ranks=2, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    stable = {p["formula"]: p["formation_enthalpy_meV"]
              for p in json.loads((out / "final" / "hull.json").read_text())["stable"]}
    reference = hand_built_formation_enthalpies()
    assert reference["CuPt"] < -100 and reference["Cu3Pt"] < -80  # the hand-built phases are bound
    for formula, hand_built in reference.items():
        assert formula in stable, f"{formula} not on the campaign's hull {stable}"
        assert stable[formula] <= hand_built + 2.0, (formula, stable[formula], hand_built)
    # the learning curve (model n-1 on the labels of iteration n) falls to <= 30 meV/atom
    history = json.loads((out / "state.json").read_text())["history"]
    curve = [r["validation"]["energy_rmse"] for r in history if r.get("validation")]
    assert len(curve) >= 2 and curve[-1] <= 30.0 and curve[-1] < curve[0], curve
    report = run_python(["-m", "acnn_mpi", "report", out], timeout=120)
    assert report.returncode == 0, report.stderr
    page = (out / "report" / "report.html").read_text()
    assert "CuPt" in page and "data:image/png;base64," in page
    # the report shows the phases symmetrised: each stable phase with its space group, linked to
    # its idealised conventional cell as CIF and POSCAR, which have that space group
    import re

    import ase.io

    from acnn_mpi.csp.symmetry import space_group

    text = (out / "report" / "report.md").read_text()
    table = text.split("## Stable phases", 1)[1].split("## ", 1)[0]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert set(reference) <= set(rows)
    for formula in reference:
        group = rows[formula].split("|")[2].strip()
        links = dict(re.findall(r"\[(cif|poscar)\]\(([^)]+)\)", rows[formula]))
        assert set(links) == {"cif", "poscar"}, rows[formula]
        for link in links.values():
            symbol, number = space_group(ase.io.read(out / "report" / link), 1e-3)
            assert group == f"{symbol} ({number})" and number > 1, (formula, link, group)
