"""Does a committee recover the hull with fewer labels? Runs and reads EMT campaigns with and
without ``search.committee`` (same seeds, same budgets) and counts the labels until the labels'
hull is right.

"Right": every compound of the EMT reference hull, built by hand from the ordered phases L1_2
A3B, L1_0 AB, L1_2 AB3 relaxed by ASE, is stable in the iteration's hull (iter_K/hull.json) at or
below its hand-built formation enthalpy + 2 meV/atom (what tests/campaign/test_demo.py asks of
the demo; further phases may be stable too). "Labels until right": the single-point labels of iterations 0..K for the first
K from which every later iteration's hull is right (None: never right before the end).

    python scripts/committee_compare.py run --system demo --committee 2 --seed 7 --out /tmp/c/demo_k2_s7
    python scripts/committee_compare.py analyze /tmp/c/demo_k0_s7 /tmp/c/demo_k2_s7 ...

``run`` uses one rank and ``--threads 1`` (the machine is shared); ``analyze`` prints a Markdown
table, one row per directory, and for committee runs how the spread of each iteration's picks
ranks against the error of model n−1 on their labels.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SYSTEMS = {"demo": ("inputs/demo.yaml", ("Cu", "Pt"), (3.6, 3.92)),
           "cuau": ("inputs/cuau_emt.yaml", ("Cu", "Au"), (3.6, 4.07))}
TOLERANCE_MEV = 2.0


def run(system: str, committee: int, seed: int | None, out: Path, max_iterations: int | None = None) -> int:
    """Write the campaign file (the system's, with seed and committee set) and run it serially."""
    import yaml

    source, _, _ = SYSTEMS[system]
    data = yaml.safe_load((REPO / source).read_text())
    if seed is not None:
        data["seed"] = seed
    if committee:
        data["search"]["committee"] = committee
    if max_iterations:
        data["search"]["max_iterations"] = max_iterations
    data["output_dir"] = "run"
    data["name"] = f"{data['name']}-k{committee}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "campaign.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    command = [sys.executable, "-m", "acnn_mpi", "run", str(out / "campaign.yaml"), "--threads", "1"]
    with open(out / "run.log", "w") as log:
        return subprocess.call(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def _relaxed_energy_per_atom(atoms) -> float:
    from ase.calculators.emt import EMT
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms.calc = EMT()
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-4, steps=500)
    return atoms.get_potential_energy() / len(atoms)


@lru_cache(maxsize=None)
def reference_hull(system: str) -> dict[str, float]:
    """{formula: formation enthalpy meV/atom} of the compounds on the hand-built EMT hull."""
    from ase import Atoms
    from ase.build import bulk
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    _, (a, b), (lat_a, lat_b) = SYSTEMS[system]
    mean = (lat_a + lat_b) / 2

    def l12(minority, majority, lattice):
        return Atoms([minority] + [majority] * 3, cell=[lattice] * 3, pbc=True,
                     scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])

    l10 = Atoms([a, b], cell=[mean / 2 ** 0.5, mean / 2 ** 0.5, mean], pbc=True,
                scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]])
    phases = [bulk(a, "fcc", a=lat_a), bulk(b, "fcc", a=lat_b), l12(b, a, 0.75 * lat_a + 0.25 * lat_b),
              l10, l12(a, b, 0.25 * lat_a + 0.75 * lat_b)]
    entries = [PDEntry(Composition(p.get_chemical_formula()), _relaxed_energy_per_atom(p) * len(p))
               for p in phases]
    diagram = PhaseDiagram(entries)
    return {e.composition.reduced_formula: 1000 * diagram.get_form_energy_per_atom(e)
            for e in diagram.stable_entries if len(e.composition.elements) > 1}


def _formula(name: str) -> str:
    from pymatgen.core import Composition

    return Composition(name).reduced_formula


def hull_right(stable: list[dict], reference: dict[str, float]) -> bool:
    found = {_formula(p["formula"]): p["formation_enthalpy_meV"] for p in stable
             if len(_formula_elements(p["formula"])) > 1}
    return all(f in found and found[f] <= reference[f] + TOLERANCE_MEV for f in reference)


def _formula_elements(name: str) -> list:
    from pymatgen.core import Composition

    return Composition(name).elements


def analyze(directory: Path) -> dict:
    """The row of one run: labels per iteration, when the hull became right, the final hull."""
    import yaml

    config = yaml.safe_load((directory / "campaign.yaml").read_text())
    system = next(s for s, (_, elements, _) in SYSTEMS.items() if config["elements"] == list(elements))
    reference = reference_hull(system)
    run_dir = directory / "run"
    state = json.loads((run_dir / "state.json").read_text())
    history = sorted(state["history"], key=lambda r: r["iteration"])
    labels = np.cumsum([r["labelled"] for r in history])
    right = [hull_right(json.loads((run_dir / f"iter_{r['iteration']:03d}" / "hull.json").read_text())["stable"],
                        reference) for r in history]
    first = next((i for i in range(len(right)) if all(right[i:])), None)
    final = run_dir / "final" / "hull.json"
    final_right = hull_right(json.loads(final.read_text())["stable"], reference) if final.exists() else None
    curve = [r["validation"].get("energy_rmse") for r in history if r.get("validation")]
    return {"run": directory.name, "system": system, "committee": config["search"].get("committee") or 0,
            "seed": config["seed"], "labels_per_iteration": [r["labelled"] for r in history],
            "hull_right_per_iteration": right,
            "labels_until_right": int(labels[first]) if first is not None else None,
            "iteration_right": history[first]["iteration"] if first is not None else None,
            "final_right": final_right, "final_evaluations": state.get("final_evaluations", 0),
            "learning_curve_mev": [round(c, 1) for c in curve], "reference_mev": reference}


def spread_against_error(run_dir: Path, k: int) -> dict | None:
    """Iteration ``k``'s labelled committee picks: median |E/N of model k−1 − label| and median
    spread (meV/atom), and their Spearman rank correlation; None without committee spreads."""
    import ase.io
    from scipy.stats import spearmanr

    from acnn_mpi.data.store import FrameStore
    from acnn_mpi.model.potential import ACNN
    from acnn_mpi.train.committee import energies_per_atom

    picks = [a for a in ase.io.read(run_dir / f"iter_{k:03d}" / "selection.xyz", ":")
             if "committee_spread_mev_per_atom" in a.info]
    with FrameStore(run_dir / "labels.h5", "r") as store:
        arrays = store.read_arrays(strings=False)
    label = dict(zip(arrays.structure_id.tolist(), (arrays.energy / arrays.n_atoms).tolist()))
    picks = [a for a in picks if int(a.info["structure_id"]) in label]
    if len(picks) < 3:
        return None
    model = energies_per_atom(ACNN.load(run_dir / "models" / f"model_{k - 1:03d}.pt"), picks)
    error = 1000 * np.abs(model - np.array([label[int(a.info["structure_id"])] for a in picks]))
    spread = np.array([a.info["committee_spread_mev_per_atom"] for a in picks])
    return {"iteration": k, "picks": len(picks), "median_error_mev": round(float(np.median(error)), 1),
            "median_spread_mev": round(float(np.median(spread)), 1),
            "spearman": round(float(spearmanr(spread, error).correlation), 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--system", choices=sorted(SYSTEMS), required=True)
    r.add_argument("--committee", type=int, default=0, help="members (0: no committee)")
    r.add_argument("--seed", type=int, default=None, help="campaign seed (default: the file's)")
    r.add_argument("--max-iterations", type=int, default=None, help="default: the file's")
    r.add_argument("--out", type=Path, required=True)
    a = sub.add_parser("analyze")
    a.add_argument("dirs", nargs="+", type=Path)
    a.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.system, args.committee, args.seed, args.out, args.max_iterations)
    rows = [analyze(d) for d in args.dirs]
    print("| system | committee | seed | labels per iteration | hull right per iteration | labels until "
          "right | final hull right | learning curve (meV/atom) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['system']} | {row['committee'] or 'off'} | {row['seed']} | "
              f"{row['labels_per_iteration']} | {['yes' if x else 'no' for x in row['hull_right_per_iteration']]} | "
              f"{row['labels_until_right']} | {row['final_right']} | {row['learning_curve_mev']} |")
    for d, row in zip(args.dirs, rows):
        if row["committee"]:
            for k in range(1, len(row["labels_per_iteration"])):
                print(f"{d.name}: spread against error {spread_against_error(d / 'run', k)}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
