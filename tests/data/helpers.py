"""Helpers for the data tests: EMT-labelled frames: rattled Cu, Au, Al and Cu-Au cells, some with stress."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator


def emt_frames(n=8, seed=0, stress_every=1):
    """``n`` labelled frames (SinglePointCalculator energy/forces, and stress on every
    ``stress_every``-th one), of 1-8 atoms, with ``structure_id`` 100 + i on even frames."""
    rng = np.random.default_rng(seed)
    frames = []
    recipes = [("Cu", 3.61, False), ("Au", 4.08, True), ("Al", 4.05, False), ("Cu", 3.70, True)]
    for i in range(n):
        symbol, a, cubic = recipes[i % len(recipes)]
        atoms = bulk(symbol, "fcc", a=a * (1 + 0.01 * (i % 3)), cubic=cubic)
        if i % 4 == 3:
            atoms[1].symbol = "Au"  # Cu3Au
        if len(atoms) == 1:
            atoms = atoms * (2, 1, 1)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        results = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        if i % stress_every == 0:
            results["stress"] = atoms.get_stress()
        atoms.calc = None
        atoms.calc = SinglePointCalculator(atoms, **results)
        if i % 2 == 0:
            atoms.info["structure_id"] = 100 + i
        frames.append(atoms)
    return frames


def assert_same_frames(got, want, atol=0.0):
    """Structures and labels equal (to ``atol`` for positions/forces/stress)."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert list(g.numbers) == list(w.numbers)
        np.testing.assert_allclose(g.positions, w.positions, rtol=0, atol=atol)
        np.testing.assert_allclose(g.cell.array, w.cell.array, rtol=0, atol=atol)
        assert list(g.pbc) == list(w.pbc)
        assert g.get_potential_energy() == pytest.approx(w.get_potential_energy(), abs=atol)
        np.testing.assert_allclose(g.get_forces(), w.get_forces(), rtol=0, atol=atol)
        assert ("stress" in g.calc.results) == ("stress" in w.calc.results)
        if "stress" in w.calc.results:
            np.testing.assert_allclose(g.get_stress(), w.get_stress(), rtol=0, atol=atol)
