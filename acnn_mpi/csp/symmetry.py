"""Space groups of relaxed structures with spglib (SPEC §7).

``symprec`` is spglib's distance tolerance in Å (the campaign's ``search.symprec``, 0.1 Å by
default: ML-relaxed structures are symmetric to about that). A structure spglib cannot analyse
(atoms on top of each other, a degenerate cell) is reported as P1.
"""

from __future__ import annotations

import warnings
from typing import Iterable

import numpy as np

SYMPREC = 0.1


def _dataset(atoms, symprec: float, angle_tolerance: float):
    import spglib

    cell = (np.asarray(atoms.cell.array, float), atoms.get_scaled_positions(wrap=True),
            np.asarray(atoms.numbers))
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
    import spglib
    from ase import Atoms

    cell = (np.asarray(atoms.cell.array, float), atoms.get_scaled_positions(wrap=True),
            np.asarray(atoms.numbers))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            result = spglib.standardize_cell(cell, to_primitive=primitive, no_idealize=False,
                                             symprec=symprec)
        except Exception:
            result = None
    if result is None:
        return atoms.copy()
    lattice, scaled, numbers = result
    out = Atoms(numbers=numbers, cell=lattice, scaled_positions=scaled, pbc=True)
    out.info.update(atoms.info)
    return out
