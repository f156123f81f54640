"""Space groups with spglib, symmetrised cells (Wyckoff sites), CIF/POSCAR export."""

import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read

from acnn_mpi.csp.export import (export_structures, export_symmetrized, structure_name,
                                 symmetry_operation_text)
from acnn_mpi.csp.symmetry import space_group, space_groups, standardized, symmetrize


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


# -- symmetrised structures -------------------------------------------------------------------------

def rocksalt_rattled():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.01, seed=3)
    return atoms


def l12_rattled():
    atoms = Atoms("AuCu3", cell=[3.75] * 3, pbc=True,
                  scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]).repeat((1, 1, 2))
    atoms.rattle(0.01, seed=2)
    return atoms


def wyckoff_of(cell):
    return sorted((s.element, s.multiplicity, s.letter) for s in cell.sites)


@pytest.mark.parametrize("make, group, conventional, primitive, sites", [
    (lambda: bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2), ("Fm-3m", 225), 4, 1, None),
    (rocksalt_rattled, ("Fm-3m", 225), 8, 2, None),
    (l12_rattled, ("Pm-3m", 221), 4, 4, [[("Au", 1, "a"), ("Cu", 3, "c")]]),
    (lambda: bulk("Mg", "hcp", a=3.2, c=5.2).repeat((2, 2, 1)), ("P6_3/mmc", 194), 2, 2,
     [[("Mg", 2, "c")], [("Mg", 2, "d")]]),  # 2c and 2d differ by the origin choice only
    (rutile, ("P4_2/mnm", 136), 6, 6, [[("O", 4, "f"), ("Ti", 2, "a")]]),
])
def test_symmetrize_known_structures(make, group, conventional, primitive, sites):
    atoms = make()
    if len(atoms) == 32:
        atoms.rattle(0.01, seed=1)
    sym = symmetrize(atoms, symprec=0.1)
    assert (sym.space_group, sym.number) == group and sym.refined
    assert len(sym.conventional.atoms) == conventional and len(sym.primitive.atoms) == primitive
    volume_per_atom = atoms.get_volume() / len(atoms)
    assert sym.conventional.atoms.get_volume() == pytest.approx(conventional * volume_per_atom, rel=1e-3)
    if sites is not None:
        assert wyckoff_of(sym.conventional) in sites
    # the primitive cell keeps the conventional Wyckoff letters, the refined cells keep the group
    assert {s.letter for s in sym.primitive.sites} == {s.letter for s in sym.conventional.sites}
    assert space_group(sym.primitive.atoms, 1e-5) == group == space_group(sym.conventional.atoms, 1e-5)


def test_rocksalt_sites_and_operations():
    sym = symmetrize(rocksalt_rattled())
    conv = sym.conventional
    assert {(s.element, s.multiplicity) for s in conv.sites} == {("Na", 4), ("Cl", 4)}
    assert {s.letter for s in conv.sites} == {"a", "b"} and {s.site_symmetry for s in conv.sites} == {"m-3m"}
    assert len(conv.rotations) == 192 and len(sym.primitive.rotations) == 48  # 48 × 4 centring
    assert sym.crystal_system == "cubic" and sym.as_dict()["wyckoff_sites"][0]["wyckoff"] in {"4a", "4b"}


def test_low_tolerance_keeps_distortion_and_failures_are_p1():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.positions[0] += [0.02, 0.01, 0.0]
    tight = symmetrize(atoms, symprec=1e-4)
    assert tight.number < 225 and len(tight.conventional.atoms) == 4
    broken = Atoms("H2", positions=[[0, 0, 0], [0, 0, 1e-6]], cell=[2, 2, 2], pbc=True)
    assert symmetrize(broken).number in {1, 221}
    with pytest.raises(ValueError):
        symmetrize(atoms, symprec=0)


def test_symmetrized_files_round_trip(tmp_path):
    import json

    from pymatgen.core import Structure

    records = export_symmetrized([rocksalt_rattled(), l12_rattled()], ["001_NaCl", "002_AuCu3"],
                                 tmp_path, symprec=0.1, extras=[{"structure_id": 4}, {"structure_id": 9}])
    assert [r["space_group"] for r in records] == ["Fm-3m", "Pm-3m"]
    for name, group, conventional, primitive in (("001_NaCl", ("Fm-3m", 225), 8, 2),
                                                 ("002_AuCu3", ("Pm-3m", 221), 4, 4)):
        for folder, n in ((tmp_path, conventional), (tmp_path / "primitive", primitive)):
            for path in (folder / f"{name}.cif", folder / f"{name}.vasp"):
                back = read(path)
                assert len(back) == n and space_group(back, 1e-4) == group
            text = (folder / f"{name}.cif").read_text()
            assert f"_symmetry_Int_Tables_number      {group[1]}" in text and "symprec = 0.1 Å" in text
            parsed = Structure.from_file(folder / f"{name}.cif")
            assert len(parsed) == n and parsed.get_space_group_info(0.01) == group
        meta = json.loads((tmp_path / f"{name}.json").read_text())
        assert meta["symprec_angstrom"] == 0.1 and meta["primitive_atoms"] == primitive
    cif = (tmp_path / "002_AuCu3.cif").read_text()
    assert "Au1 Au 1 a 0.00000000 0.00000000 0.00000000 1" in cif and " Cu 3 c " in cif
    index = json.loads((tmp_path / "index.json").read_text())
    assert [s["structure_id"] for s in index["structures"]] == [4, 9]
    assert index["structures"][1]["wyckoff_sites"][1]["wyckoff"] == "3c"


def test_operation_text():
    import numpy as np

    assert symmetry_operation_text(np.eye(3), [0, 0.5, 1 / 3]) == "x,y+1/2,z+1/3"
    assert symmetry_operation_text([[0, -1, 0], [1, -1, 0], [0, 0, -1]], [0, 0, 0.75]) == "-y,x-y,-z+3/4"
