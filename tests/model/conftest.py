"""Fixtures for model tests: random periodic structures and small ACNN models (float64, CPU)."""

import numpy as np
import pytest
import torch
from ase import Atoms

from acnn_mpi.model.potential import ACNN, ACNNHyperparameters


def random_crystal(rng, symbols, volume_per_atom=12.0, min_distance=1.4, shear=0.25):
    """A random triclinic cell with atoms at least ``min_distance`` Å apart (periodic images too)."""
    n = len(symbols)
    cell = np.eye(3) + rng.uniform(-shear, shear, size=(3, 3))
    cell *= (n * volume_per_atom / abs(np.linalg.det(cell))) ** (1 / 3)
    frac = []
    while len(frac) < n:
        f = rng.random(3)
        d = np.array(frac) - f if frac else np.zeros((0, 3))
        d -= np.round(d)
        if not len(d) or np.linalg.norm(d @ cell, axis=1).min() > min_distance:
            frac.append(f)
    return Atoms(symbols=list(symbols), scaled_positions=np.array(frac), cell=cell, pbc=True)


def small_model(elements=("Mg", "Ca", "H"), attention_layers=0, seed=0, **overrides):
    """A small float64 ACNN (fast tests) with non-trivial descriptor statistics."""
    torch.manual_seed(seed)
    settings = dict(elements=list(elements), r_cut_radial=4.0, r_cut_angular=3.5, n_radial=6,
                    n_angular=5, l_max=3, embedding=[12, 12], fitting=[16, 16],
                    attention_layers=attention_layers, attention_heads=2, dtype="float64")
    settings.update(overrides)
    model = ACNN(ACNNHyperparameters(**settings))
    # scale the raw features to O(1) so the tanh layers are not saturated
    emb = model.embedding
    emb.radial_scale.fill_(0.3)
    emb.angular_scale.fill_(0.05)
    model.set_reference_energies(torch.linspace(-1.0, -3.0, len(elements)))
    return model


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is fastest (and immune to busy shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(params=[{}, {"attention_layers": 1}, {"bispectrum_l_max": 3}],
                ids=["no-attention", "attention", "bispectrum"])
def model(request):
    return small_model(**request.param)


@pytest.fixture
def crystal(rng):
    """crystal(symbols, **kw) -> a random periodic Atoms (see random_crystal)."""
    return lambda symbols, **kw: random_crystal(rng, symbols, **kw)


@pytest.fixture
def make_model():
    """make_model(elements=..., attention_layers=0, seed=0, **hyperparameters) -> small ACNN."""
    return small_model
