"""How a relaxation ended: converged, not converged, unphysical (with a reason), or failed.

Every structure handed to the relaxer ends with exactly one status; nothing is dropped.

* ``converged`` — enthalpy change per atom, max force and stress residual all below tolerance;
* ``not_converged`` — the step limit came first (the structure is returned at its lowest enthalpy);
* ``unphysical`` — the model led it somewhere no real crystal goes: two atoms closer than a fraction
  of their pair's minimum distance, a volume per atom outside a window, a formation energy per atom
  below a floor, or non-finite numbers. In the self-optimizing loop these mark where the model fails;
* ``failed`` — the back end raised on this structure (an ASE/DFT calculator error).

The checks run in batch on tensors; a message is composed only for the structures flagged.

The energy floor never reads the energy zero: it compares the energy per atom *relative to
per-element reference energies* (an ACNN's least-squares references, :func:`reference_energies_of`),
(E − Σ_i e_Z(i)) / N, with the floor. DFT codes put every element's zero hundreds to thousands of
eV/atom below zero; per-element constants cancel in this difference, so one floor fits every code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from ..neighbors import Edges, neighbor_list
from ..state import Batch
from ..units import ev_per_a3_to_gpa, gpa_to_ev_per_a3

CONVERGED = "converged"
NOT_CONVERGED = "not_converged"
UNPHYSICAL = "unphysical"
FAILED = "failed"
STATUSES = (CONVERGED, NOT_CONVERGED, UNPHYSICAL, FAILED)

#: default pair minimum distance: this × (covalent radius A + covalent radius B), as the generator
MIN_DISTANCE_PER_COVALENT_SUM = 0.8


@dataclass(frozen=True)
class Convergence:
    """Convergence criteria (paper §IV.C defaults plus a stress tolerance).

    Attributes:
        fmax: max Cartesian force on any atom, eV/Å.
        dh_tol: |enthalpy change| of the last accepted step, eV/atom.
        stress_tol: max |σ_ij + P δ_ij|, GPa.
        max_steps: optimizer steps (model evaluations after the first) before ``not_converged``.
    """

    fmax: float = 1e-3
    dh_tol: float = 1e-6
    stress_tol: float = 0.05
    max_steps: int = 1000

    def __post_init__(self):
        for name in ("fmax", "dh_tol", "stress_tol"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} = {getattr(self, name)} must be positive")
        if int(self.max_steps) < 0:
            raise ValueError(f"max_steps = {self.max_steps} must be >= 0")


def _number(symbol) -> int:
    from ase.data import atomic_numbers

    if isinstance(symbol, (int, np.integer)):
        return int(symbol)
    if symbol not in atomic_numbers:
        raise ValueError(f"unknown element {symbol!r} in min_distances")
    return atomic_numbers[symbol]


def min_distance_table(min_distances: Optional[Mapping] = None) -> torch.Tensor:
    """(119, 119) float64 minimum distances (Å) for every pair of atomic numbers.

    ``min_distances`` maps pairs to Å: keys ``("Mg", "H")``, ``"Mg-H"``, ``(12, 1)`` or
    ``frozenset({"H"})``, either order. Pairs not given get 0.8 × the sum of covalent radii.
    """
    from ase.data import covalent_radii

    radii = torch.tensor(np.asarray(covalent_radii, dtype=np.float64)[:119])
    table = MIN_DISTANCE_PER_COVALENT_SUM * (radii[:, None] + radii[None, :])
    for key, value in (min_distances or {}).items():
        if isinstance(key, str):
            pair = key.split("-")
        else:
            pair = list(key)
            if len(pair) == 1:
                pair = pair * 2
        if len(pair) != 2:
            raise ValueError(f"min_distances key {key!r} must name a pair such as 'Mg-H'")
        a, b = (_number(p) for p in pair)
        if not float(value) > 0:
            raise ValueError(f"min_distances[{key!r}] = {value} Å must be positive")
        table[a, b] = table[b, a] = float(value)
    return table


@dataclass
class PhysicalLimits:
    """What counts as unphysical.

    Attributes:
        min_distances: pair minimum distances (see :func:`min_distance_table`); None: covalent default.
        min_distance_fraction: unphysical when two atoms are closer than this × their pair's minimum.
        volume_window: (min, max) Å³ per atom.
        energy_floor: eV/atom; unphysical when (E − Σ_i e_Z(i)) / N is below it; None: no floor.
        energy_references: e_Z, eV per atom of element Z: {atomic number or symbol: eV}; elements
            not listed (and all, when None) count 0, so the floor then reads E / N.
    """

    min_distances: Optional[Mapping] = None
    min_distance_fraction: float = 0.5
    volume_window: Optional[Sequence[float]] = (0.5, 200.0)
    energy_floor: Optional[float] = None
    energy_references: Optional[Mapping] = None
    _table: Optional[torch.Tensor] = field(default=None, init=False, repr=False)
    _references: Optional[torch.Tensor] = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if not 0 < float(self.min_distance_fraction) <= 1.0:
            raise ValueError(f"min_distance_fraction = {self.min_distance_fraction} must be in (0, 1]")
        if self.volume_window is not None:
            low, high = (float(v) for v in self.volume_window)
            if not 0 <= low < high:
                raise ValueError(f"volume_window = {list(self.volume_window)} Å³/atom: need 0 <= min < max")
        self._table = min_distance_table(self.min_distances) * float(self.min_distance_fraction)
        references = torch.zeros(119, dtype=torch.float64)
        for key, value in (self.energy_references or {}).items():
            if not np.isfinite(float(value)):
                raise ValueError(f"energy_references[{key!r}] = {value} eV must be finite")
            references[_number(key)] = float(value)
        self._references = references

    def reference_energy(self, batch: Batch) -> torch.Tensor:
        """(B,) Σ_i e_Z(i) of each structure, eV (float64)."""
        per_atom = self._references.to(batch.device)[batch.numbers.long()]
        out = torch.zeros(batch.n_systems, dtype=torch.float64, device=batch.device)
        return out.index_add(0, batch.system_idx, per_atom)

    def thresholds(self, device, dtype) -> torch.Tensor:
        """(119, 119) closest allowed distance per pair (fraction × minimum), Å."""
        if self._table.device != torch.device(device) or self._table.dtype != dtype:
            self._table = self._table.to(device=device, dtype=dtype)
        return self._table


def reference_energies_of(model) -> Optional[dict[int, float]]:
    """{atomic number: eV/atom} of a model that carries per-element reference energies (an ACNN:
    ``elements`` and ``reference_energies``), else None (Lennard-Jones, ASE calculators)."""
    elements = getattr(model, "elements", None)
    references = getattr(model, "reference_energies", None)
    if elements is None or references is None:
        return None
    values = torch.as_tensor(references).detach().double().cpu().tolist()
    if len(values) != len(elements):
        return None
    return {_number(symbol): float(e) for symbol, e in zip(elements, values)}


def _per_structure_any(flags: torch.Tensor, system_idx: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.zeros(n, dtype=torch.long, device=flags.device)
    return out.index_add(0, system_idx, flags.long()) > 0


def find_unphysical(
    batch: Batch,
    energy: torch.Tensor,
    forces: torch.Tensor,
    stress: torch.Tensor,
    limits: PhysicalLimits,
    *,
    edges: Optional[Edges] = None,
    edges_cutoff: float = 0.0,
    check: Optional[torch.Tensor] = None,
    check_distances: Optional[torch.Tensor] = None,
) -> list:
    """Per structure of ``batch``: None, or why it is unphysical.

    Args:
        batch, energy (B,), forces (N, 3), stress (B, 3, 3): a geometry and its evaluation.
        limits: the thresholds.
        edges / edges_cutoff: a neighbour list complete within ``edges_cutoff`` to reuse for the
            distance check (else a short one is built here).
        check: (B,) bool, which structures to check (default all).
        check_distances: (B,) bool, which of those get the (costlier) distance check (default all).
    """
    n = batch.n_systems
    reasons: list = [None] * n
    if check is None:
        check = torch.ones(n, dtype=torch.bool, device=batch.device)
    if not bool(check.any()):
        return reasons
    counts = batch.n_atoms.to(batch.dtype)
    finite = torch.isfinite(energy) & torch.isfinite(stress).flatten(1).all(1)
    finite &= ~_per_structure_any(~torch.isfinite(forces).all(1), batch.system_idx, n)
    finite &= ~_per_structure_any(~torch.isfinite(batch.positions).all(1), batch.system_idx, n)
    finite &= torch.isfinite(batch.cell).flatten(1).all(1)
    for b in torch.nonzero(check & ~finite).flatten().tolist():
        what = [name for name, ok in (("energy", bool(torch.isfinite(energy[b]))),
                                      ("stress", bool(torch.isfinite(stress[b]).all())))
                if not ok]
        reasons[b] = f"non-finite {' and '.join(what) or 'forces or geometry'}"
    check = check & finite
    volume_per_atom = batch.volume / counts
    if limits.volume_window is not None:
        low, high = (float(v) for v in limits.volume_window)
        bad = check & ((volume_per_atom < low) | (volume_per_atom > high))
        for b in torch.nonzero(bad).flatten().tolist():
            reasons[b] = (f"volume {float(volume_per_atom[b]):.4g} Å³/atom outside "
                          f"[{low:g}, {high:g}]")
        check = check & ~bad
    if limits.energy_floor is not None:
        relative = (energy.double() - limits.reference_energy(batch)) / counts.double()
        bad = check & (relative < float(limits.energy_floor))
        for b in torch.nonzero(bad).flatten().tolist():
            reasons[b] = (f"energy {float(relative[b]):.6g} eV/atom relative to the elemental "
                          f"references, below the floor {float(limits.energy_floor):g}")
        check = check & ~bad
    if check_distances is not None:
        check = check & check_distances
    if bool(check.any()):
        for b, reason in _close_pairs(batch, limits, edges, edges_cutoff, check).items():
            reasons[b] = reason
    return reasons


def _close_pairs(batch: Batch, limits: PhysicalLimits, edges, edges_cutoff, check) -> dict:
    table = limits.thresholds(batch.device, batch.dtype)
    present = torch.unique(batch.numbers)
    reach = float(table[present][:, present].max())
    if edges is None or edges_cutoff < reach or 4 * int(check.sum()) < batch.n_systems:
        # few to check (or no usable list): a short list of just those structures is cheaper
        sub = torch.nonzero(check).flatten()
        small = batch.select(sub)
        found = _close_pairs(small, limits, neighbor_list(small, reach), float("inf"),
                             torch.ones(small.n_systems, dtype=torch.bool, device=batch.device))
        return {int(sub[b]): reason for b, reason in found.items()}
    i, j = edges.index
    with torch.no_grad():
        vectors = edges.vectors(batch.positions, batch.cell, batch.system_idx)
        distance = torch.linalg.norm(vectors, dim=1)
        near = distance < reach
        if not bool(near.any()):
            return {}
        i, j, distance = i[near], j[near], distance[near]
        limit = table[batch.numbers[i], batch.numbers[j]]
        close = distance < limit
        system = batch.system_idx[i]
        close &= check[system]
        if not bool(close.any()):
            return {}
        i, j, distance, limit, system = i[close], j[close], distance[close], limit[close], system[close]
    from ase.data import chemical_symbols

    offsets = batch.atom_offsets()
    out = {}
    ratio = distance / limit
    for b in torch.unique(system).tolist():
        where = torch.nonzero(system == b).flatten()
        k = where[torch.argmin(ratio[where])]
        a, c = int(i[k]), int(j[k])
        za, zc = int(batch.numbers[a]), int(batch.numbers[c])
        minimum = float(limit[k]) / float(limits.min_distance_fraction)
        out[b] = (f"atoms {a - int(offsets[b])} ({chemical_symbols[za]}) and {c - int(offsets[b])} "
                  f"({chemical_symbols[zc]}) {float(distance[k]):.3f} Å apart, closer than "
                  f"{float(limits.min_distance_fraction):g} × {minimum:.3f} Å")
    return out


def max_force(forces: torch.Tensor, system_idx: torch.Tensor, n: int) -> torch.Tensor:
    """(B,) largest |F| on any atom of each structure, eV/Å."""
    norms = torch.linalg.norm(forces, dim=1)
    out = torch.zeros(n, dtype=forces.dtype, device=forces.device)
    return out.scatter_reduce(0, system_idx, norms, reduce="amax", include_self=True)


def converged(
    forces: torch.Tensor,
    residual: torch.Tensor,
    enthalpy_change: torch.Tensor,
    n_atoms: torch.Tensor,
    system_idx: torch.Tensor,
    criteria: Convergence,
) -> torch.Tensor:
    """(B,) whether each structure meets all three criteria (force, stress residual σ + P I in
    eV/Å³, |ΔH| per atom of the last accepted step)."""
    n = residual.shape[0]
    fmax = max_force(forces, system_idx, n)
    stress_ok = residual.abs().flatten(1).amax(1) < gpa_to_ev_per_a3(criteria.stress_tol)
    dh_ok = (enthalpy_change.abs() / n_atoms.to(enthalpy_change.dtype)) < criteria.dh_tol
    return (fmax < criteria.fmax) & stress_ok & dh_ok


def stress_residual_gpa(residual: torch.Tensor) -> torch.Tensor:
    """(B,) max |σ_ij + P δ_ij| in GPa."""
    return ev_per_a3_to_gpa(residual.abs().flatten(1).amax(1))


__all__ = [
    "CONVERGED", "NOT_CONVERGED", "UNPHYSICAL", "FAILED", "STATUSES", "Convergence",
    "PhysicalLimits", "min_distance_table", "reference_energies_of", "find_unphysical", "converged", "max_force",
    "stress_residual_gpa",
]
