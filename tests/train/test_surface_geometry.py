"""scripts/surface_geometry.py on known structures: the ideal diamond lattice and its (111) slab."""

import numpy as np
import pytest
from ase.build import bulk, diamond111
from ase.calculators.singlepoint import SinglePointCalculator
from ase.neighborlist import neighbor_list

from tests.train.helpers import import_script


@pytest.fixture(scope="module")
def surface_geometry():
    return import_script("surface_geometry")


def labelled(atoms, energy_ev):
    atoms.calc = SinglePointCalculator(atoms, energy=energy_ev, forces=np.zeros((len(atoms), 3)))
    return atoms


def test_ideal_diamond_is_fourfold_and_undistorted(surface_geometry):
    ge = bulk("Ge", "diamond", a=5.658, cubic=True)
    g = surface_geometry.surface_geometry(labelled(ge, -4.5 * len(ge)), -4.5, 2.9, "bulk")
    assert g.n_threefold == 0 and np.isnan(g.ev_per_missing_bond)
    assert g.bond_length_std_a < 1e-9 and g.angle_rms_deg < 1e-4
    assert g.mev_per_atom_above_bulk == pytest.approx(0.0, abs=1e-9)


def test_111_slab_has_one_dangling_bond_per_face_atom(surface_geometry):
    """A bulk-terminated (111) slab of 3 bilayers, 2 × 2 atoms each: 2 × 4 three-fold face atoms,
    none bonded to another (they are 4.0 Å apart), and the excess energy per missing bond back."""
    slab = diamond111("Ge", size=(2, 2, 8), a=5.658, vacuum=8.0)
    i = neighbor_list("i", slab, 2.9)
    del slab[np.flatnonzero(np.bincount(i, minlength=len(slab)) == 1)]  # ase's one-bond ends
    n = len(slab)
    assert n == 24
    g = surface_geometry.surface_geometry(labelled(slab, -4.5 * n + 8 * 0.25), -4.5, 2.9, "slab")
    assert g.n_threefold == 8 and g.threefold_neighbours == 0.0
    assert g.ev_per_missing_bond == pytest.approx(0.25)
    assert g.mev_per_atom_above_bulk == pytest.approx(1000 * 2.0 / n)
    assert g.angle_rms_deg < 1e-4


def test_missing_file_is_a_clear_error(surface_geometry, capsys):
    assert surface_geometry.main(["no_such_split.xyz"]) == 2
    assert "no_such_split.xyz not found" in capsys.readouterr().err
