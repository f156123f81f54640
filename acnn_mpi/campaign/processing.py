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
    n_labelled_before: int = 0   # hull picks dropped: the same crystal was labelled already
    spreads: list[float] = field(default_factory=list)   # committee spread per pick, eV/atom (NaN: none)
    committee: dict = field(default_factory=dict)         # committee summary (empty without one)


def select_for_labelling(config, results, iteration: int, required: list[str] = (),
                         labels_path: Path | None = None, distinct: np.ndarray | None = None,
                         spread: np.ndarray | None = None) -> Selection:
    """Dedup, distance check, model hull and C_max/L_max selection of one iteration's structures.

    Dedup never lets an unconverged or unphysical structure stand for a converged, physical one
    (the two kinds are deduplicated separately), and a structure that is the same crystal as one
    already labelled (``labels_path``: earlier iterations and the initial sampling) is not
    selected again. ``required``: elements the labels' hull still lacks (their labels failed, or
    none was made): up to L_max structures of each, physical ones first, are added whatever
    their rank. ``distinct``: the dedup representatives when computed already (on all ranks,
    :func:`distinct_on_ranks`), else computed here. ``spread``: (B,) committee spread, eV/atom
    (NaN where not evaluated; campaign/committee.py): structures above
    ``search.committee_spread_mev_per_atom`` are preferred within each composition's L_max."""
    from ..csp.distances import check_many
    from ..csp.selection import select_candidates
    from ..parallel.comm import Comm

    search = config.search
    if len(results) == 0:
        return Selection(rows=[], ids=[], reasons=[])
    h_per_atom = results.enthalpy / results.counts.sum(axis=1)
    keys = composition_keys(results, config.elements)
    physical = results.physical & np.isfinite(h_per_atom)
    if distinct is None:
        distinct = distinct_on_ranks(Comm(None), config, results, keys, h_per_atom)
    distinct = np.array(distinct, dtype=bool)
    e_hull, phases = _model_hull(config, results, keys, h_per_atom, physical & results.converged, iteration)
    labelled = LabelledIndex(config, labels_path)
    c_max, l_max = config.selection_at(iteration)

    def select():
        return select_candidates(results.ids, keys, h_per_atom, e_hull, c_max=c_max, l_max=l_max,
                                 distinct=distinct, converged=results.converged,
                                 physical=physical, max_extra=search.max_unphysical_selected,
                                 spread=spread, spread_threshold=search.committee_spread_mev_per_atom / 1000)

    # The relaxer already flags atoms closer than the fraction of their pair minimum; the explicit
    # distance check and the comparison with the labels run on the few hull picks only.
    chosen, checked = select(), set()
    while True:
        picks = np.array([c.index for c in chosen if c.reason == "hull" and c.index not in checked],
                         dtype=np.int64)
        if len(picks) == 0:
            break
        checked.update(picks.tolist())
        ok, _ = check_many([results.load(int(r)) for r in picks], config.min_distance_table(),
                           fraction=config.relax.min_distance_fraction, elements=config.elements)
        physical[picks[~ok]] = False
        seen = labelled.matches(picks[ok], keys, results)
        distinct[seen] = False
        if ok.all() and len(seen) == 0:
            break
        chosen = select()
    rows, reasons = [c.index for c in chosen], [c.reason for c in chosen]
    spreads = [c.spread for c in chosen]
    for row in _element_rows(config, results, required, h_per_atom, physical, distinct, set(rows), l_max):
        rows.append(row)
        reasons.append("element")
        spreads.append(float(spread[row]) if spread is not None else float("nan"))
    return Selection(rows=rows, ids=[int(results.ids[r]) for r in rows], reasons=reasons,
                     n_distinct=int(distinct.sum()), n_unphysical=int((~physical).sum()),
                     hull_phases=phases, n_labelled_before=labelled.n_matched, spreads=spreads,
                     committee=_committee_summary(search, spread, spreads))


def _committee_summary(search, spread, picked) -> dict:
    """The committee's numbers for selection.json (meV/atom); empty without a committee."""
    if spread is None:
        return {}
    threshold = search.committee_spread_mev_per_atom
    known = 1000 * spread[np.isfinite(spread)]
    chosen = 1000 * np.array([s for s in picked if np.isfinite(s)])
    return {"members": search.committee, "threshold_mev_per_atom": threshold,
            "evaluated": int(len(known)), "above_threshold": int((known > threshold).sum()),
            "median_mev_per_atom": round(float(np.median(known)), 3) if len(known) else None,
            "selected_above_threshold": int((chosen > threshold).sum()),
            "selected_median_mev_per_atom": round(float(np.median(chosen)), 3) if len(chosen) else None}


def composition_keys(results, elements) -> np.ndarray:
    """(B,) reduced formulas of the rows of ``results`` (one call per distinct cell content; the
    (B,) object array shares one str per formula)."""
    from ..csp.hull import reduced_formula

    if len(results) == 0:
        return np.zeros(0, dtype=object)
    counts = np.asarray(results.counts)
    base = int(counts.max(initial=0)) + 1
    span = base ** counts.shape[1]
    if span > _LOOKUP_CODES:  # many elements or huge cells: a row-wise unique over copies
        table, inverse = np.unique(counts, axis=0, return_inverse=True)
    else:  # each row as one integer in base max+1 and a look-up table: ~15 bytes a row on the side
        code = np.zeros(len(counts), dtype=np.int32)
        for column in counts.T:
            code *= base
            code += column.astype(np.int32)
        present = np.zeros(span, dtype=bool)
        present[code] = True
        distinct = np.flatnonzero(present)
        index = np.zeros(span, dtype=np.int32)
        index[distinct] = np.arange(len(distinct), dtype=np.int32)
        inverse = index[code]
        table = (distinct[:, None] // base ** np.arange(counts.shape[1] - 1, -1, -1)) % base
    names = np.array([reduced_formula(row, elements) for row in table], dtype=object)
    return names[inverse.ravel()]


#: cell-content codes up to this many use composition_keys' look-up table (16 MiB of int32)
_LOOKUP_CODES = 1 << 22


def key_codes(keys: np.ndarray) -> np.ndarray:
    """(B,) int32 codes of the (B,) ``keys`` (equal where the keys are), in order of appearance."""
    lookup: dict = {}
    return np.fromiter((lookup.setdefault(k, len(lookup)) for k in keys), dtype=np.int32, count=len(keys))


def dedup_parts(results, keys, h_per_atom) -> list[np.ndarray]:
    """The groups dedup works on, as row arrays, largest first: the compositions of the converged
    physical structures, and apart from them those of the others (so a failure never stands for a
    good minimum). Groups never share a duplicate, so they can be spread over ranks. One integer
    sort over all rows (a root with a million rows: ~30 bytes a row on the side)."""
    if len(keys) == 0:
        return []
    good = results.physical & results.converged & np.isfinite(h_per_atom)
    label = 2 * key_codes(keys) + (~good).astype(np.int32)
    order = np.argsort(label, kind="stable")
    bounds = np.flatnonzero(np.diff(label[order])) + 1
    return sorted(np.split(order, bounds), key=len, reverse=True)


def assign_groups(groups: list[np.ndarray], n_ranks: int) -> list[list[int]]:
    """Group indices per rank: largest first to the least loaded (load ~ group size). Above 4
    ranks the root takes none (it only merges what the others find), as in run_dynamic."""
    load, out = np.zeros(n_ranks), [[] for _ in range(n_ranks)]
    if n_ranks > 4:
        load[0] = np.inf
    for g, rows in enumerate(groups):
        r = int(np.argmin(load))
        out[r].append(g)
        load[r] += len(rows)
    return out


def distinct_on_ranks(comm, config, results, keys, h_per_atom) -> np.ndarray | None:
    """Dedup sharded by composition over the ranks of ``comm`` (every rank calls it with the same
    ``results``; each reads the fingerprints of its groups only and makes its own matcher calls).
    The root gets the (B,) bool mask of representatives, the other ranks None."""
    from ..csp.dedup import deduplicate

    search = config.search
    groups = dedup_parts(results, keys, h_per_atom)
    mine = assign_groups(groups, comm.size)[comm.rank]
    rows = np.concatenate([groups[g] for g in mine]) if mine else np.zeros(0, np.int64)
    fps = results.fingerprints[np.sort(rows)] if len(rows) else None
    position = {int(r): k for k, r in enumerate(np.sort(rows))}
    representatives, stats = [], np.zeros(3, np.int64)
    for g in mine:
        part = groups[g]
        h = h_per_atom[part]
        dedup = deduplicate(keys[part], np.where(np.isfinite(h), h, np.inf),
                            fps[[position[int(r)] for r in part]],
                            enthalpy_window=search.dedup_enthalpy_window / 1000.0,
                            fingerprint_tolerance=search.dedup_fingerprint_tolerance,
                            certain_tolerance=search.dedup_certain_tolerance,
                            load_structure=lambda k, part=part: results.load(int(part[k])))
        representatives.append(part[dedup.is_unique])
        stats += (dedup.fingerprint_comparisons, dedup.matcher_calls, dedup.matcher_rejections)
    found = np.concatenate(representatives) if representatives else np.zeros(0, np.int64)
    gathered = comm.gather((found, stats))
    if not comm.is_root:
        return None
    distinct = np.zeros(len(keys), dtype=bool)
    for part, _ in gathered:
        distinct[part] = True
    total = sum(s for _, s in gathered)
    log.info("dedup over %d rank(s): %d structures, %d distinct; %d fingerprint comparisons, %d "
             "matcher calls (%d rejected)", comm.size, len(keys), int(distinct.sum()), *total.tolist())
    return distinct


def _model_hull(config, results, keys, h_per_atom, include, iteration: int):
    """E_hull (eV/atom) of every row above the model hull of the included rows, and its phases;
    without a hull (an element has no physical structure) ranked by enthalpy per atom."""
    from ..csp.hull import e_hull_of_rows, reduced_formula

    codes = key_codes(keys)  # (B,) int32: no per-row Python floats at 10⁶ structures
    try:
        e_hull, stable = e_hull_of_rows(results.counts, results.enthalpy, config.elements, pressure=config.pressure,
                                        include=include, composition_codes=codes)
        return e_hull, [reduced_formula(results.counts[r], config.elements) for r in stable]
    except UserError as error:
        log.warning("model hull of iteration %d not built (%s); ranking by enthalpy per atom",
                    iteration, error)
        finite = np.isfinite(h_per_atom)
        best = np.full(int(codes.max(initial=-1)) + 1, np.inf)
        np.minimum.at(best, codes[finite], h_per_atom[finite])
        best = best[codes]
        return np.where(np.isfinite(best), h_per_atom - best, h_per_atom - h_per_atom), []


class LabelledIndex:
    """The structures already labelled, by composition, with their fingerprints: a relaxed
    structure that is the same crystal (fingerprint distance within the dedup tolerance, and the
    structure matcher in the uncertain band) is not labelled again."""

    def __init__(self, config, labels_path: Path | None):
        from ..csp.fingerprints import FingerprintSettings, fingerprints_from_batch
        from ..csp.hull import reduced_formula
        from ..data.store import FrameStore
        from ..elements import element_counts

        self.config, self.n_matched = config, 0
        self.by_key: dict[str, np.ndarray] = {}
        self.fingerprints = np.zeros((0, 0), np.float32)
        self._store, self._frames = labels_path, np.zeros(0, np.int64)
        if labels_path is None or not Path(labels_path).exists():
            return
        with FrameStore(labels_path, mode="r") as store:
            arrays = store.read_arrays(strings=False)
        if len(arrays) == 0:
            return
        counts = element_counts(arrays.numbers, arrays.offsets, config.elements)
        self.fingerprints = fingerprints_from_batch(
            arrays.positions, arrays.cell, arrays.numbers, arrays.n_atoms, config.elements,
            FingerprintSettings(cutoff=config.search.fingerprint_cutoff))
        keys = np.array([reduced_formula(row, config.elements) for row in counts], dtype=object)
        self.by_key = {k: np.flatnonzero(keys == k) for k in np.unique(keys)}

    def matches(self, rows, keys, results) -> np.ndarray:
        """The ``rows`` of ``results`` that are the same crystal as a labelled structure."""
        from ..csp.dedup import _to_pymatgen, default_matcher

        search, out, matcher = self.config.search, [], None
        for row in np.asarray(rows, dtype=np.int64).tolist():
            frames = self.by_key.get(keys[row])
            if frames is None or results.fingerprints is None:
                continue
            distance = 1.0 - self.fingerprints[frames] @ results.fingerprints[row]
            close = frames[distance <= search.dedup_fingerprint_tolerance]
            same = bool((distance < search.dedup_certain_tolerance).any())
            if not same and len(close):
                matcher = matcher or default_matcher()
                mine = _to_pymatgen(results.load(row))
                same = any(matcher.fit(mine, _to_pymatgen(atoms)) for atoms in self._read(close))
            if same:
                out.append(row)
        self.n_matched += len(out)
        return np.array(out, dtype=np.int64)

    def _read(self, frames) -> list:
        from ..data.store import FrameStore

        with FrameStore(self._store, mode="r") as store:
            atoms_list = store.read([int(f) for f in frames])
        for atoms in atoms_list:
            atoms.calc = None
        return atoms_list


def _element_rows(config, results, required, h_per_atom, physical, distinct, taken: set,
                  per_element: int) -> list[int]:
    """Rows of up to ``per_element`` distinct structures of each required pure element not yet
    ``taken``: physical ones first, then by enthalpy per atom and id."""
    out = []
    for symbol in required:
        k = config.elements.index(symbol)
        pure = (results.counts[:, k] > 0) & (results.counts.sum(axis=1) == results.counts[:, k])
        rows = [r for r in np.flatnonzero(pure & distinct) if int(r) not in taken]
        key = np.where(np.isfinite(h_per_atom), h_per_atom, np.inf)
        rows.sort(key=lambda r: (not physical[r], key[r], int(results.ids[r])))
        out += [int(r) for r in rows[:per_element]]
        if not rows:
            log.warning("no relaxed %s structure to label this iteration (the hull still lacks %s)",
                        symbol, symbol)
    return out


# -- the phase diagram from labels ------------------------------------------------------------------

#: where a row of a label hull comes from
SINGLE_POINT, RELAXED, GIVEN = "single point", "relaxed", "given"


@dataclass
class LabelHull:
    """The hull of labelled structures (labeller energies): what the campaign converges on.

    Rows are the frames of the stores read (relaxed ones first), then the given elemental
    references (``references.enthalpies``); ``frames`` is -1 for those."""

    phases: list[dict]          # stable phases: formula, formation enthalpy meV/atom, space group, id
    candidates: list[dict]      # every distinct composition's best structure with E_hull, meV/atom
    e_hull: np.ndarray          # (R,) eV/atom of every row (NaN: outside the hull's elements)
    frames: np.ndarray          # (R,) frame index in its store, -1 for a given reference
    sources: np.ndarray         # (R,) SINGLE_POINT, RELAXED or GIVEN
    best: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # rows: best per composition
    missing: list[str] = field(default_factory=list)   # elements with neither label nor reference


@dataclass
class _Rows:
    counts: np.ndarray          # (R, n) atoms of each campaign element
    enthalpy: np.ndarray        # (R,) eV, E + PV
    ids: np.ndarray             # (R,) structure ids (-1 for given references)
    frames: np.ndarray          # (R,)
    sources: np.ndarray         # (R,) object


def _store_rows(config, path: Path, source: str) -> _Rows | None:
    from ..data.store import FrameStore
    from ..elements import element_counts
    from ..units import gpa_to_ev_per_a3

    if path is None or not Path(path).exists():
        return None
    with FrameStore(path, mode="r") as store:
        arrays = store.read_arrays(strings=False)
    if len(arrays) == 0:
        return None
    volume = np.abs(np.linalg.det(arrays.cell))
    return _Rows(counts=element_counts(arrays.numbers, arrays.offsets, config.elements),
                 enthalpy=arrays.energy + gpa_to_ev_per_a3(config.pressure) * volume,
                 ids=arrays.structure_id, frames=np.arange(len(arrays)),
                 sources=np.full(len(arrays), source, dtype=object))


def _given_rows(config) -> _Rows:
    given = config.references.enthalpies
    counts = np.array([[int(e == symbol) for e in config.elements] for symbol in given],
                      dtype=np.int64).reshape(-1, len(config.elements))
    n = len(given)
    return _Rows(counts=counts, enthalpy=np.array(list(given.values()), dtype=np.float64),
                 ids=np.full(n, -1, np.int64), frames=np.full(n, -1, np.int64),
                 sources=np.full(n, GIVEN, dtype=object))


def _all_rows(config, stores) -> _Rows:
    parts = [r for r in (_store_rows(config, path, source) for source, path in stores) if r is not None]
    parts.append(_given_rows(config))
    return _Rows(*(np.concatenate([getattr(p, name) for p in parts])
                   for name in ("counts", "enthalpy", "ids", "frames", "sources")))


def labels_hull(config, store_path: Path, relaxed_path: Path | None = None):
    """Convex hull at the campaign pressure (enthalpy E + PV) of the frames of a label store, the
    structures relaxed by the labeller (``relaxed_path``, optional, preferred on ties) and the
    given elemental references. Only energy differences enter (formation enthalpies, E_hull), so
    any energy zero of the labeller gives the same hull.

    A stable phase or best structure of a composition whose atoms are closer than allowed (a cell
    the model collapsed, labelled on purpose) is left out and the hull rebuilt; only these few are
    checked. An element with neither a label nor a given reference does not stop anything: the hull is
    built over the other elements (compositions with the missing one get E_hull NaN) and
    ``LabelHull.missing`` names it. Returns (LabelHull, the csp.hull.HullResult over the rows
    used, or None when no element has a label)."""
    from ..csp.hull import convex_hull, reduced_formula

    rows = _all_rows(config, [(RELAXED, relaxed_path), (SINGLE_POINT, store_path)])
    elements = list(config.elements)
    checked = np.zeros(len(rows.ids), dtype=bool)
    while True:  # until no stable phase or best structure of a composition is unphysical
        pure = (rows.counts.astype(bool).sum(axis=1) == 1) & np.isfinite(rows.enthalpy)
        present = [k for k in range(len(elements)) if (pure & (rows.counts[:, k] > 0)).any()]
        missing = [elements[k] for k in range(len(elements)) if k not in present]
        e_hull = np.full(len(rows.ids), np.nan)
        empty = LabelHull(phases=[], candidates=[], e_hull=e_hull, frames=rows.frames,
                          sources=rows.sources, missing=missing)
        if not present:
            return empty, None
        inside = np.flatnonzero(rows.counts[:, [k for k in range(len(elements)) if k not in present]]
                                .sum(axis=1) == 0)
        sub = [elements[k] for k in present]
        counts = rows.counts[inside][:, present]
        hull = convex_hull(counts, rows.enthalpy[inside], sub, pressure=config.pressure)
        if not _drop_unphysical(config, rows, inside[np.union1d(hull.stable, hull.best[hull.best >= 0])],
                                checked, store_path, relaxed_path):
            break
    e_hull[inside] = hull.e_hull

    def entry(r: int) -> dict:
        row = int(inside[r])
        return {"formula": reduced_formula(counts[r], sub),
                "formation_enthalpy_meV": round(1000 * float(hull.formation_enthalpy[r]), 3),
                "e_hull_meV": round(1000 * float(hull.e_hull[r]), 3),
                "structure_id": int(rows.ids[row]), "frame": int(rows.frames[row]),
                "source": str(rows.sources[row])}

    phases = [dict(entry(int(r)), e_hull_meV=0.0, atoms=int(counts[r].sum()),
                   space_group=_space_group(config, rows, int(inside[r]), store_path, relaxed_path))
              for r in hull.stable]
    candidates = sorted((entry(int(r)) for r in hull.best if r >= 0),
                        key=lambda c: (c["e_hull_meV"], c["formula"]))
    best = inside[hull.best[hull.best >= 0]]
    return LabelHull(phases=phases, candidates=candidates, e_hull=e_hull, frames=rows.frames,
                     sources=rows.sources, best=best, missing=missing), hull


def _drop_unphysical(config, rows: _Rows, picks: np.ndarray, checked: np.ndarray, store_path,
                     relaxed_path) -> bool:
    """Leave out of the hull (enthalpy NaN) the ``picks`` not yet ``checked`` whose atoms are
    closer than ``relax.min_distance_fraction`` of their pair minimum: a structure the model
    collapsed and the selection labelled on purpose (``max_unphysical_selected``) teaches the
    model, but is no phase. True when one was left out (the hull is then rebuilt)."""
    from ..csp.distances import check_many
    from ..data.store import FrameStore

    picks = picks[~checked[picks] & (rows.sources[picks] != GIVEN)]
    checked[picks] = True
    bad = []
    for source, path in ((RELAXED, relaxed_path), (SINGLE_POINT, store_path)):
        mine = picks[rows.sources[picks] == source]
        if len(mine) == 0:
            continue
        with FrameStore(path, mode="r") as store:
            structures = store.read([int(f) for f in rows.frames[mine]])
        ok, reasons = check_many(structures, config.min_distance_table(),
                                 fraction=config.relax.min_distance_fraction, elements=config.elements)
        bad += [(int(r), why) for r, good, why in zip(mine, ok, reasons) if not good]
    for row, why in bad:
        log.info("label hull: structure %d (%s) left out: %s", int(rows.ids[row]), rows.sources[row], why)
        rows.enthalpy[row] = np.nan
    return bool(bad)


def _space_group(config, rows: _Rows, row: int, store_path, relaxed_path) -> str:
    from ..csp.symmetry import space_group
    from ..data.store import FrameStore

    if rows.sources[row] == GIVEN:
        return "given"
    path = relaxed_path if rows.sources[row] == RELAXED else store_path
    with FrameStore(path, mode="r") as store:
        atoms = store.read([int(rows.frames[row])])[0]
    symbol, number = space_group(atoms, config.search.symprec)
    return f"{symbol} ({number})"


def write_hull_files(directory: Path, label_hull: LabelHull, hull, title: str) -> None:
    """hull.csv and hull.json (stable phases and best structure per composition), hull.png."""
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / "hull.json", {"stable": label_hull.phases,
                                                "compositions": label_hull.candidates,
                                                "missing_elements": label_hull.missing})
    stable_ids = {p["structure_id"] for p in label_hull.phases}
    groups = {p["structure_id"]: p["space_group"] for p in label_hull.phases}
    with open(directory / "hull.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["formula", "formation_enthalpy_meV_per_atom", "e_hull_meV_per_atom",
                         "stable", "space_group", "structure_id", "source"])
        for c in label_hull.candidates:
            writer.writerow([c["formula"], c["formation_enthalpy_meV"], c["e_hull_meV"],
                             c["structure_id"] in stable_ids, groups.get(c["structure_id"], ""),
                             c["structure_id"], c["source"]])
    if hull is None or len(hull.elements) < 2:
        return
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
    for k, (row, reason) in enumerate(zip(selection.rows, selection.reasons)):
        a = results.load(row)
        a.info["selection_reason"] = reason
        if selection.committee and np.isfinite(selection.spreads[k]):
            a.info["committee_spread_mev_per_atom"] = round(1000 * selection.spreads[k], 4)
        atoms.append(a)
    tmp = path.with_name(path.name + ".tmp")
    ase.io.write(tmp, atoms, format="extxyz")
    record = {"ids": selection.ids, "reasons": selection.reasons, "distinct": selection.n_distinct,
              "unphysical": selection.n_unphysical, "model_hull_phases": selection.hull_phases}
    if selection.committee:
        record["committee"] = selection.committee
        record["spreads_mev_per_atom"] = [round(1000 * s, 4) if np.isfinite(s) else None
                                          for s in selection.spreads]
    write_json_atomic(path.with_suffix(".json"), record)
    Path(tmp).replace(path)


def read_selection(path: Path) -> list:
    """(structure_id, Atoms) pairs of a selection file."""
    import ase.io

    if not path.exists():
        return []
    return [(int(a.info["structure_id"]), a) for a in ase.io.read(path, ":", format="extxyz")]
