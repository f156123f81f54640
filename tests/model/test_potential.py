"""The ACNN potential: exact derivatives (finite differences), symmetries, smoothness at both
cutoffs, batching, chemistry checks. Small float64 models on random triclinic cells."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import make_supercell
from scipy.spatial.transform import Rotation

from acnn_mpi.model.attention import PairLayout
from acnn_mpi.model.forces import evaluate
from acnn_mpi.model.potential import ACNN, ACNNHyperparameters
from acnn_mpi.neighbors import neighbor_list
from acnn_mpi.state import Batch


def _eval(model, atoms_list, **kw):
    return evaluate(model, Batch.from_atoms(list(atoms_list)), **kw)


def _energy(model, atoms):
    return float(_eval(model, [atoms], compute_forces=False, compute_stress=False).energy[0].detach())


def _derivative(energy_at, h=1e-4):
    """Five-point central difference dE/dt at t = 0 (error ~ h⁴)."""
    return (-energy_at(2 * h) + 8 * energy_at(h) - 8 * energy_at(-h) + energy_at(-2 * h)) / (12 * h)


def test_forces_and_stress_match_finite_differences(model, crystal):
    model.set_reference_energies([0.0, 0.0, 0.0])  # constant offsets only cost digits in E(x ± h)
    atoms = crystal(["Mg", "Ca", "H", "H", "H", "H", "Mg", "H"], volume_per_atom=10.0)
    out = _eval(model, [atoms])

    def displaced(a, c):
        def energy_at(t):
            moved = atoms.copy()
            moved.positions[a, c] += t
            return _energy(model, moved)
        return energy_at

    fd_forces = np.array([[-_derivative(displaced(a, c)) for c in range(3)] for a in range(len(atoms))])
    forces = out.forces.numpy()
    assert np.abs(forces).max() > 1e-3
    np.testing.assert_allclose(forces, fd_forces, rtol=1e-6, atol=1e-9 * np.abs(forces).max())

    # stress = (1/V) dE/dε for a symmetric strain applied to cell and positions
    volume = atoms.get_volume()

    def strained(a, b):
        def energy_at(t):
            eps = np.zeros((3, 3))
            eps[a, b] += t / 2
            eps[b, a] += t / 2
            moved = atoms.copy()
            moved.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
            return _energy(model, moved)
        return energy_at

    fd_stress = np.array([[_derivative(strained(a, b)) / volume for b in range(3)] for a in range(3)])
    stress = out.stress[0].numpy()
    assert np.abs(stress).max() > 1e-4
    np.testing.assert_allclose(stress, fd_stress, rtol=1e-6, atol=1e-9 * np.abs(stress).max())
    np.testing.assert_allclose(out.virial[0].numpy(), -stress * volume, rtol=1e-12)


def test_invariance_translation_rotation_permutation(model, crystal):
    atoms = crystal(["Mg", "Ca", "H", "H", "H", "Ca", "H"], volume_per_atom=9.0)
    ref = _eval(model, [atoms])
    moved = atoms.copy()
    moved.positions += np.array([0.37, -1.91, 12.3])
    rotation = Rotation.from_euler("zyx", [31, -47, 112], degrees=True).as_matrix()
    rotated = Atoms(symbols=atoms.symbols, positions=atoms.positions @ rotation.T,
                    cell=atoms.cell.array @ rotation.T, pbc=True)
    perm = np.random.default_rng(3).permutation(len(atoms))
    permuted = atoms[perm]
    out = _eval(model, [moved, rotated, permuted])
    e0 = float(ref.energy[0])
    assert np.allclose(out.energy.numpy(), e0, rtol=1e-12, atol=1e-12)
    f0, s0 = ref.forces.numpy(), ref.stress[0].numpy()
    n = len(atoms)
    np.testing.assert_allclose(out.forces[:n].numpy(), f0, atol=1e-12)
    np.testing.assert_allclose(out.forces[n:2 * n].numpy(), f0 @ rotation.T, atol=1e-11)
    np.testing.assert_allclose(out.forces[2 * n:].numpy(), f0[perm], atol=1e-12)
    np.testing.assert_allclose(out.stress[0].numpy(), s0, atol=1e-13)
    np.testing.assert_allclose(out.stress[1].numpy(), rotation @ s0 @ rotation.T, atol=1e-12)
    np.testing.assert_allclose(out.stress[2].numpy(), s0, atol=1e-13)


def test_supercell_and_other_cell_basis(model, crystal):
    atoms = crystal(["Mg", "H", "H", "Ca", "H"], volume_per_atom=9.0)
    ref = _eval(model, [atoms])
    supercell = make_supercell(atoms, [[2, 0, 0], [0, 1, 1], [0, -1, 1]])  # 4 x the cell
    # same lattice, another basis (unimodular matrix), atoms wrapped into the new cell
    other = atoms.copy()
    other.set_cell(np.array([[1, 1, 0], [0, 1, 0], [1, 2, 1]]) @ atoms.cell.array, scale_atoms=False)
    other.wrap()
    out = _eval(model, [supercell, other])
    e0 = float(ref.energy[0])
    assert np.isclose(float(out.energy[0]), 4 * e0, rtol=1e-11)
    assert np.isclose(float(out.energy[1]), e0, rtol=1e-11)
    np.testing.assert_allclose(out.stress.numpy(), np.stack([ref.stress[0].numpy()] * 2), atol=1e-12)
    n = len(atoms)
    # make_supercell keeps the atom order within each image: atom k of image t is at t*n + k
    f_super = out.forces[:4 * n].numpy().reshape(4, n, 3)
    for t in range(4):
        np.testing.assert_allclose(f_super[t], ref.forces.numpy(), atol=1e-11)
    np.testing.assert_allclose(out.forces[4 * n:].numpy(), ref.forces.numpy(), atol=1e-11)


@pytest.mark.parametrize("which", ["radial", "angular"])
def test_smooth_when_a_neighbour_crosses_a_cutoff(model, which):
    """Atom 2 moves along x through r = r_c of atom 0 (staying inside both cutoffs of atom 1):
    across the cutoff E changes only as its slope predicts and the force does not jump."""
    r_cut = model.hyperparameters.r_cut_radial if which == "radial" else model.hyperparameters.r_cut_angular
    base = np.array([[0.0, 0.0, 0.0], [1.3, 0.9, 0.0]])

    def evaluate_at(delta):
        atoms = Atoms("MgHCa", positions=np.vstack([base, [r_cut + delta, 0.0, 0.0]]),
                      cell=[30, 30, 30], pbc=True)
        out = _eval(model, [atoms])
        return float(out.energy[0]), out.forces.numpy()

    delta = 1e-7
    (e_in, f_in), (e_out, f_out) = evaluate_at(-delta), evaluate_at(delta)
    slope = -(f_in[2, 0] + f_out[2, 0]) / 2          # dE/dx of atom 2 (trapezoid)
    assert abs(slope) > 1e-5                          # atom 2 does interact (with atom 1)
    assert abs((e_out - e_in) - slope * 2 * delta) < 1e-13
    assert np.abs(f_out - f_in).max() < 1e-5
    # the force is continuous but the cutoff term itself vanishes: f_c ~ (r_c - r)²
    (_, f_a), (_, f_b) = evaluate_at(-1e-3), evaluate_at(-2e-3)
    assert np.abs(f_a - f_out).max() < np.abs(f_b - f_out).max()


def test_batch_equals_one_by_one(model, crystal):
    structures = [crystal(["Mg", "H", "H"], volume_per_atom=9.0),
                  crystal(["Ca", "Ca", "H", "H", "H", "Mg", "H", "H"], volume_per_atom=11.0),
                  crystal(["H", "H"], volume_per_atom=7.0),
                  crystal(["Mg", "Ca", "H", "H", "H"], volume_per_atom=14.0)]
    together = _eval(model, structures)
    offset = 0
    for b, atoms in enumerate(structures):
        alone = _eval(model, [atoms])
        n = len(atoms)
        assert np.isclose(float(together.energy[b]), float(alone.energy[0]), rtol=1e-12)
        np.testing.assert_allclose(together.forces[offset:offset + n].numpy(), alone.forces.numpy(), atol=1e-12)
        np.testing.assert_allclose(together.stress[b].numpy(), alone.stress[0].numpy(), atol=1e-13)
        offset += n


def test_attention_dense_pairs_equal_per_edge_path(make_model, crystal):
    model = make_model(attention_layers=2)
    structures = [crystal(["Mg", "H", "H", "Ca"], volume_per_atom=9.0), crystal(["H"] * 6, volume_per_atom=8.0)]
    batch = Batch.from_atoms(structures)
    edges = neighbor_list(batch, model.cutoff)
    species = model.species_index(batch.numbers)
    vec = edges.vectors(batch.positions, batch.cell, batch.system_idx)
    feats = model.descriptor(vec, edges.index, species)
    x = model.embedding(feats.radial, feats.angular, species)
    layout = PairLayout.build(batch.system_idx, feats.neighbour, batch.n_systems)
    assert layout is not None
    dense = model.attention[0](x, feats.neighbour, feats.cutoff, layout)
    per_edge = model.attention[0](x, feats.neighbour, feats.cutoff, None)
    assert (dense - x).abs().max() > 1e-3
    torch.testing.assert_close(dense, per_edge, rtol=1e-12, atol=1e-12)


def test_attention_temperature_stays_above_bound(make_model):
    model = make_model(attention_layers=1)
    module = model.attention[0]
    with torch.no_grad():
        module.tau_parameter.fill_(-200.0)   # however far training pushes it, 1/τ stays ≤ 100
        assert float(module.tau) >= 0.01
        module.tau_parameter.fill_(-5.0)
        assert float(module.tau) > 0.01
        module.tau_parameter.fill_(0.0)
        assert float(module.tau) == pytest.approx(0.01 + np.log(2))


def test_float32_model_close_to_float64(make_model, crystal):
    model64 = make_model(attention_layers=1)
    model32 = make_model(attention_layers=1).to(torch.float32)
    atoms = crystal(["Mg", "Ca", "H", "H", "H", "H"], volume_per_atom=9.0)
    out64 = _eval(model64, [atoms])
    out32 = evaluate(model32, Batch.from_atoms([atoms], dtype=torch.float32))
    # energies are summed in float64 (DFT-sized references); forces stay in the model dtype
    assert out32.energy.dtype == torch.float64 and out32.forces.dtype == torch.float32
    assert abs(float(out32.energy[0]) - float(out64.energy[0])) < 1e-5
    np.testing.assert_allclose(out32.forces.double().numpy(), out64.forces.numpy(), atol=1e-5)
    # a float64 batch through a float32 model also works (computed in the model's dtype)
    mixed = _eval(model32, [atoms])
    assert abs(float(mixed.energy[0]) - float(out64.energy[0])) < 1e-5


def test_float32_model_keeps_sub_meV_energies_with_dft_sized_references(make_model, crystal):
    # CP2K/QE-like reference energies: -1480 eV and +362 eV per atom on a 48-atom cell; the
    # energy difference the references add must be exact (float32 sums would lose ~0.1 meV/atom)
    model = make_model(elements=["Mg", "H"]).to(torch.float32)
    atoms = crystal(["Mg"] * 16 + ["H"] * 32, volume_per_atom=9.0)
    batch = Batch.from_atoms([atoms], dtype=torch.float32)
    before = float(evaluate(model, batch).energy[0])
    old = model.reference_energies.double()
    model.set_reference_energies({"Mg": -1480.25, "H": 362.5})
    after = float(evaluate(model, batch).energy[0])
    expected = before + 16 * (-1480.25 - float(old[0])) + 32 * (362.5 - float(old[1]))
    assert abs(after - expected) / len(atoms) < 1e-9


def test_unknown_element_is_a_clear_error(make_model):
    model = make_model(elements=["Mg", "H"])
    atoms = Atoms("MgHO", positions=[[0, 0, 0], [1.5, 0, 0], [0, 1.5, 0]], cell=[6, 6, 6], pbc=True)
    with pytest.raises(ValueError, match=r"element O \(Z=8\) is not one of this model's elements \['Mg', 'H'\]"):
        _eval(model, [atoms])


def test_reference_energies_shift_the_energy(make_model, crystal):
    model = make_model()
    atoms = crystal(["Mg", "Ca", "H", "H", "H"], volume_per_atom=9.0)
    before = _energy(model, atoms)
    old = model.reference_energies.clone()
    model.set_reference_energies({"H": -1.25, "Mg": 0.5})
    assert model.reference_energies.tolist() == [0.5, float(old[1]), -1.25]
    expected = before + (0.5 - float(old[0])) + 3 * (-1.25 - float(old[2]))
    assert _energy(model, atoms) == pytest.approx(expected, rel=1e-12)
    model.set_reference_energies(torch.tensor([1.0, 2.0, 3.0]))
    assert model.reference_energies.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="Fe"):
        model.set_reference_energies({"Fe": 1.0})
    with pytest.raises(ValueError, match="3 elements"):
        model.set_reference_energies([1.0, 2.0])


def test_descriptor_statistics_standardize_features(make_model, crystal):
    model = make_model()
    batch = Batch.from_atoms([crystal(["Mg", "Ca", "H", "H", "H", "H"], volume_per_atom=8.0) for _ in range(3)])
    model.fit_descriptor_statistics(batch)
    edges = neighbor_list(batch, model.cutoff)
    feats = model.descriptor(edges.vectors(batch.positions, batch.cell, batch.system_idx), edges.index,
                             model.species_index(batch.numbers))
    emb = model.embedding
    scaled = (feats.angular - emb.angular_shift) * emb.angular_scale
    assert torch.allclose(scaled.mean(0), torch.zeros(scaled.shape[1], dtype=torch.float64), atol=1e-10)
    assert torch.allclose(scaled.std(0, unbiased=False), torch.ones(scaled.shape[1], dtype=torch.float64), atol=1e-8)


def test_hyperparameters_defaults_and_validation():
    hp = ACNNHyperparameters(elements=["Mg", "Ca", "H"])
    assert (hp.r_cut_radial, hp.r_cut_angular, hp.n_radial, hp.n_angular, hp.l_max) == (5.0, 4.0, 16, 14, 4)
    assert hp.embedding == [64, 64] and hp.fitting == [256, 256] and hp.attention_layers == 0
    assert hp.dtype == "float32"
    model = ACNN(hp)
    assert model.cutoff == 5.0 and model.dtype == torch.float32
    assert ACNN(ACNNHyperparameters(elements=["H"], r_cut_radial=3.0, r_cut_angular=3.5)).cutoff == 3.5
    with pytest.raises(ValueError, match="unknown element symbol 'Xx'"):
        ACNNHyperparameters(elements=["Mg", "Xx"])
    with pytest.raises(ValueError, match="duplicate"):
        ACNNHyperparameters(elements=["Mg", "Mg"])
    with pytest.raises(ValueError, match="attention_heads"):
        ACNNHyperparameters(elements=["H"], attention_layers=1, attention_heads=5, embedding=[8])
    with pytest.raises(ValueError, match="r_cut_radial"):
        ACNNHyperparameters(elements=["H"], r_cut_radial=-1)


@pytest.mark.parametrize("attention_layers,activation,residual,linear,bispectrum", [
    (0, "tanh", False, False, 0), (1, "tanh", False, False, 0), (0, "silu", True, False, 0),
    (0, "tanh", False, True, 0), (0, "tanh", False, False, 3)])
def test_force_loss_parameter_gradient_matches_finite_differences(make_model, crystal, attention_layers,
                                                                  activation, residual, linear, bispectrum):
    """Training on forces differentiates through the force graph (double backward)."""
    model = make_model(attention_layers=attention_layers, activation=activation, residual_fitting=residual,
                       linear_term=linear, bispectrum_l_max=bispectrum)
    if linear:
        with torch.no_grad():
            model.linear.weight.normal_(std=0.05)
    batch = Batch.from_atoms([crystal(["Mg", "Ca", "H", "H", "H"], volume_per_atom=9.0)])
    edges = neighbor_list(batch, model.cutoff)
    targets = torch.linspace(-0.1, 0.1, batch.positions.numel(), dtype=torch.float64).view(-1, 3)

    def loss():
        out = evaluate(model, batch, edges=edges, create_graph=True)
        return ((out.forces - targets) ** 2).sum() + (out.stress ** 2).sum() * 1e3

    params = [model.descriptor.angular_mixing, model.embedding.radial_mlp.hidden[0].weight,
              model.fitting.hidden[1].bias] + ([model.attention[0].tau_parameter] if attention_layers else [])
    params += [model.linear.weight] if linear else []
    grads = torch.autograd.grad(loss(), params)
    h = 1e-6
    for p, g in zip(params, grads):
        flat = p.data.view(-1)
        k = int(torch.argmax(g.abs().view(-1)))
        saved = float(flat[k])
        flat[k] = saved + h
        up = float(loss().detach())
        flat[k] = saved - h
        down = float(loss().detach())
        flat[k] = saved
        assert abs(float(g.view(-1)[k])) > 1e-8
        assert (up - down) / (2 * h) == pytest.approx(float(g.view(-1)[k]), rel=1e-5)


def test_activation_and_residual_fitting_are_saved_with_the_model(make_model, crystal, tmp_path):
    atoms = crystal(["Mg", "Ca", "H", "H", "H"], volume_per_atom=9.0)
    model = make_model(activation="silu", residual_fitting=True)
    energy = _energy(model, atoms)
    for other in (make_model(), make_model(activation="silu")):  # the same seed: the same weights
        assert energy != pytest.approx(_energy(other, atoms), abs=1e-6)
    model.save(tmp_path / "m.pt")
    loaded = type(model).load(tmp_path / "m.pt")
    assert (loaded.hyperparameters.activation, loaded.hyperparameters.residual_fitting) == ("silu", True)
    assert _energy(loaded, atoms) == pytest.approx(energy, rel=1e-12)


def test_linear_term_adds_w_dot_standardized_descriptors(make_model, crystal, tmp_path):
    """linear_term: zero at the start (the plain model's energy), then E gains Σ_i w_Z(i) · Φ̂_i."""
    atoms = crystal(["Mg", "Ca", "H", "H", "H"], volume_per_atom=9.0)
    plain, model = make_model(), make_model(linear_term=True)
    assert _energy(model, atoms) == pytest.approx(_energy(plain, atoms), rel=1e-12)
    with torch.no_grad():
        model.linear.weight.normal_(std=0.1, generator=torch.Generator().manual_seed(1))
    batch = Batch.from_atoms([atoms]).to(dtype=model.dtype)
    edges = neighbor_list(batch, model.cutoff)
    species = model.species_index(batch.numbers)
    features = model.descriptor(edges.vectors(batch.positions, batch.cell, batch.system_idx), edges.index,
                                species, neighbour_table=False)
    radial, angular = model.embedding.standardize(features.radial, features.angular)
    expected = float((torch.cat([radial, angular], 1) * model.linear.weight[species]).sum().detach())
    assert abs(expected) > 1e-3
    assert _energy(model, atoms) - _energy(plain, atoms) == pytest.approx(expected, rel=1e-9)
    model.save(tmp_path / "m.pt")
    loaded = type(model).load(tmp_path / "m.pt")
    assert loaded.hyperparameters.linear_term and _energy(loaded, atoms) == pytest.approx(_energy(model, atoms), rel=1e-12)
    with pytest.raises(ValueError, match="linear_term must be true or false"):
        ACNNHyperparameters(elements=["H"], linear_term="yes")


def test_atoms_without_neighbours(model):
    """An isolated atom has only its reference + bare-network energy and no force."""
    lone = Atoms("H", cell=[20, 20, 20], pbc=True)
    pair = Atoms("Mg2", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[20, 20, 20], pbc=True)
    out = _eval(model, [lone, pair])
    assert torch.all(out.forces[0] == 0)
    assert float(out.forces[1, 0]) == pytest.approx(-float(out.forces[2, 0]), rel=1e-12)
    assert abs(float(out.forces[1, 0])) > 1e-5
    assert torch.isfinite(out.energy).all()


@pytest.mark.parametrize("variant", [{}, {"attention_layers": 1}, {"angular_cross_channels": True},
                                     {"bispectrum_l_max": 3}],
                         ids=["plain", "attention", "cross-channels", "bispectrum"])
@pytest.mark.parametrize("same_cutoffs", [False, True], ids=["two-cutoffs", "one-cutoff"])
def test_fused_backward_equals_autograd(make_model, crystal, variant, same_cutoffs):
    """The hand-written first-derivative path (used whenever create_graph is False) gives the
    autograd path's energy, forces, stress and angular-mixing gradient."""
    from acnn_mpi.model.descriptor import first_derivatives_only

    overrides = {"r_cut_angular": 4.0} if same_cutoffs else {}
    model = make_model(**variant, **overrides)
    structures = [crystal(["Mg", "Ca"] + ["H"] * 6, volume_per_atom=7.0),
                  crystal(["Ca"] * 2 + ["H"] * 3, volume_per_atom=9.0)]
    batch = Batch.from_atoms(structures, dtype=torch.float64)
    fused = evaluate(model, batch)
    reference = evaluate(model, batch, create_graph=True)
    assert torch.allclose(fused.energy, reference.energy.detach(), rtol=0, atol=1e-12)
    assert torch.allclose(fused.forces, reference.forces.detach(), rtol=0, atol=1e-12)
    assert torch.allclose(fused.stress, reference.stress.detach(), rtol=0, atol=1e-13)
    assert float(reference.forces.detach().abs().max()) > 1e-3
    grads = []
    for enabled in (True, False):
        model.zero_grad()
        with first_derivatives_only(enabled):
            energy = model.atomic_energies(batch, neighbor_list(batch, model.cutoff)).sum()
        energy.backward()
        grads.append(model.descriptor.angular_mixing.grad.clone())
    assert float(grads[1].abs().max()) > 1e-6
    assert torch.allclose(grads[0], grads[1], rtol=1e-10, atol=1e-14)


@pytest.mark.slow
def test_compiled_fused_kernels_equal_eager(make_model, crystal):
    """torch.compile of the fused kernels (inductor; ~20 s to compile) changes nothing but speed."""
    from acnn_mpi.model.descriptor import compile_fused_kernels

    model = make_model()
    batch = Batch.from_atoms([crystal(["Mg", "Ca"] + ["H"] * 6, volume_per_atom=7.0)])
    eager = evaluate(model, batch)
    compile_fused_kernels(True)
    try:
        compiled = evaluate(model, batch)
    finally:
        compile_fused_kernels(False)
    assert torch.allclose(compiled.forces, eager.forces, rtol=0, atol=1e-12)
    assert torch.allclose(compiled.stress, eager.stress, rtol=0, atol=1e-13)


def test_bucketed_neighbour_tables_change_nothing(make_model, crystal):
    """Atoms processed in buckets of similar neighbour counts (each padded to its own width) give
    the single-table energies, forces and stress."""
    model = make_model()
    structures = [crystal(["Mg", "Ca"] + ["H"] * 6, volume_per_atom=5.0),
                  crystal(["Ca", "H", "H"], volume_per_atom=14.0),
                  crystal(["Mg"] * 2 + ["H"] * 4, volume_per_atom=9.0)]
    batch = Batch.from_atoms(structures, dtype=torch.float64)
    edges = neighbor_list(batch, model.cutoff)
    counts = torch.bincount(edges.index[0], minlength=batch.positions.shape[0])
    model.descriptor.BUCKET_COST_ENTRIES = 10 ** 12
    single = evaluate(model, batch, edges=edges)
    model.descriptor.BUCKET_COST_ENTRIES = 0
    assert len(model.descriptor._buckets(counts)) > 1
    bucketed = evaluate(model, batch, edges=edges)
    assert torch.allclose(bucketed.energy, single.energy, rtol=0, atol=1e-12)
    assert torch.allclose(bucketed.forces, single.forces, rtol=0, atol=1e-12)
    assert torch.allclose(bucketed.stress, single.stress, rtol=0, atol=1e-13)


def test_compile_setting_without_compiler_warns_and_runs_eager(monkeypatch):
    """model.compile: true on a machine without a C++ compiler: one warning, eager kernels."""
    import shutil

    from acnn_mpi.model import descriptor

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    for mode in ("cpp", "inductor"):
        with pytest.warns(UserWarning, match=f"model.compile: {mode}: no C.. compiler"):
            assert descriptor.configure_kernels(mode) == "off"
        assert descriptor._KERNELS["forward"] is descriptor._fused_forward
        assert not descriptor.kernels._STATE.get("enabled")
    assert descriptor.configure_kernels("off") == "off"
    with pytest.raises(ValueError, match="model.compile"):
        descriptor.configure_kernels("fast")


def test_failing_compiled_kernel_falls_back_to_eager(make_model, crystal, monkeypatch):
    """A compiled kernel that cannot be built is replaced by the eager one, with one warning, and
    the result is the eager result."""
    from acnn_mpi.model import descriptor

    model = make_model()
    batch = Batch.from_atoms([crystal(["Mg", "Ca"] + ["H"] * 6, volume_per_atom=7.0)])
    eager = evaluate(model, batch)

    def broken(*args):
        raise RuntimeError("inductor: no working C++ compiler\nsecond line")

    monkeypatch.setitem(descriptor._KERNELS, "forward", broken)
    monkeypatch.setitem(descriptor._KERNELS, "backward", broken)
    monkeypatch.setitem(descriptor._KERNELS, "pointwise", True)
    with pytest.warns(UserWarning, match="torch.compile failed .RuntimeError: inductor: no working C.. compiler.;"):
        fallback = evaluate(model, batch)
    assert descriptor._KERNELS["forward"] is descriptor._fused_forward
    assert descriptor._KERNELS["pointwise"] is False
    assert torch.equal(fallback.forces, eager.forces)
    assert torch.equal(fallback.stress, eager.stress)


@pytest.mark.slow
@pytest.mark.parametrize("variant", [{}, {"angular_cross_channels": True}, {"bispectrum_l_max": 3}],
                         ids=["diagonal", "cross-channels", "bispectrum"])
def test_cpp_kernels_equal_torch_path_and_finite_differences(make_model, crystal, variant):
    """The C++ per-edge kernels (model.compile: cpp; built on first use, ~1-2 min) give the torch
    path's energy, forces and stress, and forces that are the energy's finite differences."""
    from acnn_mpi.model import kernels

    model = make_model(**variant).float()
    atoms = crystal(["Mg", "Ca"] + ["H"] * 6, volume_per_atom=7.0)
    batch = Batch.from_atoms([atoms, crystal(["Mg", "H", "H"], volume_per_atom=6.0)], dtype=torch.float32)
    reference = evaluate(model, batch)
    if not kernels.use_cpp_kernels(True):
        pytest.skip("the C++ kernels cannot be built here (no compiler)")
    try:
        out = evaluate(model, batch)
        single = Batch.from_atoms([atoms], dtype=torch.float32)
        base = evaluate(model, single)
        step, atom, axis = 1e-2, 3, 1
        energies = []
        for sign in (1, -1):
            moved = single.positions.clone()
            moved[atom, axis] += sign * step
            energies.append(float(evaluate(model, single.with_geometry(moved, single.cell)).energy[0]))
    finally:
        kernels.use_cpp_kernels(False)
    assert torch.allclose(out.energy, reference.energy, rtol=0, atol=1e-5)
    assert torch.allclose(out.forces, reference.forces, rtol=0, atol=2e-5 * float(reference.forces.abs().max()) + 1e-6)
    assert torch.allclose(out.stress, reference.stress, rtol=0, atol=2e-5 * float(reference.stress.abs().max()) + 1e-8)
    numeric = -(energies[0] - energies[1]) / (2 * step)
    assert abs(numeric - float(base.forces[atom, axis])) < 2e-3 * max(1.0, abs(numeric))


def test_model_dtype_device_reads_parameters_or_falls_back(make_model):
    from acnn_mpi.model.forces import model_dtype_device
    from acnn_mpi.model.lennard_jones import LennardJones

    model32 = make_model().to(torch.float32)
    assert model_dtype_device(model32) == (torch.float32, torch.device("cpu"))
    assert model_dtype_device(LennardJones()) == (torch.float64, torch.device("cpu"))
    assert model_dtype_device(LennardJones(), default_dtype=None) == (None, torch.device("cpu"))
