"""ASE calculators run in a child process (``isolate: true``; always so for CP2K): same labels as in
process, relaxations inside the child, a hard time limit, and calculator errors as failures."""

import time

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from acnn_mpi.label import make_labeller
from acnn_mpi.units import ev_per_a3_to_gpa

SLOW_CALCULATOR = '''
import time
from ase.calculators.emt import EMT

class Slow(EMT):
    def calculate(self, *args, **kwargs):
        time.sleep(600)

class Broken(EMT):
    def calculate(self, *args, **kwargs):
        raise FloatingPointError("density went negative")
'''


def structure():
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms[3].symbol = "Pd"
    atoms.rattle(0.04, seed=5)
    return atoms


def isolated(tmp_path, **settings):
    base = dict(kind="ase", calculator="ase.calculators.emt.EMT", isolate=True, retries=0,
                workdir=str(tmp_path / "work"), keep_files="all")
    base.update(settings)
    return make_labeller(base)


def test_isolated_single_point_equals_in_process(tmp_path):
    atoms = structure()
    result = isolated(tmp_path).label(atoms, name="a")
    assert result.ok, (result.reason, result.log_tail)
    reference = atoms.copy()
    reference.calc = EMT()
    # labels travel through extended XYZ (8 decimals)
    assert result.energy == pytest.approx(reference.get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(result.forces, reference.get_forces(), atol=1e-6)
    np.testing.assert_allclose(result.stress, reference.get_stress(voigt=False), atol=1e-6)


def test_isolated_relaxation_runs_in_the_child(tmp_path):
    result = isolated(tmp_path).relax(structure(), pressure_gpa=5.0, fmax=0.01, steps=200, name="r")
    assert result.ok and result.info["relax_converged"] and result.info["steps"] > 0
    np.testing.assert_allclose(ev_per_a3_to_gpa(np.diag(result.stress)), -5.0, atol=0.3)
    assert (tmp_path / "work" / "r-relax" / "attempt-1" / "relax.log").exists()


def test_isolated_calculator_killed_at_time_limit(tmp_path):
    (tmp_path / "slowcalc.py").write_text(SLOW_CALCULATOR)
    labeller = isolated(tmp_path, calculator="slowcalc.Slow", timeout=2.0,
                        env={"PYTHONPATH": str(tmp_path)})
    start = time.monotonic()
    result = labeller.label(structure())
    assert result.failure == "timeout" and time.monotonic() - start < 12


def test_isolated_calculator_error_is_a_failure(tmp_path):
    (tmp_path / "slowcalc.py").write_text(SLOW_CALCULATOR)
    labeller = isolated(tmp_path, calculator="slowcalc.Broken", env={"PYTHONPATH": str(tmp_path)})
    result = labeller.label(structure())
    assert result.failure == "error" and "density went negative" in result.reason
