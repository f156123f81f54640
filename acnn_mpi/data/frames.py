"""Labelled frames: where the labels of an ASE ``Atoms`` sit, and many frames packed as flat arrays.

A *labelled frame* is a structure (positions Å, cell Å, pbc, atomic numbers) with its total energy
(eV), forces (eV/Å) and, optionally, stress (3, 3) eV/Å³ in ASE's sign (positive = tensile), plus
bookkeeping: where it came from (``source``), the campaign iteration that labelled it, the
structure id, the labeller's name and free ``tags``.

:class:`FrameArrays` holds B frames with N atoms in all as flat arrays (per-atom arrays
concatenated, per-frame arrays stacked): the unit the HDF5 store writes and reads.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from math import gcd
from typing import Optional, Sequence

import numpy as np

from .. import keys

# Names of the store's columns that keys.py does not define (per frame unless said).
N_ATOMS = "n_atoms"              # (B,) int, atoms in each frame
ATOM_OFFSET = "atom_offset"      # (B,) int, index of each frame's first atom in the per-atom arrays
HAS_STRESS = "has_stress"        # (B,) bool, stress labelled
SOURCE = "source"                # (B,) str, where the frame came from (file, campaign stage)
ITERATION = "iteration"          # (B,) int, campaign iteration that labelled the frame
FORMULA = "formula"              # (B,) str, reduced formula such as "AuCu3"
LABELLER = "labeller"            # (B,) str, name of the labeller (DFT code, calculator)
TAGS = "tags"                    # (B,) str, free text

#: Value of ``structure_id`` for frames that have none.
NO_STRUCTURE_ID = -1


@dataclass(frozen=True)
class LabelKeys:
    """Where the labels of an ``Atoms`` are found; ``None`` means automatic.

    Automatic: the calculator's results first (energy: ``free_energy`` when reported, which is the
    energy the forces derive from, e.g. VASP's TOTEN; else ``energy``), then ``atoms.info``
    ``energy``/``stress``/``virial`` and ``atoms.arrays`` ``forces``. A given name (for instance
    ``REF_energy``) is looked up in ``info``/``arrays`` first, then in the calculator's results.
    ``virial`` (eV, W = -V σ) is used only when there is no stress.
    """

    energy: Optional[str] = None
    forces: Optional[str] = None
    stress: Optional[str] = None
    virial: Optional[str] = None


@dataclass
class Labels:
    """energy eV (None if absent), forces (n, 3) eV/Å, stress (3, 3) eV/Å³ ASE sign."""

    energy: Optional[float]
    forces: Optional[np.ndarray]
    stress: Optional[np.ndarray]


def _lookup(atoms, name: Optional[str], automatic: Sequence[str], per_atom: bool):
    results = atoms.calc.results if atoms.calc is not None else {}
    table = atoms.arrays if per_atom else atoms.info
    if name is not None:
        if name in table:
            return table[name]
        return results.get(name)
    for candidate in automatic:
        if candidate in results:
            return results[candidate]
    return table.get(automatic[-1])


def stress_matrix(value) -> np.ndarray:
    """(3, 3) from a Voigt 6-vector (xx yy zz yz xz xy), 9 components or a (3, 3) matrix."""
    value = np.asarray(value, dtype=np.float64)
    if value.shape == (6,):
        xx, yy, zz, yz, xz, xy = value
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    if value.size == 9:
        return value.reshape(3, 3)
    raise ValueError(f"stress/virial has shape {value.shape}, expected (6,), (9,) or (3, 3)")


def voigt(stress: np.ndarray) -> np.ndarray:
    """Voigt 6-vector (xx yy zz yz xz xy) of a (3, 3) stress, as ASE calculators report it."""
    s = np.asarray(stress, dtype=np.float64)
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


def frame_labels(atoms, label_keys: LabelKeys = LabelKeys()) -> Labels:
    """The labels of ``atoms`` as plain arrays (see :class:`LabelKeys` for where they are found).

    Raises:
        ValueError: a label cannot be interpreted (stress of a bad shape, virial of a zero-volume
            cell, an energy that is not a number).
    """
    energy = _lookup(atoms, label_keys.energy, ("free_energy", keys.ENERGY), per_atom=False)
    forces = _lookup(atoms, label_keys.forces, (keys.FORCES,), per_atom=True)
    stress = _lookup(atoms, label_keys.stress, (keys.STRESS,), per_atom=False)
    if energy is not None:
        energy = np.asarray(energy, dtype=np.float64)
        if energy.size != 1:
            raise ValueError(f"energy has shape {energy.shape}, expected a number")
        energy = float(energy.reshape(()))
    if forces is not None:
        forces = np.asarray(forces, dtype=np.float64)
    if stress is not None:
        stress = stress_matrix(stress)
    else:
        virial = _lookup(atoms, label_keys.virial, (keys.VIRIAL,), per_atom=False)
        if virial is not None:
            volume = abs(float(np.linalg.det(np.asarray(atoms.get_cell(), dtype=np.float64))))
            if volume < 1e-9:
                raise ValueError("virial given for a cell of zero volume (stress = -W/V undefined)")
            stress = -stress_matrix(virial) / volume
    return Labels(energy=energy, forces=forces, stress=stress)


def labelled_atoms(atoms, labels: Labels, info: Optional[dict] = None):
    """A copy of ``atoms`` (no calculator results) carrying ``labels`` on a SinglePointCalculator."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = atoms.copy()
    out.calc = None
    results = {}
    if labels.energy is not None:
        results["energy"] = labels.energy
    if labels.forces is not None:
        results["forces"] = labels.forces
    if labels.stress is not None:
        results["stress"] = voigt(labels.stress)
    if info is not None:
        out.info = dict(info)
    out.calc = SinglePointCalculator(out, **results)
    return out


def reduced_formula(numbers: Sequence[int]) -> str:
    """Reduced formula of a set of atoms, metals first then alphabetical ('AuCu3', 'Si', 'MgO')."""
    from ase.formula import Formula

    numbers = np.asarray(numbers, dtype=np.int64)
    if numbers.size == 0:
        return ""
    z, counts = np.unique(numbers, return_counts=True)
    divisor = 0
    for c in counts.tolist():
        divisor = gcd(divisor, c)
    from ase.data import chemical_symbols

    text = "".join(f"{chemical_symbols[a]}{c // divisor if c // divisor > 1 else ''}"
                   for a, c in zip(z.tolist(), counts.tolist()))
    return Formula(text).format("metal")


@dataclass
class FrameArrays:
    """B labelled frames with N atoms in all, as flat arrays (atoms of a frame are contiguous).

    Per atom: positions (N, 3) Å, numbers (N,) int64, forces (N, 3) eV/Å.
    Per frame: n_atoms (B,) int64, cell (B, 3, 3) Å (rows), pbc (B, 3) bool, energy (B,) eV,
    stress (B, 3, 3) eV/Å³ ASE sign (NaN where has_stress is False), has_stress (B,) bool,
    structure_id (B,) int64 (-1: none), iteration (B,) int64, and the strings source, formula,
    labeller, tags (B,) (numpy object arrays).
    """

    positions: np.ndarray
    numbers: np.ndarray
    forces: np.ndarray
    n_atoms: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: np.ndarray
    stress: np.ndarray
    has_stress: np.ndarray
    structure_id: np.ndarray
    iteration: np.ndarray
    source: np.ndarray
    formula: np.ndarray
    labeller: np.ndarray
    tags: np.ndarray

    PER_ATOM = (keys.POSITIONS, keys.NUMBERS, keys.FORCES)
    STRINGS = (SOURCE, FORMULA, LABELLER, TAGS)

    def __len__(self) -> int:
        return int(len(self.n_atoms))

    @classmethod
    def per_frame_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name not in cls.PER_ATOM)

    @property
    def offsets(self) -> np.ndarray:
        """(B + 1,) index of each frame's first atom, and N at the end."""
        out = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(self.n_atoms, out=out[1:])
        return out

    @classmethod
    def empty(cls) -> "FrameArrays":
        return cls(
            positions=np.zeros((0, 3)), numbers=np.zeros(0, np.int64), forces=np.zeros((0, 3)),
            n_atoms=np.zeros(0, np.int64), cell=np.zeros((0, 3, 3)), pbc=np.zeros((0, 3), bool),
            energy=np.zeros(0), stress=np.zeros((0, 3, 3)), has_stress=np.zeros(0, bool),
            structure_id=np.zeros(0, np.int64), iteration=np.zeros(0, np.int64),
            source=np.array([], object), formula=np.array([], object),
            labeller=np.array([], object), tags=np.array([], object),
        )

    @classmethod
    def from_atoms(cls, frames: Sequence, label_keys: LabelKeys = LabelKeys(), *,
                   source: Optional[str] = None, iteration: Optional[int] = None,
                   labeller: Optional[str] = None, tags: Optional[str] = None) -> "FrameArrays":
        """Pack ASE ``Atoms`` that carry energy and forces (validate them first).

        ``source``/``iteration``/``labeller``/``tags`` apply to every frame when given; otherwise
        each frame's ``atoms.info`` value of that name is used (default "", 0, "", "").
        ``structure_id`` comes from ``atoms.info`` (default -1).
        """
        if not frames:
            return cls.empty()
        labels = [frame_labels(a, label_keys) for a in frames]
        for i, lab in enumerate(labels):
            if lab.energy is None or lab.forces is None:
                raise ValueError(f"frame {i} has no energy or no forces (validate frames first)")

        def meta(name, given, default, kind):
            if given is not None:
                return [kind(given)] * len(frames)
            return [kind(a.info.get(name, default)) for a in frames]

        n_atoms = np.array([len(a) for a in frames], dtype=np.int64)
        stress = np.stack([lab.stress if lab.stress is not None else np.full((3, 3), np.nan)
                           for lab in labels])
        return cls(
            positions=np.concatenate([a.get_positions() for a in frames]).astype(np.float64),
            numbers=np.concatenate([a.get_atomic_numbers() for a in frames]).astype(np.int64),
            forces=np.concatenate([lab.forces.reshape(-1, 3) for lab in labels]),
            n_atoms=n_atoms,
            cell=np.stack([np.asarray(a.get_cell(), dtype=np.float64) for a in frames]),
            pbc=np.stack([np.asarray(a.get_pbc(), dtype=bool) for a in frames]),
            energy=np.array([lab.energy for lab in labels], dtype=np.float64),
            stress=stress,
            has_stress=np.array([lab.stress is not None for lab in labels], dtype=bool),
            structure_id=np.array(meta(keys.STRUCTURE_ID, None, NO_STRUCTURE_ID, int), np.int64),
            iteration=np.array(meta(ITERATION, iteration, 0, int), dtype=np.int64),
            source=np.array(meta(SOURCE, source, "", str), dtype=object),
            formula=np.array([reduced_formula(a.get_atomic_numbers()) for a in frames], dtype=object),
            labeller=np.array(meta(LABELLER, labeller, "", str), dtype=object),
            tags=np.array(meta(TAGS, tags, "", str), dtype=object),
        )

    def take(self, indices: Sequence[int]) -> "FrameArrays":
        """The frames ``indices`` (any order, repeats allowed) as new arrays."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        offsets = self.offsets
        counts = self.n_atoms[idx]
        first = np.zeros(len(idx), dtype=np.int64)
        if len(idx) > 1:
            np.cumsum(counts[:-1], out=first[1:])
        atom_index = np.repeat(offsets[idx] - first, counts) + np.arange(int(counts.sum()))
        data = {f.name: getattr(self, f.name)[atom_index if f.name in self.PER_ATOM else idx]
                for f in fields(self)}
        return FrameArrays(**data)

    def to_atoms(self) -> list:
        """The frames as ASE ``Atoms`` with a SinglePointCalculator (energy, forces, and stress
        where labelled) and ``info`` holding source, iteration, labeller, tags and structure_id
        (empty strings and structure_id -1 left out)."""
        from ase import Atoms

        offsets = self.offsets
        out = []
        for b in range(len(self)):
            lo, hi = offsets[b], offsets[b + 1]
            atoms = Atoms(numbers=self.numbers[lo:hi], positions=self.positions[lo:hi],
                          cell=self.cell[b], pbc=self.pbc[b])
            info = {ITERATION: int(self.iteration[b])}
            for name in (SOURCE, LABELLER, TAGS):
                value = getattr(self, name)[b]
                if value:  # extended XYZ cannot hold an empty string
                    info[name] = str(value)
            if self.structure_id[b] != NO_STRUCTURE_ID:
                info[keys.STRUCTURE_ID] = int(self.structure_id[b])
            labels = Labels(energy=float(self.energy[b]), forces=self.forces[lo:hi].copy(),
                            stress=self.stress[b].copy() if self.has_stress[b] else None)
            out.append(labelled_atoms(atoms, labels, info))
        return out
