"""The ACNN descriptor against the paper's equations: Eq. 6 (cutoff), Eq. 8 (Chebyshev radial
functions), real spherical harmonics (addition theorem), Eq. 7 and Eq. 9 against direct sums."""

import math

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev, legendre

from acnn_mpi.model.descriptor import chebyshev_radial_basis, cosine_cutoff
from acnn_mpi.model.harmonics import RealSphericalHarmonics, bispectrum_triples
from acnn_mpi.neighbors import neighbor_list
from acnn_mpi.state import Batch


def test_cosine_cutoff_eq6():
    r = torch.tensor([0.0, 1.0, 2.5, 4.999, 5.0, 6.0], dtype=torch.float64)
    fc = cosine_cutoff(r, 5.0)
    expected = [1.0, 0.5 * (1 + math.cos(math.pi / 5)), 0.5, 0.5 * (1 + math.cos(math.pi * 4.999 / 5)), 0.0, 0.0]
    assert torch.allclose(fc, torch.tensor(expected, dtype=torch.float64), atol=1e-15)


def test_chebyshev_radial_basis_eq8():
    r_cut, n_basis = 5.0, 16
    r = torch.linspace(0.3, 5.2, 50, dtype=torch.float64)
    g, fc = chebyshev_radial_basis(r, r_cut, n_basis)
    x = 2 * (r.numpy() / r_cut - 1) ** 2 - 1
    for n in range(n_basis):
        t_n = chebyshev.chebval(x, [0] * n + [1])
        expected = 0.5 * (t_n + 1) * fc.numpy()
        assert np.allclose(g[:, n].numpy(), expected, atol=1e-12), n
    assert torch.all(g[r >= r_cut] == 0)
    assert torch.allclose(g[:, 0], fc)


def test_chebyshev_basis_float32_accurate():
    r = torch.linspace(0.5, 4.99, 200, dtype=torch.float64)
    g64, _ = chebyshev_radial_basis(r, 5.0, 16)
    g32, _ = chebyshev_radial_basis(r.float(), 5.0, 16)
    assert (g32.double() - g64).abs().max() < 2e-5


def test_spherical_harmonics_addition_theorem():
    sh = RealSphericalHarmonics(6).double()
    gen = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(40, 3, generator=gen, dtype=torch.float64), dim=1)
    b = torch.nn.functional.normalize(torch.randn(40, 3, generator=gen, dtype=torch.float64), dim=1)
    ya, yb = sh(a), sh(b)
    assert ya.shape == (40, 49)
    cos = (a * b).sum(1).numpy()
    for l in range(7):
        block = slice(l * l, (l + 1) ** 2)
        total = (ya[:, block] * yb[:, block]).sum(1).numpy()
        expected = (2 * l + 1) / (4 * math.pi) * legendre.legval(cos, [0] * l + [1])
        assert np.allclose(total, expected, atol=1e-13), l


def test_spherical_harmonics_known_values_and_orthonormality():
    sh = RealSphericalHarmonics(4).double()
    u = torch.nn.functional.normalize(torch.tensor([[0.3, -0.5, 0.8]], dtype=torch.float64), dim=1)
    x, y, z = u[0]
    values = sh(u)[0]
    assert math.isclose(values[0], 1 / math.sqrt(4 * math.pi), rel_tol=1e-14)
    assert math.isclose(values[2], math.sqrt(3 / (4 * math.pi)) * z, rel_tol=1e-14)      # Y_10
    assert math.isclose(values[3], math.sqrt(3 / (4 * math.pi)) * x, rel_tol=1e-14)      # Y_11
    assert math.isclose(values[1], math.sqrt(3 / (4 * math.pi)) * y, rel_tol=1e-14)      # Y_1-1
    assert math.isclose(values[6], math.sqrt(5 / (16 * math.pi)) * (3 * z * z - 1), rel_tol=1e-13)
    assert math.isclose(values[4], math.sqrt(15 / (4 * math.pi)) * x * y, rel_tol=1e-13)  # Y_2-2
    # orthonormal on the sphere: Lebedev-free check with a dense Gauss-Legendre x uniform-phi grid
    nodes, weights = legendre.leggauss(12)
    phi = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ct, ph = np.meshgrid(nodes, phi, indexing="ij")
    st = np.sqrt(1 - ct ** 2)
    grid = torch.tensor(np.stack([st * np.cos(ph), st * np.sin(ph), ct], -1).reshape(-1, 3))
    w = torch.tensor((weights[:, None] * np.full(24, 2 * np.pi / 24)).reshape(-1))
    y_grid = sh(grid)
    gram = (y_grid * w[:, None]).T @ y_grid
    assert torch.allclose(gram, torch.eye(25, dtype=torch.float64), atol=1e-12)


def _mixed_angular_neighbours(d, vectors, zj):
    """Unit vectors (M_a, 3) of one atom's neighbours inside the angular cutoff and their mixed
    radial channels g̃_c(r_ij) = Σ_n g_n(r_ij) W[Z_j]_{n,c} (M_a, n_a), from its neighbour
    vectors (M, 3) Å and the neighbours' element indices (M,)."""
    W, n_a = d.angular_mixing.detach().numpy(), d.n_angular   # (n_a, S·n_a): block z = W[z]
    r = np.linalg.norm(vectors, axis=1)
    inside = r < d.r_cut_angular
    ga, _ = chebyshev_radial_basis(torch.tensor(r[inside]), d.r_cut_angular, n_a)
    mixed = np.stack([ga.numpy()[k] @ W[:, zj[inside][k] * n_a:(zj[inside][k] + 1) * n_a]
                      for k in range(int(inside.sum()))]) if inside.any() else np.zeros((0, n_a))
    return vectors[inside] / r[inside, None], mixed


def _direct_features(model, atoms):
    """Eqs. 7 and 9 by direct sums over neighbours and neighbour pairs (O(M²)), with P_l; Φ⁽²⁾ for
    every channel pair (c, c') of the descriptor (the diagonal, or all c ≤ c')."""
    d = model.descriptor
    batch = Batch.from_atoms([atoms])
    edges = neighbor_list(batch, model.cutoff)
    vec = edges.vectors(batch.positions, batch.cell, batch.system_idx).detach().numpy()
    i_all, j_all = edges.index.numpy()
    species = model.species_index(batch.numbers).numpy()
    S, n_a, L = d.n_elements, d.n_angular, d.l_max
    first, second = d.channel_pairs.numpy()
    radial, angular = [], []
    for i in range(len(atoms)):
        mine = i_all == i
        r = np.linalg.norm(vec[mine], axis=1)
        zj = species[j_all[mine]]
        g, _ = chebyshev_radial_basis(torch.tensor(r), d.r_cut_radial, d.n_radial)
        phi1 = np.zeros((S, d.n_radial))
        for z in range(S):
            phi1[z] = g.numpy()[zj == z].sum(0)
        radial.append(phi1.reshape(-1))
        unit, mixed = _mixed_angular_neighbours(d, vec[mine], zj)
        cos = np.clip(unit @ unit.T, -1, 1)
        phi2 = np.zeros((len(first), L + 1))
        for l in range(L + 1):
            p_l = legendre.legval(cos, [0] * l + [1])
            pair_sums = np.einsum("jc,kd,jk->cd", mixed, mixed, p_l)
            phi2[:, l] = (2 * l + 1) / (4 * math.pi) * pair_sums[first, second]
        angular.append(phi2.reshape(-1))
    return np.array(radial), np.array(angular)


@pytest.mark.parametrize("cross_channels", [False, True], ids=["diagonal", "cross-channels"])
@pytest.mark.parametrize("identity_mixing", [True, False])
def test_features_equal_direct_sums_eq7_eq9(make_model, crystal, identity_mixing, cross_channels):
    model = make_model(r_cut_radial=4.5, r_cut_angular=3.8, n_angular=4, l_max=4,
                       angular_cross_channels=cross_channels)
    assert model.descriptor.n_angular_features == (10 if cross_channels else 4) * 5
    if identity_mixing:  # the paper's Eq. 9 exactly, g_n of each neighbour unmixed
        with torch.no_grad():
            model.descriptor.angular_mixing.copy_(torch.eye(4, dtype=torch.float64).repeat(1, 3))
    atoms = crystal(["Mg", "Ca", "H", "H", "H", "Mg", "H"], volume_per_atom=9.0, min_distance=1.2)
    batch = Batch.from_atoms([atoms])
    out = model.descriptor(
        neighbor_list(batch, model.cutoff).vectors(batch.positions, batch.cell, batch.system_idx),
        neighbor_list(batch, model.cutoff).index, model.species_index(batch.numbers))
    radial, angular = _direct_features(model, atoms)
    assert angular.max() > 0.1  # non-trivial environments
    assert np.allclose(out.radial.detach().numpy(), radial, rtol=1e-12, atol=1e-12)
    assert np.allclose(out.angular.detach().numpy(), angular, rtol=1e-10, atol=1e-12)


def _sphere_grid(n_nodes: int):
    """Points (Q, 3) and weights (Q,) of a Gauss-Legendre (cos θ) × uniform (φ) grid, exact for
    polynomials of degree < 2 n_nodes on the sphere."""
    nodes, weights = legendre.leggauss(n_nodes)
    n_phi = 2 * n_nodes
    phi = np.linspace(0, 2 * np.pi, n_phi, endpoint=False)
    ct, ph = np.meshgrid(nodes, phi, indexing="ij")
    st = np.sqrt(1 - ct ** 2)
    points = np.stack([st * np.cos(ph), st * np.sin(ph), ct], -1).reshape(-1, 3)
    return points, (weights[:, None] * np.full(n_phi, 2 * np.pi / n_phi)).reshape(-1)


def test_bispectrum_equals_integral_of_three_legendre_densities(make_model, crystal):
    """Φ⁽³⁾_{c,(l1,l2,l3)} = ∫ ρ_c,l1 ρ_c,l2 ρ_c,l3 dΩ with the angular densities written without
    spherical harmonics, ρ_c,l(x) = Σ_j g̃_c(r_ij) (2l+1)/4π P_l(r̂_ij · x) (addition theorem),
    integrated on an exact grid: an independent check of the harmonics, the real Gaunt
    coefficients and their contraction."""
    model = make_model(r_cut_radial=4.5, r_cut_angular=3.8, n_angular=3, l_max=4, bispectrum_l_max=4)
    d = model.descriptor
    triples = bispectrum_triples(4)
    assert triples[:3] == [(1, 1, 2), (1, 2, 3), (1, 3, 4)] and len(triples) == 9
    assert d.n_angular_features == 3 * 5 + 3 * 9
    atoms = crystal(["Mg", "Ca", "H", "H", "H", "Mg", "H"], volume_per_atom=9.0, min_distance=1.2)
    batch = Batch.from_atoms([atoms])
    edges = neighbor_list(batch, model.cutoff)
    vec = edges.vectors(batch.positions, batch.cell, batch.system_idx)
    species = model.species_index(batch.numbers)
    features = d(vec, edges.index, species).angular.detach().numpy()[:, 3 * 5:].reshape(len(atoms), 3, 9)
    points, weights = _sphere_grid(7)                                  # exact to degree 13 ≥ 12
    i_all, j_all = edges.index.numpy()
    for i in range(len(atoms)):
        mine = i_all == i
        unit, mixed = _mixed_angular_neighbours(d, vec.detach().numpy()[mine], species.numpy()[j_all[mine]])
        cos = unit @ points.T                                                          # (M_a, Q)
        rho = np.stack([mixed.T @ ((2 * l + 1) / (4 * math.pi) * legendre.legval(cos, [0] * l + [1]))
                        for l in range(5)])                                            # (5, n_a, Q)
        expected = np.stack([(rho[a] * rho[b] * rho[c]) @ weights for a, b, c in triples], axis=1)
        assert np.abs(expected).max() > 1e-3
        assert np.allclose(features[i], expected, rtol=1e-10, atol=1e-14), i


def test_bispectrum_invariant_under_rotation_and_inversion(make_model, crystal):
    """Φ⁽²⁾ and Φ⁽³⁾ of a structure do not change when it is rotated, or inverted through the
    origin (only the parity-even triples are kept)."""
    model = make_model(l_max=4, bispectrum_l_max=4)
    atoms = crystal(["Mg", "Ca", "H", "H", "H"], volume_per_atom=9.0)
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))

    def angular(a):
        batch = Batch.from_atoms([a])
        edges = neighbor_list(batch, model.cutoff)
        vectors = edges.vectors(batch.positions, batch.cell, batch.system_idx)
        return model.descriptor(vectors, edges.index, model.species_index(batch.numbers)).angular

    reference = angular(atoms)
    for transform in (q if np.linalg.det(q) > 0 else -q, -np.eye(3)):
        moved = atoms.copy()
        moved.set_cell(atoms.cell[:] @ transform.T, scale_atoms=True)
        assert torch.allclose(angular(moved), reference, rtol=1e-10, atol=1e-12)
    assert reference[:, -model.descriptor.n_angular * 9:].abs().max() > 1e-3


def test_bispectrum_l_max_above_l_max_is_refused():
    from acnn_mpi.config import ModelSettings
    from acnn_mpi.model.potential import ACNNHyperparameters

    with pytest.raises(ValueError, match="bispectrum_l_max = 5 must be <= l_max = 4"):
        ACNNHyperparameters(elements=["Si"], l_max=4, bispectrum_l_max=5)
    with pytest.raises(ValueError, match="bispectrum_l_max = 5 is larger than l_max = 4"):
        ModelSettings(l_max=4, bispectrum_l_max=5)


def test_neighbour_element_changes_features(make_model, crystal):
    """Swapping a Mg neighbour for Ca changes both radial and angular features of its neighbours."""
    model = make_model()
    atoms = crystal(["Mg", "H", "H", "H", "H"], volume_per_atom=8.0, min_distance=1.3)
    swapped = atoms.copy()
    swapped.symbols[0] = "Ca"
    feats = []
    for a in (atoms, swapped):
        batch = Batch.from_atoms([a])
        edges = neighbor_list(batch, model.cutoff)
        vec = edges.vectors(batch.positions, batch.cell, batch.system_idx)
        feats.append(model.descriptor(vec, edges.index, model.species_index(batch.numbers)))
    # atoms 1..4 are H; their environments differ only by the element of atom 0
    assert (feats[0].radial[1:] - feats[1].radial[1:]).abs().max() > 1e-3
    assert (feats[0].angular[1:] - feats[1].angular[1:]).abs().max() > 1e-4
    # and the total neighbour density (sum over elements) is the same
    r0 = feats[0].radial.view(5, 3, -1).sum(1)
    r1 = feats[1].radial.view(5, 3, -1).sum(1)
    assert torch.allclose(r0[1:], r1[1:], atol=1e-12)
