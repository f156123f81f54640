"""Importers and exporters: extended XYZ (ASE fields, other keys, virial), ASE database and other
ASE formats, VASP OUTCAR/vasprun.xml, DeePMD npy; each round trip through a store."""

from pathlib import Path

import ase.db
import ase.io
import numpy as np
import pytest
from ase import Atoms

from acnn_mpi.data.frames import LabelKeys
from acnn_mpi.data.io import detect_format, export_store, read_frames, write_frames
from acnn_mpi.data.store import FrameStore
from acnn_mpi.errors import UserError
from tests.data.helpers import assert_same_frames, emt_frames

ASE_VASP = Path(ase.__file__).parent / "test" / "testdata" / "vasp"


def stored(tmp_path, frames, name="s.h5", **kwargs):
    store = FrameStore(tmp_path / name, "w")
    store.append(frames, **kwargs)
    return store


def test_extxyz_round_trip(tmp_path, frames):
    with stored(tmp_path, frames, source="emt", iteration=4) as store:
        assert export_store(store, tmp_path / "out.xyz", "extxyz") == 8
        with pytest.raises(UserError, match="exists"):
            export_store(store, tmp_path / "out.xyz", "extxyz")
    back = read_frames(tmp_path / "out.xyz")
    # extended XYZ keeps 8 decimals of positions and forces; energy and stress in full
    assert_same_frames(back, frames, atol=1e-8)
    assert [a.get_potential_energy() for a in back] == [a.get_potential_energy() for a in frames]
    assert back[0].info["source"] == "emt" and back[0].info["iteration"] == 4
    with stored(tmp_path, back, name="again.h5") as again:  # metadata survives the trip
        assert again.read([0])[0].info == {"source": "emt", "iteration": 4, "structure_id": 100}


def test_extxyz_with_other_keys_and_virial(tmp_path, frames):
    plain = []
    for atoms in frames[:4]:
        copy = atoms.copy()
        copy.info["DFT_energy"] = atoms.get_potential_energy()
        copy.arrays["DFT_forces"] = atoms.get_forces()
        if "stress" in atoms.calc.results:
            copy.info["DFT_virial"] = -atoms.get_volume() * atoms.get_stress(voigt=False)
        plain.append(copy)
    ase.io.write(tmp_path / "dft.xyz", plain, format="extxyz")
    read = read_frames(tmp_path / "dft.xyz")
    label_keys = LabelKeys(energy="DFT_energy", forces="DFT_forces", virial="DFT_virial")
    with FrameStore(tmp_path / "s.h5") as store:
        with pytest.raises(UserError, match="no energy; no forces"):
            store.append(read)
        store.append(read, label_keys=label_keys)
        back = store.read()
    assert_same_frames(back, frames[:4], atol=1e-8)  # σ = -W/V recovers the ASE stress


def test_ase_database_and_trajectory(tmp_path, frames):
    with ase.db.connect(str(tmp_path / "frames.db"), append=False) as db:
        for k, atoms in enumerate(frames):
            db.write(atoms, source="db-run", iteration=k % 2)
    assert detect_format(tmp_path / "frames.db") == "db"
    read = read_frames(tmp_path / "frames.db")
    assert read[0].info["source"] == "db-run"
    with stored(tmp_path, read) as store:
        assert_same_frames(store.read(), frames)
        assert store.column("iteration").tolist() == [0, 1] * 4
        assert store.column("source").tolist() == ["db-run"] * 8
    ase.io.write(tmp_path / "frames.traj", frames)
    assert_same_frames(read_frames(tmp_path / "frames.traj"), frames)


@pytest.mark.parametrize("name, fmt, formula", [("OUTCAR_example_1", "outcar", "Ni18"),
                                                ("vasprun_pstress.xml", "vasprun", "C2")])
def test_vasp_outputs(tmp_path, name, fmt, formula):
    path = ASE_VASP / name
    if not path.is_file():
        pytest.skip(f"ASE's VASP test file {name} is not installed")
    reference = ase.io.read(path, ":", format="vasp-out" if fmt == "outcar" else "vasp-xml")
    frames = read_frames(path, fmt)
    assert detect_format(tmp_path / name) == fmt
    with stored(tmp_path, frames, source="vasp") as store:
        back = store.read()
    assert len(back) == len(reference) >= 1
    for got, want in zip(back, reference):
        assert got.get_chemical_formula() == formula
        # the free energy (TOTEN, consistent with the forces) is the label, not E(sigma->0)
        assert got.get_potential_energy() == want.calc.results["free_energy"]
        assert got.get_potential_energy() != want.calc.results["energy"]
        np.testing.assert_array_equal(got.get_forces(), want.get_forces())
        np.testing.assert_array_equal(got.get_stress(), want.get_stress())


def test_deepmd_round_trip(tmp_path, frames):
    open_box = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[10, 10, 10], pbc=False)
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    open_box.calc = EMT()
    energy, forces = open_box.get_potential_energy(), open_box.get_forces()
    open_box.calc = SinglePointCalculator(open_box, energy=energy, forces=forces)
    frames = frames + [open_box]
    with stored(tmp_path, frames) as store:
        assert export_store(store, tmp_path / "dp", "deepmd", set_size=1) == 9
    systems = sorted(p.name for p in (tmp_path / "dp").iterdir())
    # one system per atom sequence x periodicity x stress labelled; set_size frames per set
    assert systems == ["sys.0000.Cu", "sys.0001.Au", "sys.0002.Al", "sys.0003.AuCu3", "sys.0004.Cu"]
    cu3au = tmp_path / "dp" / "sys.0003.AuCu3"
    assert (cu3au / "type_map.raw").read_text().split() == ["Al", "Cu", "Au"]
    assert (cu3au / "type.raw").read_text().split() == ["1", "2", "1", "1"]
    assert sorted(p.name for p in cu3au.iterdir()) == ["set.000", "set.001", "type.raw", "type_map.raw"]
    assert sorted(p.name for p in (cu3au / "set.001").iterdir()) == [
        "box.npy", "coord.npy", "energy.npy", "force.npy"]  # no stress labelled: no virial
    assert (tmp_path / "dp" / "sys.0000.Cu" / "set.001" / "virial.npy").exists()
    assert (tmp_path / "dp" / "sys.0004.Cu" / "nopbc").exists()
    back = read_frames(tmp_path / "dp")
    by_energy = {a.get_potential_energy(): a for a in back}
    assert_same_frames([by_energy[a.get_potential_energy()] for a in frames], frames, atol=1e-12)


def test_deepmd_virial_convention_and_type_map(tmp_path):
    system = tmp_path / "sys"
    (system / "set.000").mkdir(parents=True)
    (system / "type.raw").write_text("0\n1\n")
    cell = np.diag([3.0, 4.0, 5.0])
    virial = np.array([[6.0, 1.2, 0.0], [1.2, -3.0, 0.0], [0.0, 0.0, 0.6]])  # eV
    np.save(system / "set.000" / "coord.npy", np.array([[0, 0, 0, 1.5, 2, 2.5]]))
    np.save(system / "set.000" / "box.npy", cell.reshape(1, 9))
    np.save(system / "set.000" / "energy.npy", np.array([-7.5]))
    np.save(system / "set.000" / "force.npy", np.array([[0.1, 0, 0, -0.1, 0, 0]]))
    np.save(system / "set.000" / "virial.npy", virial.reshape(1, 9))
    with pytest.raises(UserError, match="no type_map.raw"):
        read_frames(system)
    (atoms,) = read_frames(system, type_map=["Mg", "O"])
    assert atoms.get_chemical_symbols() == ["Mg", "O"]
    # σ = -W / V with V = 60 Å³, in ASE's Voigt order xx yy zz yz xz xy
    np.testing.assert_allclose(atoms.get_stress(), [-0.1, 0.05, -0.01, 0.0, 0.0, -0.02])
    assert atoms.get_potential_energy() == -7.5


def test_deepmd_export_refusals(tmp_path, frames):
    slab = frames[0].copy()
    slab.calc = frames[0].calc
    slab.pbc = [True, True, False]
    with pytest.raises(UserError, match="periodic along only some axes"):
        write_frames(tmp_path / "dp", [slab], "deepmd")
    write_frames(tmp_path / "dp", frames[:2], "deepmd")
    with pytest.raises(UserError, match="not empty"):
        write_frames(tmp_path / "dp", frames[:2], "deepmd")
    (tmp_path / "dp" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):  # --force removes earlier exports only
        write_frames(tmp_path / "dp", frames[:2], "deepmd", overwrite=True)
    assert (tmp_path / "dp" / "notes.txt").exists()


def test_unknown_format_and_missing_path(tmp_path):
    with pytest.raises(UserError, match="unknown import format 'nonsense'"):
        read_frames(tmp_path / "x.xyz", "nonsense")
    with pytest.raises(UserError, match="no such file or folder"):
        read_frames(tmp_path / "missing.xyz")
    (tmp_path / "broken.xyz").write_text("3\nnot a header\nCu 0 0\n")
    with pytest.raises(UserError, match="cannot read as extxyz"):
        read_frames(tmp_path / "broken.xyz")
    with pytest.raises(UserError, match="unknown export format 'cif'"):
        write_frames(tmp_path / "x.cif", emt_frames(1), "cif")
