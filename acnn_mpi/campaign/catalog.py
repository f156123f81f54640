"""Every structure of a campaign directory as one queryable catalogue (``python -m acnn_mpi export``).

Three kinds of structure, read from the campaign's files as they are:

* ``relaxed``: relaxed by the ACNN model in the CSP stage (``iter_K/relax/shards/rank*.h5``, or
  ``iter_K/relax/P<p>/shards/`` per pressure, read with :func:`acnn_mpi.csp.export.read_relax_results`
  at the pressure the shards record); status converged / not_converged /
  unphysical / failed; enthalpy from the model; E_hull above the model hull of that iteration
  (built from the converged, physical structures of iteration K; the others are measured against
  it too, so an unphysical structure can have E_hull < 0: the model's false minimum).
* ``label``: single points of the labeller (``labels.h5``); status ``labelled``; E_hull above the
  hull of all labels (what ``iter_K/hull.json`` shows after the last iteration). Labels do not
  depend on the pressure: a campaign over several gives one record per (frame, pressure), with
  the enthalpy E + PV and E_hull at that pressure.
* ``final``: relaxed by the labeller in the final stage (``final/relaxed.h5``, or
  ``final/P<p>/relaxed.h5`` per pressure); status ``final``; E_hull above that store's hull.

Per structure (:data:`FIELDS`): kind, iteration, structure_id, status, composition (the reduced
formula, e.g. 'MgH2'; ASE db keeps ``formula`` for the cell's own), energy and
enthalpy (eV), enthalpy_per_atom and e_hull (eV/atom; NaN when that hull cannot be built, e.g. an
element has no structure yet), pressure_gpa, space_group and space_group_number (spglib at
``symprec``), source (the label store's source) and reason (why a relaxation was unphysical).
Labelled frames keep their energy, forces and stress as a single-point calculator (in the ASE
database and extended XYZ the energy is only there, as both reserve the key ``energy``).

Writers: ASE database (``ase-db``, SQLite), extended XYZ (``extxyz``, the fields in ``info``) and a
JSON list of pymatgen ``Structure.as_dict()`` with the fields in ``properties`` (``pymatgen-json``).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from ..errors import UserError
from .layout import CampaignPaths

log = logging.getLogger(__name__)

KINDS = ("relaxed", "label", "final")
FORMATS = {"ase-db": ".db", "extxyz": ".xyz", "pymatgen-json": ".json"}
#: per-structure fields, in the order written
FIELDS = ("kind", "iteration", "structure_id", "status", "composition", "energy", "enthalpy",
          "enthalpy_per_atom", "e_hull", "pressure_gpa", "space_group", "space_group_number", "source",
          "reason")


def _e_hull(counts, enthalpy, elements, pressure, include, what: str) -> np.ndarray:
    """E_hull (eV/atom) of every row, or NaN everywhere when the hull cannot be built."""
    from ..csp.hull import convex_hull

    if len(enthalpy) == 0 or not np.any(include):
        return np.full(len(enthalpy), np.nan)
    try:
        return convex_hull(counts, enthalpy, elements, pressure=pressure, include=include).e_hull
    except UserError as error:
        log.warning("no E_hull for %s: %s", what, error)
        return np.full(len(enthalpy), np.nan)


def _iterations(paths: CampaignPaths) -> list[int]:
    return sorted(int(p.name[len("iter_"):]) for p in paths.root.glob("iter_*") if p.name[5:].isdigit())


def relax_dirs(paths: CampaignPaths, k: int) -> list[Path]:
    """The relaxation-service directories of iteration k: ``iter_K/relax`` (one pressure) and/or
    its ``P<p>/`` folders (several pressures), those with shards."""
    from ..relax.shards import list_shards
    from .layout import part_pressure

    base = paths.iteration(k) / "relax"
    parts = sorted((d for d in base.glob("P*") if d.is_dir() and part_pressure(d.name) is not None),
                   key=lambda d: part_pressure(d.name))
    return [d for d in [base, *parts] if list_shards(d)]


def relaxed_records(paths: CampaignPaths, elements, pressure: float) -> Iterator[tuple]:
    """(Atoms, fields) of every structure relaxed by the model, iteration by iteration, each at the
    pressure it was relaxed at (its shards' ``pressure_gpa``; ``pressure`` where they lack it)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from ..csp.export import read_relax_results
    from ..csp.hull import reduced_formula
    from ..units import gpa_to_ev_per_a3

    for k in _iterations(paths):
        for directory in relax_dirs(paths, k):
            results = read_relax_results(directory, None, list(elements), empty_ok=True, lazy=True)
            at = float(results.pressure) if np.isfinite(results.pressure) else float(pressure)
            usable = results.converged & results.physical & np.isfinite(results.enthalpy)
            e_hull = _e_hull(results.counts, results.enthalpy, elements, at, usable,
                             f"the model structures of iteration {k} at {at:g} GPa")
            energy = results.enthalpy - gpa_to_ev_per_a3(at) * results.volume
            for row in range(len(results)):
                atoms = results.load(row)
                atoms.calc = SinglePointCalculator(atoms, energy=float(energy[row]))
                yield atoms, {"kind": "relaxed", "iteration": k, "structure_id": int(results.ids[row]),
                              "status": str(results.status[row]),
                              "composition": reduced_formula(results.counts[row], elements),
                              "energy": float(energy[row]), "enthalpy": float(results.enthalpy[row]),
                              "e_hull": float(e_hull[row]), "pressure_gpa": at,
                              "reason": results.reason[row]}


def store_records(store_path: Path, kind: str, elements, pressures: float | Sequence[float]) -> Iterator[tuple]:
    """(Atoms, fields) of every frame of a label store (labels.h5 or final/relaxed.h5) at each of
    ``pressures`` (GPa) in turn: enthalpy E + PV and E_hull above the store's hull at that pressure."""
    from ..csp.hull import reduced_formula
    from ..data.store import FrameStore
    from ..elements import element_counts
    from ..units import gpa_to_ev_per_a3

    pressures = [float(p) for p in np.atleast_1d(pressures)]
    if not store_path.exists():
        return
    with FrameStore(store_path, mode="r") as store:
        if len(store) == 0:
            return
        arrays = store.read_arrays()
        counts = element_counts(arrays.numbers, arrays.offsets, elements)
        volume = np.abs(np.linalg.det(arrays.cell))
        enthalpy = [arrays.energy + gpa_to_ev_per_a3(p) * volume for p in pressures]
        e_hull = [_e_hull(counts, h, elements, p, np.isfinite(h), f"{store_path} at {p:g} GPa")
                  for p, h in zip(pressures, enthalpy)]
        status = "labelled" if kind == "label" else "final"
        for start in range(0, len(store), 1024):
            rows = range(start, min(start + 1024, len(store)))
            for row, atoms in zip(rows, store.read(list(rows))):
                for j, p in enumerate(pressures):
                    yield (atoms if j == len(pressures) - 1 else atoms.copy()), {
                        "kind": kind, "iteration": int(arrays.iteration[row]),
                        "structure_id": int(arrays.structure_id[row]), "status": status,
                        "composition": reduced_formula(counts[row], elements),
                        "energy": float(arrays.energy[row]), "enthalpy": float(enthalpy[j][row]),
                        "e_hull": float(e_hull[j][row]), "pressure_gpa": p, "source": str(arrays.source[row])}


def campaign_records(directory, elements: Sequence[str], pressure: float | Sequence[float], *,
                     kinds: Sequence[str] = KINDS, symprec: Optional[float] = 0.1) -> Iterator[tuple]:
    """(Atoms, fields) of every structure of a campaign directory (see the module docstring);
    ``pressure``: the campaign's pressure or pressures (GPa). Labels give one record per
    (frame, pressure); relaxed and final structures one, at the pressure they were relaxed at.
    ``symprec`` None leaves the space group out (faster for millions of structures)."""
    from ..csp.symmetry import space_group

    pressures = [float(p) for p in (pressure if isinstance(pressure, (list, tuple)) else [pressure])]
    paths = CampaignPaths(Path(directory))
    if not paths.state.exists() and not paths.labels.exists():
        raise UserError(f"{directory} is not a campaign directory (no state.json or labels.h5): give "
                        "the output_dir of a campaign")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise UserError(f"export --kinds: unknown {unknown}; use some of {', '.join(KINDS)}")
    several = len(pressures) > 1

    def final_records():
        for p in pressures:
            yield from store_records(paths.at_pressure(p if several else None).final / "relaxed.h5",
                                     "final", elements, p)

    sources = {"relaxed": lambda: relaxed_records(paths, elements, pressures[0]),
               "label": lambda: store_records(paths.labels, "label", elements, pressures),
               "final": final_records}
    last = (None, None)   # a label's records at several pressures follow each other: one spglib call
    for kind in KINDS:
        if kind not in kinds:
            continue
        for atoms, fields in sources[kind]():
            fields["enthalpy_per_atom"] = fields["enthalpy"] / len(atoms)
            if symprec is not None:
                key = (kind, fields["structure_id"], fields["iteration"], fields.get("source"),
                       None if kind == "label" else fields["pressure_gpa"])   # final: one cell per P
                if last[0] != key:
                    last = (key, space_group(atoms, symprec))
                fields["space_group"], fields["space_group_number"] = last[1]
            atoms.info.clear()
            yield atoms, {key: fields[key] for key in FIELDS if key in fields}


def infer_elements(directory) -> list[str]:
    """Element symbols present in a campaign's label store, ordered by electronegativity."""
    from ase.data import chemical_symbols

    from ..csp.export import order_elements
    from ..data.store import FrameStore

    paths = CampaignPaths(Path(directory))
    if not paths.labels.exists():
        raise UserError(f"{directory}: no labels.h5 to read the elements from; give --config")
    with FrameStore(paths.labels, mode="r") as store:
        numbers = np.unique(store.read_arrays(strings=False).numbers)
    return order_elements(chemical_symbols[int(z)] for z in numbers)


# -- writers ----------------------------------------------------------------------------------------

def _clean(fields: dict) -> dict:
    """Drop NaN and empty strings (ASE db and JSON have no NaN)."""
    return {k: v for k, v in fields.items()
            if not (isinstance(v, float) and not math.isfinite(v)) and v != ""}


def write_catalog(records, path, fmt: str) -> int:
    """Write (Atoms, fields) records as ``fmt`` (a key of :data:`FORMATS`) to ``path``, replacing
    it; returns the number written. Written under a temporary name and renamed when complete."""
    if fmt not in FORMATS:
        raise UserError(f"export --format {fmt!r}: use one of {', '.join(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp" + path.suffix)
    tmp.unlink(missing_ok=True)
    count = {"ase-db": _write_ase_db, "extxyz": _write_extxyz, "pymatgen-json": _write_pymatgen}[fmt](
        records, tmp)
    tmp.replace(path)
    return count


def _write_ase_db(records, path: Path) -> int:
    from ase.db import connect

    count = 0
    with connect(path, type="db", append=False) as db:  # one transaction
        for atoms, fields in records:
            db.write(atoms, key_value_pairs={k: v for k, v in _clean(fields).items() if k != "energy"})
            count += 1
    return count


def _write_extxyz(records, path: Path) -> int:
    from ase.io import write

    count = 0
    with open(path, "w") as handle:
        for atoms, fields in records:
            atoms.info.update({k: v for k, v in _clean(fields).items() if k != "energy"})
            write(handle, atoms, format="extxyz")
            count += 1
    return count


def _write_pymatgen(records, path: Path) -> int:
    from pymatgen.core import Lattice, Structure

    count = 0
    with open(path, "w") as handle:
        handle.write("[\n")
        for atoms, fields in records:
            structure = Structure(Lattice(np.asarray(atoms.cell.array)), atoms.get_chemical_symbols(),
                                  atoms.positions, coords_are_cartesian=True, properties=_clean(fields))
            handle.write(("" if count == 0 else ",\n") + json.dumps(structure.as_dict()))
            count += 1
        handle.write("\n]\n")
    return count
