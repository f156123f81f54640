"""Neighbour lists (vesin) against ASE's neighbor_list on awkward cells, and edge vectors."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.geometry import minkowski_reduce
from ase.neighborlist import neighbor_list as ase_neighbor_list

from acnn_mpi.neighbors import neighbor_list
from acnn_mpi.state import Batch


def _pairs(i, j, shifts):
    return sorted(zip(np.asarray(i).tolist(), np.asarray(j).tolist(),
                      [tuple(int(round(v)) for v in s) for s in np.asarray(shifts)]))


def _check_against_ase(atoms, cutoff):
    batch = Batch.from_atoms([atoms])
    edges = neighbor_list(batch, cutoff)
    i, j, shifts, vectors = ase_neighbor_list("ijSD", atoms, cutoff)
    ours = _pairs(edges.index[0].numpy(), edges.index[1].numpy(), edges.cell_shifts.numpy())
    assert ours == _pairs(i, j, shifts)
    assert len(ours) == len(set(ours))
    # vectors in the same order
    order_ours = np.lexsort(np.c_[edges.cell_shifts.numpy(), edges.index.numpy().T][:, ::-1].T)
    order_ase = np.lexsort(np.c_[shifts, i, j][:, ::-1].T)
    v = edges.vectors(batch.positions, batch.cell, batch.system_idx).numpy()
    np.testing.assert_allclose(v[order_ours], vectors[order_ase], atol=1e-10)
    return edges


def _random_atoms(rng, n, cell, pbc=True, spread=1.0):
    return Atoms(numbers=[1] * n, scaled_positions=rng.random((n, 3)) * spread, cell=cell, pbc=pbc)


def test_cell_thinner_than_cutoff():
    rng = np.random.default_rng(1)
    atoms = _random_atoms(rng, 3, [[5.0, 0, 0], [0, 5.0, 0], [0, 0, 0.8]])
    edges = _check_against_ase(atoms, 3.0)
    assert edges.cell_shifts[:, 2].abs().max() >= 3  # many images along the thin direction


def test_highly_sheared_cells():
    """Reference: ASE's list on the Minkowski-reduced basis of the same lattice (ASE itself is very
    slow on such cells), shifts mapped back to the sheared basis."""
    rng = np.random.default_rng(2)
    for cell, cutoff in (([[3, 0, 0], [2.9, 0.4, 0], [-2.7, 2.8, 0.6]], 3.5),
                         ([[1, 0, 0], [10, 1, 0], [7, -9, 1]], 3.0),
                         ([[2, 0, 0], [5.9, 1.0, 0], [3.3, -4.4, 1.0]], 3.0)):
        atoms = _random_atoms(rng, 3, cell)
        reduced_cell, op = minkowski_reduce(atoms.cell.array)
        reduced = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=reduced_cell, pbc=True)
        i, j, shifts = ase_neighbor_list("ijS", reduced, cutoff)
        batch = Batch.from_atoms([atoms])
        edges = neighbor_list(batch, cutoff)
        assert edges.cell_shifts.abs().max() >= 5  # the sheared basis needs far images
        assert _pairs(edges.index[0].numpy(), edges.index[1].numpy(), edges.cell_shifts.numpy()) == \
            _pairs(i, j, shifts @ op)
        r = edges.vectors(batch.positions, batch.cell, batch.system_idx).norm(dim=1)
        assert float(r.max()) < cutoff


def test_tiny_cell_with_many_images():
    atoms = Atoms("H", positions=[[0, 0, 0]], cell=np.eye(3) * 1.1, pbc=True)
    edges = _check_against_ase(atoms, 5.0)
    assert edges.n_edges > 300 and bool((edges.index == 0).all())  # only images of the atom itself


def test_random_triclinic_cells_and_unwrapped_positions():
    rng = np.random.default_rng(3)
    for trial in range(20):
        cell = rng.normal(size=(3, 3)) * 2 + np.eye(3) * rng.uniform(0.8, 4)
        if abs(np.linalg.det(cell)) < 1.0:  # ASE's reference list gets very slow for near-flat cells
            cell += np.eye(3) * 2
        n = int(rng.integers(1, 6))
        atoms = _random_atoms(rng, n, cell, spread=3.0 if trial % 2 else 1.0)  # odd trials: outside the cell
        _check_against_ase(atoms, float(rng.uniform(1.0, 4.5)))


def test_left_handed_cell_mixed_and_no_pbc():
    rng = np.random.default_rng(4)
    _check_against_ase(_random_atoms(rng, 4, [[3, 0, 0], [0, 3, 0], [0.5, 0.2, -3]]), 4.0)
    _check_against_ase(_random_atoms(rng, 4, np.eye(3) * 2.0, pbc=[True, False, True]), 3.0)
    _check_against_ase(Atoms("H4", positions=rng.random((4, 3)) * 3), 3.0)


def test_batch_offsets_order_and_vectors_under_strain():
    rng = np.random.default_rng(5)
    structures = [_random_atoms(rng, n, np.eye(3) * 3 + rng.normal(scale=0.3, size=(3, 3))) for n in (2, 5, 3)]
    batch = Batch.from_atoms(structures)
    edges = neighbor_list(batch, 3.2)
    centre = edges.index[0]
    assert bool((centre[1:] >= centre[:-1]).all())  # sorted by centre atom
    offset = 0
    for b, atoms in enumerate(structures):
        mine = (centre >= offset) & (centre < offset + len(atoms))
        assert bool((edges.index[1][mine] >= offset).all() and (edges.index[1][mine] < offset + len(atoms)).all())
        i, j, s = ase_neighbor_list("ijS", atoms, 3.2)
        assert _pairs(edges.index[0][mine].numpy() - offset, edges.index[1][mine].numpy() - offset,
                      edges.cell_shifts[mine].numpy()) == _pairs(i, j, s)
        offset += len(atoms)
    # both ways of adding the lattice shifts (image table, per-edge) give the same vectors and gradients
    strain = torch.eye(3, dtype=torch.float64) + 0.01 * torch.tensor(rng.normal(size=(3, 3)))
    cell = (batch.cell @ strain).requires_grad_(True)
    table = edges.vectors(batch.positions, cell, batch.system_idx)
    differences = batch.positions[edges.index[1]] - batch.positions[edges.index[0]]
    expected = differences + torch.einsum("ek,ekl->el", edges.cell_shifts, cell[batch.system_idx[edges.index[0]]])
    torch.testing.assert_close(table, expected, rtol=0, atol=1e-12)
    for shifts in (edges._image_shifts(cell, batch.system_idx), edges._edge_shifts(cell, batch.system_idx)):
        torch.testing.assert_close(differences + shifts, expected, rtol=0, atol=1e-12)
    weights = torch.randn(table.shape, dtype=torch.float64)
    g_table, = torch.autograd.grad((table * weights).sum(), cell)
    g_expected, = torch.autograd.grad((expected * weights).sum(), cell)
    torch.testing.assert_close(g_table, g_expected)


def test_bad_cutoff():
    batch = Batch.from_atoms([Atoms("H", cell=[2, 2, 2], pbc=True)])
    with pytest.raises(ValueError, match="cutoff must be positive"):
        neighbor_list(batch, 0.0)
