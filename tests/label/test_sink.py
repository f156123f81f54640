"""The labels file and the failure record: append, read back, resume ids, cut half-written ends."""

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from acnn_mpi.label.sink import FailureLog, LabelSink


def labelled(n, first_id=10):
    out = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.03, seed=i)
        atoms.calc = EMT()
        results = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                       stress=atoms.get_stress())
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info = {"structure_id": first_id + i, "labeller": "emt"}
        out.append(atoms)
    return out


@pytest.mark.parametrize("name", ["l.xyz", "l.h5"])
def test_append_read_and_resume_ids(tmp_path, name):
    sink = LabelSink(str(tmp_path / name))
    frames = labelled(4)
    assert sink.append(frames[:1]) == {} and sink.append(frames[1:]) == {}
    assert sink.labelled_ids() == {10, 11, 12, 13}
    back = sink.read()
    assert len(back) == 4
    for a, b in zip(frames, back):
        assert b.info["structure_id"] == a.info["structure_id"]
        assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-7)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-7)
        np.testing.assert_allclose(b.get_stress(), a.get_stress(), atol=1e-7)
    assert sink.repair() == 0


def test_extxyz_cut_frame_is_dropped(tmp_path):
    path = tmp_path / "l.xyz"
    sink = LabelSink(str(path))
    sink.append(labelled(3))
    text = path.read_text()
    path.write_text(text[:-60])          # killed while writing the last frame
    assert sink.repair() > 0
    assert sink.labelled_ids() == {10, 11}
    sink.append(labelled(1, first_id=12))
    assert [a.info["structure_id"] for a in sink.read()] == [10, 11, 12]


def test_failure_log_counts_and_survives_a_cut_line(tmp_path):
    log = FailureLog(str(tmp_path / "f.jsonl"))
    log.append({"structure_id": 5, "failure": "timeout", "reason": "x", "extra": np.float64(1.5)})
    log.append({"structure_id": 5, "failure": "crash", "reason": "y"})
    with open(tmp_path / "f.jsonl", "a") as f:
        f.write('{"structure_id": 7, "fail')
    assert log.failure_counts() == {5: 2}
    log.append({"structure_id": 8, "failure": "crash", "reason": "z"})
    assert log.failure_counts() == {5: 2, 8: 1}
    assert json.loads((tmp_path / "f.jsonl").read_text().splitlines()[0])["extra"] == 1.5
