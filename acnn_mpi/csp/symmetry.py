"""Space groups of relaxed structures with spglib (SPEC §7), and their symmetrised cells.

``symprec`` is spglib's distance tolerance in Å (the campaign's ``search.symprec``, 0.1 Å by
default: ML-relaxed structures are symmetric to about that). A structure spglib cannot analyse
(atoms on top of each other, a degenerate cell) is reported as P1.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable

import numpy as np

SYMPREC = 0.1


def _spglib_cell(atoms) -> tuple:
    return (np.asarray(atoms.cell.array, float), atoms.get_scaled_positions(wrap=True),
            np.asarray(atoms.numbers))


def _dataset(atoms, symprec: float, angle_tolerance: float):
    import spglib

    cell = _spglib_cell(atoms)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return spglib.get_symmetry_dataset(cell, symprec=symprec, angle_tolerance=angle_tolerance)
        except Exception:  # spglib raises instead of returning None when told to
            return None


def space_group(atoms, symprec: float = SYMPREC, angle_tolerance: float = -1.0) -> tuple[str, int]:
    """(Hermann-Mauguin symbol, number) of a periodic ASE ``Atoms``, e.g. ('Fm-3m', 225).

    Args:
        symprec: distance tolerance, Å.
        angle_tolerance: degrees; -1 lets spglib choose.
    """
    if symprec <= 0:
        raise ValueError(f"symprec must be positive (Å), got {symprec}")
    dataset = _dataset(atoms, symprec, angle_tolerance)
    if dataset is None:
        return "P1", 1
    return str(dataset.international), int(dataset.number)


def space_groups(structures: Iterable, symprec: float = SYMPREC) -> list[tuple[str, int]]:
    """:func:`space_group` of each structure."""
    return [space_group(atoms, symprec) for atoms in structures]


def standardized(atoms, symprec: float = SYMPREC, primitive: bool = False):
    """The spglib standardized conventional (or primitive) cell as ASE ``Atoms``; the structure
    itself when spglib fails. Positions are idealized to the symmetry found at ``symprec``."""
    out = _standard_cell(atoms, symprec, -1.0, primitive)
    if out is None:
        return atoms.copy()
    out.info.update(atoms.info)
    return out


# -- symmetrised structures (refined cells with their Wyckoff sites) -------------------------------

#: tolerance (Å) for re-reading the symmetry of an already idealized cell
_IDEAL_SYMPREC = 1e-4


@dataclass
class WyckoffSite:
    """One symmetry-distinct site of a cell: ``multiplicity`` atoms of ``element`` on Wyckoff
    position ``letter`` (site symmetry ``site_symmetry``), one representative at ``position``
    (fractional coordinates of that cell)."""

    element: str
    multiplicity: int
    letter: str
    site_symmetry: str
    position: tuple[float, float, float]

    @property
    def label(self) -> str:
        """'4a': the multiplicity in this cell and the letter."""
        return f"{self.multiplicity}{self.letter}"


@dataclass
class CellSymmetry:
    """A cell with its symmetry operations in its own basis (fractional coordinates).

    Attributes:
        atoms: ASE ``Atoms`` of the cell (idealized positions).
        rotations: (S, 3, 3) int, x' = R x + t on column vectors of fractional coordinates.
        translations: (S, 3) float.
        sites: one :class:`WyckoffSite` per orbit, in the order of first appearance.
        site_of_atom: (N,) index into ``sites`` of each atom.
    """

    atoms: object
    rotations: np.ndarray
    translations: np.ndarray
    sites: list[WyckoffSite]
    site_of_atom: np.ndarray


@dataclass
class Symmetrized:
    """A structure refined to its space group at a stated tolerance (spglib).

    Attributes:
        space_group: Hermann-Mauguin symbol, e.g. 'Fm-3m'; ``number``: 1-230; ``hall``: the Hall
            symbol of the setting; ``crystal_system``.
        symprec: distance tolerance of the refinement, Å; ``angle_tolerance``: degrees (-1:
            spglib's choice).
        conventional, primitive: the standardized cells (:class:`CellSymmetry`); Wyckoff letters
            are those of the conventional (International Tables) setting in both.
        refined: False when spglib could not analyse the structure (then P1, cells unchanged).
    """

    space_group: str
    number: int
    hall: str
    crystal_system: str
    symprec: float
    angle_tolerance: float
    conventional: CellSymmetry
    primitive: CellSymmetry
    refined: bool = True

    def as_dict(self) -> dict:
        """JSON-ready summary: space group, tolerance, cell sizes and Wyckoff sites."""
        return {
            "space_group": self.space_group, "space_group_number": self.number, "hall": self.hall,
            "crystal_system": self.crystal_system, "symprec_angstrom": self.symprec,
            "angle_tolerance_degrees": self.angle_tolerance, "refined": self.refined,
            "conventional_atoms": len(self.conventional.atoms),
            "primitive_atoms": len(self.primitive.atoms),
            "conventional_cell": _cell_parameters(self.conventional.atoms),
            "primitive_cell": _cell_parameters(self.primitive.atoms),
            "wyckoff_sites": [{"element": s.element, "wyckoff": s.label, "multiplicity": s.multiplicity,
                               "letter": s.letter, "site_symmetry": s.site_symmetry,
                               "position": [round(float(x), 6) for x in s.position]}
                              for s in self.conventional.sites],
        }


def crystal_system(number: int) -> str:
    """The crystal system of space group ``number`` (1-230)."""
    for top, name in ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"),
                      (167, "trigonal"), (194, "hexagonal"), (230, "cubic")):
        if number <= top:
            return name
    raise ValueError(f"space group number {number} is not in 1-230")


def _cell_parameters(atoms) -> dict:
    a, b, c, alpha, beta, gamma = atoms.cell.cellpar()
    values = {"a": a, "b": b, "c": c, "alpha": alpha, "beta": beta, "gamma": gamma,
              "volume": atoms.get_volume()}
    return {key: round(float(value), 6) for key, value in values.items()}


def _cell_symmetry(atoms, dataset) -> CellSymmetry:
    """Operations, orbits and Wyckoff letters of ``atoms`` from its spglib dataset."""
    symbols = atoms.get_chemical_symbols()
    scaled = atoms.get_scaled_positions(wrap=True)
    equivalent = np.asarray(dataset.equivalent_atoms)
    letters = np.asarray(dataset.wyckoffs)
    sites, index = [], {}
    site_of_atom = np.zeros(len(atoms), dtype=np.int64)
    for atom, orbit in enumerate(equivalent):
        if orbit not in index:
            index[orbit] = len(sites)
            sites.append(WyckoffSite(element=symbols[atom], multiplicity=int((equivalent == orbit).sum()),
                                     letter=str(letters[atom]),
                                     site_symmetry=str(dataset.site_symmetry_symbols[atom]).strip(),
                                     position=tuple(float(x) for x in scaled[atom])))
        site_of_atom[atom] = index[orbit]
    return CellSymmetry(atoms=atoms, rotations=np.asarray(dataset.rotations, dtype=np.int64),
                        translations=np.asarray(dataset.translations, dtype=float), sites=sites,
                        site_of_atom=site_of_atom)


def _p1(atoms, symprec: float, angle_tolerance: float) -> Symmetrized:
    symbols = atoms.get_chemical_symbols()
    scaled = atoms.get_scaled_positions(wrap=True)
    cell = CellSymmetry(atoms=atoms.copy(), rotations=np.eye(3, dtype=np.int64)[None],
                        translations=np.zeros((1, 3)),
                        sites=[WyckoffSite(s, 1, "a", "1", tuple(float(x) for x in p))
                               for s, p in zip(symbols, scaled)],
                        site_of_atom=np.arange(len(atoms)))
    return Symmetrized("P1", 1, "P 1", "triclinic", symprec, angle_tolerance, cell, cell, refined=False)


def _standard_cell(atoms, symprec: float, angle_tolerance: float, primitive: bool):
    """spglib's idealized standardized cell as ASE ``Atoms``, or None when spglib fails."""
    import spglib
    from ase import Atoms

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            result = spglib.standardize_cell(_spglib_cell(atoms), to_primitive=primitive,
                                             no_idealize=False, symprec=symprec,
                                             angle_tolerance=angle_tolerance)
        except Exception:  # spglib raises instead of returning None when told to
            result = None
    if result is None:
        return None
    lattice, scaled, numbers = result
    out = Atoms(numbers=numbers, cell=lattice, scaled_positions=np.mod(scaled, 1.0), pbc=True)
    out.wrap(eps=1e-8)
    return out


def symmetrize(atoms, symprec: float = SYMPREC, angle_tolerance: float = -1.0) -> Symmetrized:
    """Refine a periodic structure to the space group spglib finds at ``symprec`` (Å).

    Returns the idealized standardized conventional and primitive cells with their symmetry
    operations and Wyckoff sites (letters of the conventional setting); P1 with the cell as given
    (``refined`` False) when spglib cannot analyse the structure.
    """
    if symprec <= 0:
        raise ValueError(f"symprec must be positive (Å), got {symprec}")
    dataset = _dataset(atoms, symprec, angle_tolerance)
    if dataset is None:
        return _p1(atoms, symprec, angle_tolerance)
    conventional = _standard_cell(atoms, symprec, angle_tolerance, primitive=False)
    primitive = _standard_cell(atoms, symprec, angle_tolerance, primitive=True)
    if conventional is None or primitive is None:
        return _p1(atoms, symprec, angle_tolerance)
    number = int(dataset.number)
    ideal_conv = _dataset(conventional, _IDEAL_SYMPREC, -1.0)
    ideal_prim = _dataset(primitive, _IDEAL_SYMPREC, -1.0)
    if ideal_conv is None or ideal_prim is None or {ideal_conv.number, ideal_prim.number} != {number}:
        # idealized positions should carry exactly the group found; re-read at the user's tolerance
        ideal_conv = _dataset(conventional, symprec, angle_tolerance)
        ideal_prim = _dataset(primitive, symprec, angle_tolerance)
    # spglib names Wyckoff positions in the standard setting whatever the input cell, so the
    # primitive cell's letters are the conventional ones
    conv = _cell_symmetry(conventional, ideal_conv)
    prim = _cell_symmetry(primitive, ideal_prim)
    return Symmetrized(space_group=str(dataset.international), number=number, hall=str(dataset.hall),
                       crystal_system=crystal_system(number), symprec=float(symprec),
                       angle_tolerance=float(angle_tolerance), conventional=conv, primitive=prim)

