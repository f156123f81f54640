"""Every structure ends converged, not_converged, unphysical (with a reason) or failed."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from acnn_mpi.relax.runner import relax_structures
from acnn_mpi.relax.status import min_distance_table
from tests.relax.helpers import lj, random_argon


class Collapsing(torch.nn.Module):
    """A 'bad model': an attractive well that pulls all pairs together without limit."""

    cutoff = 4.0

    def atomic_energies(self, batch, edges):
        r = torch.linalg.norm(edges.vectors(batch.positions, batch.cell, batch.system_idx), dim=1)
        pair = -2.0 * (1.0 - r / self.cutoff) ** 2
        out = torch.zeros(batch.positions.shape[0], dtype=r.dtype)
        return out.index_add(0, edges.index[0], 0.5 * torch.where(r < self.cutoff, pair, torch.zeros_like(pair)))


class NaNModel(torch.nn.Module):
    cutoff = 3.0

    def atomic_energies(self, batch, edges):
        return batch.positions.sum(1) * float("nan")


class FailingEMT(EMT):
    def calculate(self, atoms=None, properties=None, system_changes=None):
        if len(atoms) == 2:
            raise RuntimeError("SCF did not converge")
        super().calculate(atoms, properties, system_changes or ["positions"])


def test_min_distance_table_forms():
    table = min_distance_table({"Mg-H": 1.4, ("H", "H"): 0.8, (12, 12): 1.9})
    assert table[12, 1] == table[1, 12] == pytest.approx(1.4)
    assert table[1, 1] == pytest.approx(0.8) and table[12, 12] == pytest.approx(1.9)
    assert table[20, 1] == pytest.approx(0.8 * (1.76 + 0.31), abs=1e-6)  # covalent default Ca-H


def test_unphysical_cases_and_nothing_dropped():
    model = lj()
    good = random_argon(2, seed=1)
    close = bulk("Ar", "fcc", a=5.3, cubic=True)
    close.positions[1] = close.positions[0] + [0.5, 0.0, 0.0]   # 0.5 Å apart, Ar-Ar minimum 0.8·2·1.06
    sparse = Atoms("Ar", cell=np.eye(3) * 8.0, pbc=True)        # 512 Å³/atom, window max 200
    structures = [good[0], close, sparse, good[1]]
    results = relax_structures(structures, model, 0.0, batch_size=3, min_distances={"Ar-Ar": 3.0},
                               min_distance_fraction=0.5)
    assert [r.structure_id for r in results] == [0, 1, 2, 3]
    assert [r.status for r in results] == ["converged", "unphysical", "unphysical", "converged"]
    assert "closer than 0.5 × 3.000 Å" in results[1].reason and "(Ar)" in results[1].reason
    assert results[1].steps == 0
    assert "volume 512 Å³/atom outside [0.5, 200]" in results[2].reason


def test_energy_floor_and_collapse():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=0)
    floor = relax_structures([atoms.copy()], Collapsing(), 0.0, energy_floor=-1.0)[0]
    assert floor.status == "unphysical" and "below the floor -1" in floor.reason
    collapse = relax_structures([atoms.copy()], Collapsing(), 0.0, volume_window=None)[0]
    assert collapse.status == "unphysical"
    assert "closer than" in collapse.reason or "volume" in collapse.reason


def test_non_finite_and_step_limit_and_failed():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    (nan,) = relax_structures([atoms], NaNModel(), 0.0)
    assert nan.status == "unphysical" and "non-finite energy" in nan.reason
    slow = random_argon(1, seed=3)
    (limited,) = relax_structures(slow, lj(), 0.0, max_steps=3)
    assert limited.status == "not_converged" and limited.steps == 3 and "step limit 3" in limited.reason
    copper = [bulk("Cu", "fcc", a=3.6, cubic=True), bulk("Cu", "bcc", a=2.9, cubic=True)]
    results = relax_structures(copper, FailingEMT(), 0.0)
    assert results[0].status == "converged"
    assert results[1].status == "failed" and "SCF did not converge" in results[1].reason


class ShiftedLJ(torch.nn.Module):
    """Lennard-Jones argon with a DFT-like energy zero: −1000 eV per atom, carried as the per-element
    reference energy (as an ACNN carries its least-squares references)."""

    def __init__(self, with_references: bool):
        super().__init__()
        self.inner = lj()
        self.cutoff = self.inner.cutoff
        if with_references:
            self.elements = ["Ar"]
            self.register_buffer("reference_energies", torch.tensor([-1000.0], dtype=torch.float64))

    def atomic_energies(self, batch, edges):
        return self.inner.atomic_energies(batch, edges) - 1000.0


def test_energy_floor_reads_energies_relative_to_the_reference_energies():
    from acnn_mpi.relax.status import reference_energies_of

    structures = random_argon(2, seed=5)
    assert reference_energies_of(ShiftedLJ(True)) == {18: -1000.0}
    assert reference_energies_of(lj()) is None
    results = relax_structures(structures, ShiftedLJ(True), 0.0, energy_floor=-10.0)
    assert [r.status for r in results] == ["converged", "converged"]
    assert all(-1000.1 < r.energy / len(r.atoms) < -1000.0 for r in results)
    # the same energies without the references: the floor reads E/N = −1000 eV/atom
    flagged = relax_structures(structures, ShiftedLJ(False), 0.0, energy_floor=-10.0)
    assert [r.status for r in flagged] == ["unphysical", "unphysical"]
    assert "relative to the elemental references, below the floor -10" in flagged[0].reason
