"""Structure I/O of the processing stage: read relaxation results, write CIF / POSCAR.

**Reading.** Processing works on arrays plus a structure loader (:class:`ResultSet`), so that
millions of results never need to be in memory as ``Atoms``. :func:`read_results` picks a reader
by file suffix from :data:`READERS`; a reader is any function ``(path, pressure, elements) ->
ResultSet``. Built in: extended XYZ, one frame per relaxed structure, with ``info['enthalpy']``
(eV, at ``info['pressure']`` GPa if given) and/or the energy (eV, ``info['energy']`` or the
frame's calculator) from which H = E + PV is formed at the requested pressure. Optional per
frame: ``structure_id`` (int), ``status`` ('converged', 'not_converged', 'unphysical',
'failed': no energy needed), ``reason`` (str). The HDF5 shards of the relaxation stage plug
in under '.h5'/'.hdf5' (:func:`read_relax_results`: the ``relax`` command's output directory).

**Writing.** :func:`export_structures` writes any selection as CIF or VASP POSCAR files with
names that sort by rank and say formula, space group and id, as they are (P1).
:func:`export_symmetrized` writes them refined to their space group (:func:`acnn_mpi.csp.symmetry.symmetrize`
at a stated ``symprec``): per structure ``NAME.cif`` and ``NAME.vasp`` (standardized conventional cell),
``primitive/NAME.cif`` and ``primitive/NAME.vasp`` (standardized primitive cell), and ``NAME.json``
(space group, Hall symbol, tolerance, Wyckoff sites, cell parameters and whatever the caller adds:
enthalpy, E_hull, id). The CIFs carry the space group (symbol and number), its operations in that
cell's basis, one atom per orbit with ``_atom_site_symmetry_multiplicity`` and ``_atom_site_Wyckoff_symbol``, and the
tolerance in a comment and in ``_acnn_mpi_symprec_angstrom``; ``index.json`` lists every structure.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import UserError
from ..units import gpa_to_ev_per_a3

log = logging.getLogger(__name__)

#: relaxation outcomes, as acnn_mpi.relax.status names them
CONVERGED = "converged"
NOT_CONVERGED = "not_converged"
UNPHYSICAL = "unphysical"
FAILED = "failed"


@dataclass
class ResultSet:
    """Relaxed structures as arrays (one row each) and a loader for the full structures.

    Attributes:
        elements: element symbols, the column order of ``counts``.
        ids: (B,) int64 campaign-wide structure ids.
        counts: (B, n) int atoms of each element per cell (int16 where they fit, from the HDF5
            reader: sum or cast before arithmetic that could exceed 32,767).
        enthalpy: (B,) eV, H = E + PV at ``pressure``.
        pressure: GPa (None when unknown; then the enthalpies are taken as given).
        volume: (B,) Å³.
        converged: (B,) bool, the relaxation met its criteria.
        physical: (B,) bool, not classified unphysical ('failed' counts as physical, not
            converged; its enthalpy is NaN when it has none).
        reason: (B,) str, why a structure is unphysical or failed ('' otherwise).
        load: row -> ASE ``Atoms``.
        fingerprints: optional (B, D) fingerprints computed next to the relaxation.
        source: where the results came from (for messages).
    """

    elements: list[str]
    ids: np.ndarray
    counts: np.ndarray
    enthalpy: np.ndarray
    pressure: Optional[float]
    volume: np.ndarray
    converged: np.ndarray
    physical: np.ndarray
    reason: list[str]
    load: Callable[[int], object] = field(repr=False)
    fingerprints: Optional[np.ndarray] = field(default=None, repr=False)
    source: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_atoms(self) -> np.ndarray:
        return self.counts.sum(axis=1)


def order_elements(symbols) -> list[str]:
    """Distinct symbols ordered as chemists write formulas: by Pauling electronegativity
    (Be-P-N-O, Ca-Mg-H), ties alphabetical."""
    from pymatgen.core import Element

    def key(s):
        x = Element(s).X
        return (x if x == x else 99.0, s)

    return sorted(set(symbols), key=key)


def read_extxyz_results(path, pressure: Optional[float] = None,
                        elements: Optional[Sequence[str]] = None) -> ResultSet:
    """Read relaxation results from an extended XYZ file (see the module docstring).

    Args:
        path: the file.
        pressure: GPa; when given every enthalpy is converted to it (needs the energy, or the
            frame's own ``info['pressure']`` next to its enthalpy).
        elements: column order (default :func:`order_elements` of the symbols present).
    """
    from ase.io import read

    from .hull import enthalpy as enthalpy_from

    try:
        frames = read(str(path), index=":", format="extxyz")
    except FileNotFoundError:
        raise UserError(f"results file {path} does not exist") from None
    except Exception as error:
        raise UserError(f"cannot read {path} as extended XYZ: {error}") from None
    if not frames:
        raise UserError(f"{path} holds no structures")
    if elements is None:
        elements = order_elements(s for a in frames for s in a.get_chemical_symbols())
    elements = list(elements)
    index = {s: k for k, s in enumerate(elements)}
    n = len(frames)
    counts = np.zeros((n, len(elements)), dtype=np.int64)
    h = np.full(n, np.nan)
    volume = np.zeros(n)
    ids = np.arange(n, dtype=np.int64)
    status = []
    reasons = []
    assumed_pressure = False
    for row, atoms in enumerate(frames):
        for s in atoms.get_chemical_symbols():
            if s not in index:
                raise UserError(f"{path} frame {row} contains {s}, not in the elements {elements}")
            counts[row, index[s]] += 1
        volume[row] = atoms.get_volume() if atoms.cell.rank == 3 else np.nan
        info = atoms.info
        energy = info.get("energy")
        if energy is None and atoms.calc is not None:
            energy = atoms.calc.results.get("energy")
        frame_pressure = info.get("pressure")
        given_h = info.get("enthalpy")
        if pressure is not None and energy is not None:
            h[row] = enthalpy_from(energy, volume[row], pressure)
        elif given_h is not None:
            h[row] = float(given_h)
            if pressure is not None:
                if frame_pressure is None:
                    assumed_pressure = True
                else:
                    h[row] += gpa_to_ev_per_a3(pressure - float(frame_pressure)) * volume[row]
        elif energy is not None:
            p = float(frame_pressure) if frame_pressure is not None else 0.0
            h[row] = enthalpy_from(energy, volume[row], p)
        elif info.get("status") != FAILED:
            raise UserError(f"{path} frame {row} has neither info['enthalpy'] nor an energy")
        if "structure_id" in info:
            ids[row] = int(info["structure_id"])
        status.append(str(info.get("status", CONVERGED)))
        reasons.append(str(info.get("reason", "")))
    if pressure is None:
        pressures = {float(a.info["pressure"]) for a in frames if "pressure" in a.info}
        pressure = pressures.pop() if len(pressures) == 1 else None
    if assumed_pressure:
        log.warning("%s: frames with an enthalpy but no energy or info['pressure'] are taken to be "
                    "at %s GPa", path, pressure)
    if len(set(ids.tolist())) != n:
        raise UserError(f"{path}: structure_id values repeat; every structure needs its own id")
    status = np.array(status)
    known = {CONVERGED, NOT_CONVERGED, UNPHYSICAL, FAILED}
    unknown = sorted(set(status.tolist()) - known)
    if unknown:
        raise UserError(f"{path}: unknown status {unknown}; use one of {sorted(known)}")
    return ResultSet(elements=elements, ids=ids, counts=counts, enthalpy=h, pressure=pressure,
                     volume=volume, converged=status == CONVERGED, physical=status != UNPHYSICAL,
                     reason=reasons, load=lambda row: frames[row], source=str(path))


def _count_dtype(counts: np.ndarray) -> type:
    """The smallest of int16/int32/int64 that holds the atom counts."""
    top = int(counts.max(initial=0))
    return next(t for t in (np.int16, np.int32, np.int64) if top <= np.iinfo(t).max)


def read_relax_results(path, pressure: Optional[float] = None,
                       elements: Optional[Sequence[str]] = None, *, columns: Sequence[str] = (),
                       empty_ok: bool = False, lazy: bool = False) -> ResultSet:
    """Results of the relaxation service: an output directory of ``relax`` or a campaign's
    ``iter_K/relax`` (``DIR/shards/*.h5``), its ``index.h5`` or one shard file. Enthalpies are
    converted to ``pressure`` (GPa) when given; ``columns``: extra shard columns to read
    (``fingerprints`` becomes ``ResultSet.fingerprints``); ``empty_ok``: no shard is no error;
    ``lazy``: those and the reasons stay on disk, read by row (:class:`acnn_mpi.relax.shards.ShardColumn`)."""
    from ..elements import parse_formula
    from ..relax import shards
    from ..units import gpa_to_ev_per_a3

    path = Path(path)
    directory = path if path.is_dir() else path.parent.parent if path.parent.name == shards.SHARD_DIR \
        else path.parent
    if not shards.list_shards(directory) and not empty_ok:
        raise UserError(f"{path}: no relaxation shards ({directory}/{shards.SHARD_DIR}/rank*.h5); give "
                        "the output directory of `python -m acnn_mpi relax`")
    relaxed = shards.read_results(directory, columns=columns, lazy=lazy)
    if len(relaxed) == 0 and not empty_ok:
        raise UserError(f"{directory} holds no committed relaxation results")
    formulas, row_formula = np.unique(relaxed.formula, return_inverse=True)
    per_formula = [parse_formula(f, f"{directory} formula") for f in formulas]
    if elements is None:
        elements = order_elements(s for counts in per_formula for s in counts)
    elements = list(elements)
    outside = sorted({s for counts in per_formula for s in counts} - set(elements))
    if outside:
        raise UserError(f"{directory} holds {outside}, not in the elements {elements}")
    table = np.array([[c.get(s, 0) for s in elements] for c in per_formula], dtype=np.int64)
    table = table.reshape(-1, len(elements)).astype(_count_dtype(table))  # int16: 6 B per ternary row
    counts = table[row_formula.ravel()]
    enthalpy = np.asarray(relaxed.enthalpy, dtype=float)
    if pressure is not None and np.isfinite(relaxed.pressure_gpa):
        enthalpy = enthalpy + gpa_to_ev_per_a3(pressure - relaxed.pressure_gpa) * relaxed.volume
    status = np.asarray(relaxed.status)
    result = ResultSet(elements=elements, ids=np.asarray(relaxed.structure_id, dtype=np.int64),
                       counts=counts, enthalpy=enthalpy,
                       pressure=pressure if pressure is not None else relaxed.pressure_gpa,
                       volume=np.asarray(relaxed.volume, dtype=float),
                       converged=status == CONVERGED, physical=status != UNPHYSICAL,
                       reason=relaxed.reason, load=relaxed.atoms,
                       fingerprints=relaxed.extra.get("fingerprints"), source=str(directory))
    result.status = status
    result.steps = np.asarray(relaxed.steps)
    return result


#: file suffix -> reader
READERS: dict[str, Callable[..., ResultSet]] = {
    ".xyz": read_extxyz_results,
    ".extxyz": read_extxyz_results,
    ".h5": read_relax_results,
    ".hdf5": read_relax_results,
}


def read_results(path, pressure: Optional[float] = None,
                 elements: Optional[Sequence[str]] = None) -> ResultSet:
    """Read relaxation results with the reader registered for the path's suffix (a directory is
    read as HDF5 shards)."""
    path = Path(path)
    suffix = ".h5" if path.is_dir() else path.suffix.lower()
    reader = READERS.get(suffix)
    if reader is None:
        raise UserError(f"{path}: unknown results format {suffix!r}; use one of {sorted(READERS)}")
    return reader(path, pressure, elements)


def structure_name(rank: int, formula: str, space_group_number: int, structure_id: int) -> str:
    """'003_MgH2_sg136_id42': sorts by rank, safe as a file name."""
    formula = re.sub(r"[^A-Za-z0-9]", "", formula)
    return f"{rank:03d}_{formula}_sg{space_group_number}_id{structure_id}"


def export_structures(structures: Sequence, names: Sequence[str], directory,
                      fmt: str = "cif") -> list[Path]:
    """Write each ASE ``Atoms`` as ``directory/name.cif`` or ``directory/name.vasp`` (POSCAR,
    direct coordinates, species grouped).

    Returns the paths written.
    """
    from ase.io import write

    fmt = fmt.lower()
    if fmt not in ("cif", "poscar", "vasp"):
        raise ValueError(f"fmt must be 'cif' or 'poscar', got {fmt!r}")
    if len(structures) != len(names):
        raise ValueError("one name per structure")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for atoms, name in zip(structures, names):
        if fmt == "cif":
            path = directory / f"{name}.cif"
            write(path, atoms, format="cif")
        else:
            path = directory / f"{name}.vasp"
            write(path, atoms, format="vasp", direct=True, sort=True)
        paths.append(path)
    return paths


# -- symmetrised export ----------------------------------------------------------------------------

def _fraction(value: float) -> str:
    from fractions import Fraction

    fraction = Fraction(float(value) % 1.0).limit_denominator(24)
    return "" if fraction == 0 else f"+{fraction.numerator}/{fraction.denominator}"


def symmetry_operation_text(rotation: np.ndarray, translation: np.ndarray) -> str:
    """CIF form of x' = R x + t in fractional coordinates, e.g. '-y,x-y,z+1/3'."""
    terms = []
    for row, shift in zip(np.asarray(rotation), np.asarray(translation)):
        text = "".join(("+" if c > 0 else "-") + (f"{abs(int(c))}" if abs(c) != 1 else "") + axis
                       for c, axis in zip(row, "xyz") if c != 0)
        terms.append(text.lstrip("+") + _fraction(shift))
    return ",".join(terms)


def symmetrized_cif(sym, name: str, primitive: bool = False) -> str:
    """CIF text of the conventional (or primitive) cell of a
    :class:`~acnn_mpi.csp.symmetry.Symmetrized` structure."""
    from collections import Counter

    cell = sym.primitive if primitive else sym.conventional
    atoms = cell.atoms
    centred_primitive = primitive and len(atoms) < len(sym.conventional.atoms)
    a, b, c, alpha, beta, gamma = atoms.cell.cellpar()
    formula = " ".join(f"{s}{n}" if n > 1 else s for s, n in Counter(atoms.get_chemical_symbols()).items())
    lines = [f"# {name}{' (primitive cell)' if primitive else ''}: refined by acnn_mpi with spglib, "
             f"symprec = {sym.symprec:g} Å, angle tolerance = {sym.angle_tolerance:g}°"
             f"{'' if sym.refined else ' (not refined: P1)'}",
             f"# {sym.crystal_system}; symmetry operations in this cell's basis"
             f"{' (a non-standard setting of the centred group)' if centred_primitive else ''}",
             f"data_{re.sub(r'[^A-Za-z0-9_]', '_', name)}",
             f"_symmetry_space_group_name_H-M   '{sym.space_group}'",
             f"_space_group_name_Hall           '{sym.hall}'",
             f"_symmetry_Int_Tables_number      {sym.number}",
             f"_acnn_mpi_symprec_angstrom       {sym.symprec:g}",
             f"_cell_length_a    {a:.6f}", f"_cell_length_b    {b:.6f}", f"_cell_length_c    {c:.6f}",
             f"_cell_angle_alpha {alpha:.6f}", f"_cell_angle_beta  {beta:.6f}",
             f"_cell_angle_gamma {gamma:.6f}", f"_cell_volume      {atoms.get_volume():.6f}",
             f"_chemical_formula_sum '{formula}'", "",
             "loop_", "_symmetry_equiv_pos_site_id", "_symmetry_equiv_pos_as_xyz"]
    lines += [f"{k} '{symmetry_operation_text(r, t)}'"
              for k, (r, t) in enumerate(zip(cell.rotations, cell.translations), start=1)]
    lines += ["", "loop_", "_atom_site_label", "_atom_site_type_symbol",
              "_atom_site_symmetry_multiplicity", "_atom_site_Wyckoff_symbol",
              "_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z", "_atom_site_occupancy"]
    numbering = Counter()
    for site in cell.sites:
        numbering[site.element] += 1
        x, y, z = (float(v) % 1.0 for v in site.position)
        lines.append(f"{site.element}{numbering[site.element]} {site.element} {site.multiplicity} "
                     f"{site.letter} {x:.8f} {y:.8f} {z:.8f} 1")
    return "\n".join(lines) + "\n"


def write_symmetrized(atoms, name: str, directory, symprec: float = 0.1,
                      formats: Sequence[str] = ("cif", "poscar"), extra: Optional[dict] = None) -> dict:
    """Refine one structure and write its conventional and primitive cells (see the module
    docstring) plus ``NAME.json``; returns that JSON's content (with the file names written,
    relative to ``directory``)."""
    import json

    from ase.io import write

    from .symmetry import symmetrize

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sym = symmetrize(atoms, symprec)
    (directory / "primitive").mkdir(exist_ok=True)
    files = []
    for folder, primitive in (("", False), ("primitive/", True)):
        cell = sym.primitive if primitive else sym.conventional
        if "cif" in formats:
            (directory / f"{folder}{name}.cif").write_text(symmetrized_cif(sym, name, primitive))
            files.append(f"{folder}{name}.cif")
        if "poscar" in formats:
            write(directory / f"{folder}{name}.vasp", cell.atoms, format="vasp", direct=True, sort=True)
            files.append(f"{folder}{name}.vasp")
    record = {"name": name, **(extra or {}), **sym.as_dict(), "files": files}
    (directory / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def export_symmetrized(structures: Sequence, names: Sequence[str], directory, symprec: float = 0.1,
                       formats: Sequence[str] = ("cif", "poscar"),
                       extras: Optional[Sequence[dict]] = None) -> list[dict]:
    """:func:`write_symmetrized` for each structure, and ``directory/index.json`` listing them all
    (name, space group, Wyckoff sites, tolerance, the caller's ``extras``)."""
    import json

    if len(structures) != len(names) or (extras is not None and len(extras) != len(names)):
        raise ValueError("one name (and one extra dict, if given) per structure")
    unknown = set(formats) - {"cif", "poscar"}
    if unknown or not formats:
        raise ValueError(f"formats must be among 'cif' and 'poscar', got {list(formats)}")
    directory = Path(directory)
    records = [write_symmetrized(atoms, name, directory, symprec, formats,
                                 extras[k] if extras is not None else None)
               for k, (atoms, name) in enumerate(zip(structures, names))]
    (directory / "index.json").write_text(json.dumps({"symprec_angstrom": symprec, "structures": records},
                                                     indent=1) + "\n")
    return records


def export_hull_structures(store_path, phases: Sequence[dict], candidates: Sequence[dict], directory,
                           symprec: float = 0.1, ehull_max_mev: float = 50.0) -> dict[int, dict]:
    """Symmetrised files (:func:`export_symmetrized`) of a campaign hull's stable phases and of its
    candidates within ``ehull_max_mev`` (meV/atom), read from the frames of a label store.

    ``phases`` and ``candidates`` are the dicts of ``campaign.processing.labels_hull`` (formula,
    structure_id, frame, e_hull_meV, formation_enthalpy_meV). Returns {structure_id: record}, the
    record's ``files`` relative to ``directory``.
    """
    from ..data.store import FrameStore
    from .symmetry import space_group

    stable_ids = {int(p["structure_id"]) for p in phases}
    chosen = list(phases) + [c for c in candidates if int(c["structure_id"]) not in stable_ids
                             and c["e_hull_meV"] <= ehull_max_mev]
    if not chosen:
        return {}
    with FrameStore(store_path, mode="r") as store:
        structures = store.read([int(c["frame"]) for c in chosen])
    for atoms in structures:
        atoms.calc = None
    names = [structure_name(rank, c["formula"], space_group(atoms, symprec)[1], int(c["structure_id"]))
             for rank, (c, atoms) in enumerate(zip(chosen, structures), start=1)]
    extras = [{"formula": c["formula"], "structure_id": int(c["structure_id"]),
               "stable": int(c["structure_id"]) in stable_ids, "frame": int(c["frame"]),
               "formation_enthalpy_meV_per_atom": c["formation_enthalpy_meV"],
               "e_hull_meV_per_atom": c["e_hull_meV"]} for c in chosen]
    records = export_symmetrized(structures, names, directory, symprec, extras=extras)
    return {r["structure_id"]: r for r in records}
