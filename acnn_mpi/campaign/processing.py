"""Hierarchical processing inside the campaign (paper Fig. 2c): relaxed structures -> selection,
and labels -> the phase diagram the campaign converges on.

The functions here only compose the csp/ building blocks (dedup, distance checks, hull, selection,
symmetry, plots) in the order the paper gives, and write what a scientist reads after each iteration.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from .state import write_json_atomic

log = logging.getLogger(__name__)


@dataclass
class Selection:
    """Structures picked for labelling, with why each one was picked."""

    rows: list[int]
    ids: list[int]
    reasons: list[str]
    n_distinct: int = 0
    n_unphysical: int = 0
    hull_phases: list[str] = field(default_factory=list)


def select_for_labelling(config, results, iteration: int) -> Selection:
    """Dedup, distance check, model hull and C_max/L_max selection of one iteration's structures."""
    from ..csp.dedup import deduplicate
    from ..csp.distances import check_many
    from ..csp.hull import convex_hull, reduced_formula
    from ..csp.selection import select_candidates

    search = config.search
    n = len(results)
    if n == 0:
        return Selection(rows=[], ids=[], reasons=[])
    n_atoms = results.counts.sum(axis=1)
    h_per_atom = results.enthalpy / n_atoms
    keys = [reduced_formula(row, config.elements) for row in results.counts]
    finite = np.isfinite(h_per_atom)
    physical = results.physical & finite
    dedup = deduplicate(keys, np.where(finite, h_per_atom, np.inf), results.fingerprints,
                        enthalpy_window=search.dedup_enthalpy_window / 1000.0,
                        fingerprint_tolerance=search.dedup_fingerprint_tolerance,
                        certain_tolerance=search.dedup_certain_tolerance,
                        load_structure=results.load)
    include = physical & results.converged
    try:
        hull = convex_hull(results.counts, results.enthalpy, config.elements,
                           pressure=config.pressure, include=include)
        e_hull = hull.e_hull
        phases = [reduced_formula(results.counts[r], config.elements) for r in hull.stable]
    except UserError as error:
        # an element has no physical structure this iteration: rank compositions by enthalpy
        log.warning("model hull of iteration %d not built (%s); ranking by enthalpy per atom",
                    iteration, error)
        best = {}
        for k, h in zip(keys, h_per_atom):
            if np.isfinite(h):
                best[k] = min(best.get(k, np.inf), h)
        e_hull = np.array([h - best.get(k, h) for k, h in zip(keys, h_per_atom)])
        phases = []
    c_max, l_max = config.selection_at(iteration)

    def select():
        return select_candidates(results.ids, keys, h_per_atom, e_hull, c_max=c_max, l_max=l_max,
                                 distinct=dedup.is_unique, converged=results.converged,
                                 physical=physical, max_extra=search.max_unphysical_selected)

    # The relaxer already flags atoms closer than the fraction of their pair minimum; the explicit
    # distance check before labelling runs on the few hull picks only, not on every structure.
    chosen = select()
    picks = np.array([c.index for c in chosen if c.reason == "hull"], dtype=np.int64)
    ok, _ = check_many([results.load(int(r)) for r in picks], config.min_distance_table(),
                       fraction=config.relax.min_distance_fraction, elements=config.elements)
    if len(picks) and not ok.all():
        physical[picks[~ok]] = False
        chosen = select()
    return Selection(rows=[c.index for c in chosen], ids=[int(c.id) for c in chosen],
                     reasons=[c.reason for c in chosen], n_distinct=int(dedup.n_unique),
                     n_unphysical=int((~physical).sum()), hull_phases=phases)


# -- the phase diagram from labels ------------------------------------------------------------------

@dataclass
class LabelHull:
    """The hull of labelled structures (labeller energies): what the campaign converges on."""

    phases: list[dict]          # stable phases: formula, formation enthalpy meV/atom, space group, id
    candidates: list[dict]      # every distinct composition's best structure with E_hull, meV/atom
    e_hull: np.ndarray          # (F,) eV/atom of every frame
    frames: np.ndarray          # (F,) frame indices in the store


def labels_hull(config, store_path: Path, indices=None):
    """Convex hull at the campaign pressure of the frames in a label store (enthalpy E + PV).

    Returns (LabelHull, the csp.hull.HullResult over the frames)."""
    from ..csp.hull import convex_hull, reduced_formula
    from ..csp.symmetry import space_group
    from ..data.store import FrameStore
    from ..elements import element_counts
    from ..units import gpa_to_ev_per_a3

    with FrameStore(store_path, mode="r") as store:
        frames = np.arange(len(store)) if indices is None else np.asarray(indices, dtype=np.int64)
        arrays = store.read_arrays(frames)
        energy, cells = arrays.energy, arrays.cell
        ids = arrays.structure_id
        counts = element_counts(arrays.numbers, arrays.offsets, config.elements)
        volume = np.abs(np.linalg.det(cells))
        enthalpy = energy + gpa_to_ev_per_a3(config.pressure) * volume
        hull = convex_hull(counts, enthalpy, config.elements, pressure=config.pressure)
        phases = []
        for row in hull.stable:
            atoms = store.read([int(frames[row])])[0]
            symbol, number = space_group(atoms, config.search.symprec)
            phases.append({"formula": reduced_formula(counts[row], config.elements),
                           "formation_enthalpy_meV": round(1000 * float(hull.formation_enthalpy[row]), 3),
                           "e_hull_meV": 0.0, "space_group": f"{symbol} ({number})",
                           "atoms": int(counts[row].sum()), "structure_id": int(ids[row]),
                           "frame": int(frames[row])})
    candidates = []
    for u, row in enumerate(hull.best):
        if row < 0:
            continue
        candidates.append({"formula": reduced_formula(counts[row], config.elements),
                           "formation_enthalpy_meV": round(1000 * float(hull.formation_enthalpy[row]), 3),
                           "e_hull_meV": round(1000 * float(hull.e_hull[row]), 3),
                           "structure_id": int(ids[row]), "frame": int(frames[row])})
    candidates.sort(key=lambda c: (c["e_hull_meV"], c["formula"]))
    return LabelHull(phases=phases, candidates=candidates, e_hull=hull.e_hull, frames=frames), hull


def write_hull_files(directory: Path, label_hull: LabelHull, hull, title: str) -> None:
    """hull.csv and hull.json (stable phases and best structure per composition), hull.png."""
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / "hull.json", {"stable": label_hull.phases,
                                                "compositions": label_hull.candidates})
    stable_ids = {p["structure_id"] for p in label_hull.phases}
    groups = {p["structure_id"]: p["space_group"] for p in label_hull.phases}
    with open(directory / "hull.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["formula", "formation_enthalpy_meV_per_atom", "e_hull_meV_per_atom",
                         "stable", "space_group", "structure_id"])
        for c in label_hull.candidates:
            writer.writerow([c["formula"], c["formation_enthalpy_meV"], c["e_hull_meV"],
                             c["structure_id"] in stable_ids, groups.get(c["structure_id"], ""),
                             c["structure_id"]])
    try:
        from ..plots.hull import plot_hull

        plot_hull(hull, directory / "hull.png", title=title)
    except Exception as error:  # noqa: BLE001 - a plot must never stop a campaign
        log.warning("hull plot not written: %s", error)


def hull_changed(previous: list[dict], current: list[dict], tolerance_mev: float) -> bool:
    """True when the stable phases differ or a stable formation enthalpy moved by > tolerance."""
    before = {p["formula"]: p["formation_enthalpy_meV"] for p in previous}
    after = {p["formula"]: p["formation_enthalpy_meV"] for p in current}
    if set(before) != set(after):
        return True
    return any(abs(before[f] - after[f]) > tolerance_mev for f in after)


def write_selection(path: Path, results, selection: Selection) -> None:
    """The selected structures as extended XYZ (with ids) plus a JSON of why each was picked."""
    import ase.io

    atoms = []
    for row, reason in zip(selection.rows, selection.reasons):
        a = results.load(row)
        a.info["selection_reason"] = reason
        atoms.append(a)
    tmp = path.with_name(path.name + ".tmp")
    ase.io.write(tmp, atoms, format="extxyz")
    write_json_atomic(path.with_suffix(".json"), {
        "ids": selection.ids, "reasons": selection.reasons, "distinct": selection.n_distinct,
        "unphysical": selection.n_unphysical, "model_hull_phases": selection.hull_phases})
    Path(tmp).replace(path)


def read_selection(path: Path) -> list:
    """(structure_id, Atoms) pairs of a selection file."""
    import ase.io

    if not path.exists():
        return []
    return [(int(a.info["structure_id"]), a) for a in ase.io.read(path, ":", format="extxyz")]
