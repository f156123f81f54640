"""Batched periodic structures: flat per-atom tensors plus per-structure tensors.

A :class:`Batch` holds B structures with N atoms in all. Atoms of one structure are contiguous and
``system_idx`` (N,) tells which structure each atom belongs to; it is sorted ascending. Models,
optimizers and data loaders all speak this one type.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import numpy as np
import torch


@dataclass
class Batch:
    """B periodic structures of different sizes, as flat tensors.

    Attributes:
        positions: (N, 3) Cartesian positions, Å.
        numbers: (N,) atomic numbers, int64.
        cell: (B, 3, 3) lattice vectors as rows, Å.
        pbc: (B, 3) periodicity flags, bool.
        system_idx: (N,) structure index of each atom, int64, sorted ascending.
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    system_idx: torch.Tensor

    @property
    def n_systems(self) -> int:
        return int(self.cell.shape[0])

    @property
    def n_atoms(self) -> torch.Tensor:
        """(B,) number of atoms in each structure."""
        return torch.bincount(self.system_idx, minlength=self.n_systems)

    @property
    def volume(self) -> torch.Tensor:
        """(B,) cell volumes, Å³ (absolute value of the determinant)."""
        return torch.linalg.det(self.cell).abs()

    @property
    def device(self) -> torch.device:
        return self.positions.device

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    def atom_offsets(self) -> torch.Tensor:
        """(B + 1,) index of each structure's first atom, and N at the end."""
        counts = self.n_atoms
        offsets = torch.zeros(self.n_systems + 1, dtype=torch.long, device=self.device)
        offsets[1:] = torch.cumsum(counts, 0)
        return offsets

    def to(self, device=None, dtype=None) -> "Batch":
        """Copy to another device and/or float dtype (integer tensors keep theirs)."""
        return Batch(
            positions=self.positions.to(device=device, dtype=dtype),
            numbers=self.numbers.to(device=device),
            cell=self.cell.to(device=device, dtype=dtype),
            pbc=self.pbc.to(device=device),
            system_idx=self.system_idx.to(device=device),
        )

    def with_geometry(self, positions: torch.Tensor, cell: torch.Tensor) -> "Batch":
        """The same structures with new positions (N, 3) and cells (B, 3, 3)."""
        return replace(self, positions=positions, cell=cell)

    def select(self, systems: Sequence[int] | torch.Tensor) -> "Batch":
        """A new batch holding the given structures, in the given order."""
        systems = torch.as_tensor(systems, dtype=torch.long, device=self.device)
        offsets = self.atom_offsets()
        counts = self.n_atoms[systems]
        atom_index = torch.cat(
            [torch.arange(offsets[s], offsets[s + 1], device=self.device) for s in systems.tolist()]
        ) if len(systems) else torch.zeros(0, dtype=torch.long, device=self.device)
        return Batch(
            positions=self.positions[atom_index],
            numbers=self.numbers[atom_index],
            cell=self.cell[systems],
            pbc=self.pbc[systems],
            system_idx=torch.repeat_interleave(torch.arange(len(systems), device=self.device), counts),
        )

    @classmethod
    def from_atoms(cls, atoms_list: Iterable, device="cpu", dtype=torch.float64) -> "Batch":
        """Build a batch from ASE ``Atoms`` objects (a non-periodic direction keeps its cell)."""
        atoms_list = list(atoms_list)
        if not atoms_list:
            raise ValueError("Batch.from_atoms needs at least one structure")
        positions = np.concatenate([a.get_positions() for a in atoms_list])
        numbers = np.concatenate([a.get_atomic_numbers() for a in atoms_list])
        cell = np.stack([np.asarray(a.get_cell()) for a in atoms_list])
        pbc = np.stack([np.asarray(a.get_pbc(), dtype=bool) for a in atoms_list])
        counts = [len(a) for a in atoms_list]
        return cls(
            positions=torch.tensor(positions, dtype=dtype, device=device),
            numbers=torch.tensor(numbers, dtype=torch.long, device=device),
            cell=torch.tensor(cell, dtype=dtype, device=device),
            pbc=torch.tensor(pbc, dtype=torch.bool, device=device),
            system_idx=torch.repeat_interleave(
                torch.arange(len(atoms_list), device=device), torch.tensor(counts, device=device)
            ),
        )

    def to_atoms(self) -> list:
        """The structures as a list of ASE ``Atoms`` (positions and cell copied to CPU)."""
        from ase import Atoms

        offsets = self.atom_offsets().tolist()
        pos = self.positions.detach().cpu().numpy()
        num = self.numbers.cpu().numpy()
        cell = self.cell.detach().cpu().numpy()
        pbc = self.pbc.cpu().numpy()
        return [
            Atoms(numbers=num[offsets[b]:offsets[b + 1]], positions=pos[offsets[b]:offsets[b + 1]],
                  cell=cell[b], pbc=pbc[b])
            for b in range(self.n_systems)
        ]


def concatenate(batches: Sequence[Batch]) -> Batch:
    """Join batches into one, structures in order."""
    shift = 0
    idx = []
    for b in batches:
        idx.append(b.system_idx + shift)
        shift += b.n_systems
    return Batch(
        positions=torch.cat([b.positions for b in batches]),
        numbers=torch.cat([b.numbers for b in batches]),
        cell=torch.cat([b.cell for b in batches]),
        pbc=torch.cat([b.pbc for b in batches]),
        system_idx=torch.cat(idx),
    )
