"""Honest labelling cost: every evaluation counted (failed attempts and every relaxation step
included) and core-seconds = wall seconds × cores of the job, summed in the LabelSummary."""

import pytest

from acnn_mpi.label.runner import label_structures
from acnn_mpi.parallel.comm import Comm

from tests.label.test_labellers import cu_pt, scripted


def test_single_point_retries_count_every_attempt():
    labeller, calc = scripted(["raise", "raise", "ok"], retries=2)
    result = labeller.label(cu_pt())
    assert result.ok and result.evaluations == 3 == calc.calls


def test_relaxation_counts_one_evaluation_per_step():
    labeller, calc = scripted(["ok"], retries=0)
    result = labeller.relax(cu_pt(seed=3), pressure_gpa=0.0, fmax=1e-3, steps=40)
    assert result.ok and result.evaluations == calc.calls
    assert result.evaluations >= result.info["steps"] > 2


def test_failed_relaxation_counts_the_steps_it_spent():
    labeller, calc = scripted(["ok", "ok", "ok", "raise"], retries=0)
    result = labeller.relax(cu_pt(), pressure_gpa=0.0, fmax=1e-4, steps=50)
    assert not result.ok and result.evaluations == 4 == calc.calls


def test_summary_sums_evaluations_and_core_seconds(tmp_path):
    structures = [(i, cu_pt(seed=i)) for i in range(3)]
    settings = {"kind": "ase", "calculator": "ase.calculators.emt.EMT"}
    summary = label_structures(Comm(None), structures, settings, str(tmp_path / "l.h5"))
    assert summary.labelled == 3 and summary.evaluations == 3
    assert summary.core_seconds == pytest.approx(sum(summary.seconds))   # one core each
    relaxed = label_structures(Comm(None), structures, settings, str(tmp_path / "r.h5"),
                               mode="relax", fmax=0.01, steps=30)
    assert relaxed.labelled == 3 and relaxed.evaluations > 3 * 2
    assert "evaluations" in relaxed.text() and relaxed.to_dict()["evaluations"] == relaxed.evaluations


def test_every_relaxation_step_is_stored_as_a_label(tmp_path):
    from ase.calculators.emt import EMT

    from acnn_mpi.label.sink import LabelSink

    structures = [(7, cu_pt(seed=1))]
    settings = {"kind": "ase", "calculator": "ase.calculators.emt.EMT"}
    summary = label_structures(Comm(None), structures, settings, str(tmp_path / "r.h5"), mode="relax",
                               fmax=0.01, steps=30)
    steps = LabelSink(str(tmp_path / "r.steps.h5")).read()
    assert len(steps) == summary.evaluations > 2
    assert [a.info["structure_id"] for a in steps] == [7] * len(steps)
    assert abs(steps[0].positions - structures[0][1].positions).max() < 1e-6   # step 0: the input
    (final,) = LabelSink(str(tmp_path / "r.h5")).read()
    assert abs(steps[-1].positions - final.positions).max() < 1e-6
    for frame in (steps[0], steps[len(steps) // 2]):   # each step's labels are EMT's at that step
        check = frame.copy()
        check.calc = EMT()
        assert frame.get_potential_energy() == pytest.approx(check.get_potential_energy(), abs=1e-6)
        assert abs(frame.get_forces() - check.get_forces()).max() < 1e-6
