"""Seed structures: read from CIF/POSCAR/extxyz, refused with one line when unusable, relaxed by
the labeller and stored as iteration-0 labels."""

from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import bulk

from acnn_mpi.campaign.plan import iteration_of
from acnn_mpi.campaign.seeds import SEED_ID_OFFSET, label_seeds, read_seeds
from acnn_mpi.config import load_config
from acnn_mpi.errors import UserError

TINY = Path(__file__).with_name("tiny.yaml")


def cu3pt(a=3.75):
    atoms = bulk("Cu", "fcc", a=a, cubic=True)
    atoms.symbols[0] = "Pt"  # L1_2 Cu3Pt
    return atoms


def test_cif_poscar_and_extxyz_are_read_with_seed_ids(tmp_path):
    ase.io.write(tmp_path / "a.cif", cu3pt())
    ase.io.write(tmp_path / "POSCAR", bulk("Pt", "fcc", a=3.9), format="vasp")
    ase.io.write(tmp_path / "b.extxyz", [bulk("Cu", "fcc", a=3.6), cu3pt(3.8)])
    seeds = read_seeds([str(tmp_path / n) for n in ("a.cif", "POSCAR", "b.extxyz")], ["Cu", "Pt"])
    assert [a.get_chemical_formula() for a in seeds] == ["Cu3Pt", "Pt", "Cu", "Cu3Pt"]
    ids = [a.info["structure_id"] for a in seeds]
    assert ids == [SEED_ID_OFFSET + k for k in range(4)] and {iteration_of(i) for i in ids} == {0}
    assert ids[0] > 10**9  # far above any chunk id of the initial sampling
    assert np.allclose(seeds[3].cell.lengths(), 3.8)


@pytest.mark.parametrize("atoms, message", [
    (bulk("Au", "fcc", a=4.08), "contains Au, not in elements"),
    (Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]]), "not a periodic 3D crystal"),
])
def test_unusable_seeds_are_refused_in_one_line(tmp_path, atoms, message):
    path = tmp_path / "seed.extxyz"
    ase.io.write(path, atoms)
    with pytest.raises(UserError, match=message):
        read_seeds([str(path)], ["Cu", "Pt"])
    (tmp_path / "junk.cif").write_text("not a cif\n")
    with pytest.raises(UserError, match="cannot read"):
        read_seeds([str(tmp_path / "junk.cif")], ["Cu", "Pt"])


def test_config_resolves_seed_paths_and_refuses_missing_ones(tmp_path):
    data = yaml.safe_load(TINY.read_text())
    ase.io.write(tmp_path / "Cu3Pt.cif", cu3pt())
    data["search"]["seeds"] = ["Cu3Pt.cif"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    config = load_config(tmp_path / "c.yaml")
    assert config.search.seeds == [str((tmp_path / "Cu3Pt.cif").resolve())]
    data["search"]["seeds"] = ["missing.cif"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match="seed structure file missing.cif not found"):
        load_config(tmp_path / "c.yaml")


def test_seeds_are_relaxed_by_the_labeller_and_stored(tmp_path):
    from acnn_mpi.data.store import FrameStore
    from acnn_mpi.parallel.comm import Comm

    data = yaml.safe_load(TINY.read_text())
    ase.io.write(tmp_path / "Cu3Pt.cif", cu3pt(a=3.95))  # 5 % too large for EMT
    data["search"]["seeds"] = ["Cu3Pt.cif"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    config = load_config(tmp_path / "c.yaml")
    labels = tmp_path / "labels.h5"
    label_seeds(Comm(None), config, labels)
    with FrameStore(labels, mode="r") as store:
        assert len(store) == 1
        assert store.column("structure_id").tolist() == [SEED_ID_OFFSET]
        assert store.column("iteration").tolist() == [0]
        assert store.column("source").tolist() == ["seed"]
        arrays = store.read_arrays([0])
    a = abs(np.linalg.det(arrays.cell[0])) ** (1 / 3)
    assert a < 3.9  # shrunk towards the EMT lattice constant of Cu3Pt (3.75 Å)
    assert np.abs(arrays.forces).max() < 0.011 and np.abs(arrays.stress[0]).max() < 0.01
    label_seeds(Comm(None), config, labels)  # a resumed run labels nothing twice
    with FrameStore(labels, mode="r") as store:
        assert len(store) == 1
