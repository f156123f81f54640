"""Space groups with spglib and CIF/POSCAR export."""

import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read

from acnn_mpi.csp.export import export_structures, structure_name
from acnn_mpi.csp.symmetry import space_group, space_groups, standardized


def rutile():
    u = 0.305
    return Atoms("Ti2O4", cell=[4.59, 4.59, 2.96], pbc=True,
                 scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [u, u, 0], [1 - u, 1 - u, 0],
                                   [0.5 + u, 0.5 - u, 0.5], [0.5 - u, 0.5 + u, 0.5]])


def test_known_space_groups():
    assert space_group(bulk("Cu", "fcc", a=3.6)) == ("Fm-3m", 225)
    assert space_group(bulk("Mg", "hcp", a=3.2, c=5.2)) == ("P6_3/mmc", 194)
    assert space_group(bulk("Fe", "bcc", a=2.87)) == ("Im-3m", 229)
    assert space_group(bulk("ZnS", "zincblende", a=5.41)) == ("F-43m", 216)
    assert space_group(rutile()) == ("P4_2/mnm", 136)


def test_tolerance_decides_for_slightly_distorted_crystals():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.positions[0] += [0.02, 0.01, 0.0]
    assert space_group(atoms, symprec=0.1) == ("Fm-3m", 225)
    assert space_group(atoms, symprec=1e-4)[1] < 225
    assert space_groups([atoms, rutile()], 0.1) == [("Fm-3m", 225), ("P4_2/mnm", 136)]


def test_degenerate_structures_are_p1_not_errors():
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 1e-6]], cell=[2, 2, 2], pbc=True)
    assert space_group(atoms) in {("P1", 1), ("Pm-3m", 221)}
    with pytest.raises(ValueError):
        space_group(atoms, symprec=0)


def test_standardized_primitive_cell():
    conventional = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    assert len(standardized(conventional, primitive=True)) == 1
    assert len(standardized(conventional)) == 4


def test_cif_and_poscar_round_trip(tmp_path):
    structures = [rutile(), bulk("Mg", "hcp", a=3.2, c=5.2)]
    names = [structure_name(1, "TiO2", 136, 42), structure_name(2, "Mg", 194, 7)]
    assert names == ["001_TiO2_sg136_id42", "002_Mg_sg194_id7"]
    cifs = export_structures(structures, names, tmp_path / "cif", "cif")
    poscars = export_structures(structures, names, tmp_path / "poscar", "poscar")
    assert [p.name for p in cifs] == ["001_TiO2_sg136_id42.cif", "002_Mg_sg194_id7.cif"]
    for path, original in zip(cifs + poscars, structures * 2):
        back = read(path)
        assert back.get_chemical_formula() == original.get_chemical_formula()
        assert back.get_volume() == pytest.approx(original.get_volume(), rel=1e-6)
        assert space_group(back) == space_group(original)
    assert read(poscars[0]).get_chemical_symbols() == ["O"] * 4 + ["Ti"] * 2  # species grouped
    with pytest.raises(ValueError):
        export_structures(structures, names, tmp_path, "xyz")
