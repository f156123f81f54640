"""validate_frames: each kind of bad frame is named by its index; skip and refuse policies; the
store writes nothing on a refusal."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from acnn_mpi.data.frames import LabelKeys
from acnn_mpi.data.store import FrameStore
from acnn_mpi.data.validate import closest_distance, validate_frames
from acnn_mpi.errors import UserError


def labelled(atoms, energy=-1.0, forces=None, stress=None):
    forces = np.zeros((len(atoms), 3)) if forces is None else forces
    results = dict(energy=energy, forces=forces)
    if stress is not None:
        results["stress"] = stress
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def pair(distance, cell=5.0, pbc=True):
    return Atoms("Cu2", positions=[[0.1, 1, 1], [0.1 + distance, 1, 1]], cell=[cell] * 3, pbc=pbc)


def bad_set(frames):
    """frames[0..7] good; then one bad frame of each kind at indices 8..14."""
    out = list(frames)
    good = frames[0]
    wrong_shape = good.copy()
    labelled(wrong_shape, forces=np.zeros((len(good) + 1, 3)))
    nan_energy = good.copy()
    labelled(nan_energy, energy=float("nan"))
    inf_forces = good.copy()
    forces = np.zeros((len(good), 3))
    forces[0, 1] = np.inf
    labelled(inf_forces, forces=forces)
    # 0.10 Å apart only through the periodic boundary (4.85 Å apart directly)
    periodic_clash = labelled(Atoms("Cu2", positions=[[0.05, 1, 1], [4.90, 1, 1]], cell=[4.95, 5, 5],
                                    pbc=True))
    oxygen = labelled(Atoms("CuO", positions=[[0, 0, 0], [1.9, 0, 0]], cell=[4, 4, 4], pbc=True))
    no_forces = good.copy()
    no_forces.calc = SinglePointCalculator(no_forces, energy=-1.0)
    empty = labelled(Atoms(cell=[3, 3, 3], pbc=True))
    return out + [wrong_shape, nan_energy, inf_forces, periodic_clash, oxygen, no_forces, empty]


def test_each_problem_reported_by_index(frames):
    report = validate_frames(bad_set(frames), allowed_elements=["Cu", "Au", "Al"], on_bad="skip")
    assert report.good == list(range(8))
    assert sorted(report.bad) == list(range(8, 15))
    text = {i: "; ".join(p) for i, p in report.bad.items()}
    assert "forces have shape" in text[8]
    assert "energy is NaN or inf" in text[9]
    assert "forces contain NaN or inf" in text[10]
    assert "atoms 0.100 Å apart" in text[11]
    assert "element(s) not allowed: O" in text[12]
    assert "no forces" in text[13]
    assert "no atoms" in text[14]
    assert report.messages(first_index=100, name="x.xyz frame")[0].startswith("x.xyz frame 108: ")


def test_refuse_lists_the_bad_frames(frames):
    with pytest.raises(UserError) as error:
        validate_frames(bad_set(frames), allowed_elements=["Cu", "Au", "Al"], on_bad="refuse")
    message = str(error.value)
    assert message.startswith("7 of 15 frames are unusable")
    for i in range(8, 15):
        assert f"frame {i}: " in message
    assert "frame 7:" not in message


def test_empty_set_and_bad_arguments(frames):
    with pytest.raises(UserError, match="empty"):
        validate_frames([])
    with pytest.raises(UserError, match="on_bad"):
        validate_frames(frames, on_bad="ignore")
    with pytest.raises(UserError, match="unknown element symbol 'Xx'"):
        validate_frames(frames, allowed_elements=["Cu", "Xx"])


def test_distance_check_is_periodic_and_respects_threshold():
    assert closest_distance(*_geometry(pair(0.25))) == pytest.approx(0.25)
    assert closest_distance(*_geometry(pair(2.5))) == float("inf")
    # 4.85 Å apart in a 5 Å periodic cell: 0.15 Å through the boundary; not in an open box
    assert closest_distance(*_geometry(pair(4.85))) == pytest.approx(0.15)
    assert closest_distance(*_geometry(pair(4.85, pbc=False))) == float("inf")
    # an atom too close to its own image in a tiny cell
    tiny = Atoms("Cu", positions=[[0, 0, 0]], cell=[0.2, 5, 5], pbc=True)
    assert closest_distance(*_geometry(tiny)) == pytest.approx(0.2)
    assert validate_frames([labelled(pair(0.25))], on_bad="skip").bad
    assert not validate_frames([labelled(pair(0.25))], on_bad="skip", min_distance=0.2).bad


def _geometry(atoms):
    return atoms.positions, atoms.cell.array, atoms.pbc


def test_labels_under_other_keys_and_virial(frames):
    atoms = frames[0].copy()
    energy, forces = frames[0].get_potential_energy(), frames[0].get_forces()
    stress = frames[0].get_stress(voigt=False)
    atoms.calc = None
    atoms.info["REF_energy"] = energy
    atoms.arrays["REF_forces"] = forces
    atoms.info["REF_virial"] = -atoms.get_volume() * stress
    report = validate_frames([atoms], on_bad="skip")
    assert report.bad == {0: ["no energy", "no forces"]}
    label_keys = LabelKeys(energy="REF_energy", forces="REF_forces", virial="REF_virial")
    assert validate_frames([atoms], label_keys=label_keys).good == [0]


def test_store_append_policies(tmp_path, frames):
    bad = bad_set(frames)
    with FrameStore(tmp_path / "s.h5") as store:
        with pytest.raises(UserError, match="7 of 15"):
            store.append(bad, allowed_elements=["Cu", "Au", "Al"])
        assert len(store) == 0
        report = store.append(bad, allowed_elements=["Cu", "Au", "Al"], on_bad="skip")
        assert len(store) == 8 and sorted(report.bad) == list(range(8, 15))
