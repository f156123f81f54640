"""Honest labelling cost: every evaluation counted (failed attempts and every relaxation step
included) and core-seconds = wall seconds × cores of the job, summed in the LabelSummary."""

import pytest

from acnn_mpi.label.runner import label_structures
from acnn_mpi.parallel.comm import Comm

from .test_labellers import cu_pt, scripted


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
