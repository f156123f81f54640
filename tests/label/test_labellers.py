"""The labeller interface with in-process ASE calculators (EMT, Lennard-Jones): labels, stress sign,
relaxation at pressure, retries, and the failures that must never become labels."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.fd import calculate_numerical_stress
from ase.calculators.lj import LennardJones

from acnn_mpi.errors import UserError
from acnn_mpi.label import LabellerSettings, kpoint_mesh, make_labeller, settings_from_dict
from acnn_mpi.label.ase_labeller import AseLabeller
from acnn_mpi.units import ev_per_a3_to_gpa


def cu_pt(seed=0):
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms[1].symbol = "Pt"
    atoms.rattle(0.05, seed=seed)
    return atoms


def test_emt_single_point_matches_ase_and_finite_differences():
    labeller = make_labeller({"kind": "ase", "calculator": "ase.calculators.emt.EMT"})
    atoms = cu_pt()
    result = labeller.label(atoms)
    assert result.ok and result.failure is None and result.attempts == 1
    assert result.labeller == "ase:ase.calculators.emt.EMT"
    reference = atoms.copy()
    reference.calc = EMT()
    assert result.energy == pytest.approx(reference.get_potential_energy(), abs=1e-10)
    assert result.forces.shape == (4, 3) and result.stress.shape == (3, 3)
    np.testing.assert_allclose(result.forces, reference.get_forces(), atol=1e-10)
    # ASE sign: stress = (1/V) dE/dε, checked by finite differences of the energy
    numerical = calculate_numerical_stress(reference, eps=1e-5, voigt=False)
    np.testing.assert_allclose(result.stress, numerical, atol=1e-6)
    # the structure is untouched and the result carries a labelled copy
    assert atoms.calc is None
    labelled = result.labelled_atoms()
    assert labelled.get_potential_energy() == pytest.approx(result.energy)
    assert result.wall_time > 0


def test_lennard_jones_labeller_with_parameters():
    settings = {"kind": "ase", "calculator": "ase.calculators.lj.LennardJones",
                "parameters": {"sigma": 2.3, "epsilon": 0.4, "rc": 6.0, "smooth": True}}
    labeller = make_labeller(settings)
    atoms = bulk("Ar", "fcc", a=3.4) * (2, 2, 2)
    atoms.rattle(0.02, seed=3)
    result = labeller.label(atoms)
    assert result.ok
    reference = atoms.copy()
    reference.calc = LennardJones(sigma=2.3, epsilon=0.4, rc=6.0, smooth=True)
    assert result.energy == pytest.approx(reference.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(result.stress, reference.get_stress(voigt=False), atol=1e-12)
    assert abs(result.forces.sum(axis=0)).max() < 1e-10   # Newton's third law


def test_relax_at_pressure_reaches_minus_p_stress():
    labeller = make_labeller({"kind": "ase", "calculator": "ase.calculators.emt.EMT"})
    atoms = cu_pt(seed=1)
    result = labeller.relax(atoms, pressure_gpa=10.0, fmax=0.005, steps=300)
    assert result.ok and result.info["relax_converged"] is True
    assert result.info["steps"] > 0 and result.info["pressure_gpa"] == 10.0
    # at equilibrium under pressure P, the stress is -P on the diagonal (ASE sign)
    # (FrechetCellFilter's cell "force" is virial / N, so fmax 0.005 eV/Å leaves ≲ 0.1 GPa)
    np.testing.assert_allclose(ev_per_a3_to_gpa(np.diag(result.stress)), -10.0, atol=0.1)
    assert np.abs(result.forces).max() < 0.005
    assert result.atoms.get_volume() < atoms.get_volume()   # compressed
    expected_h = result.energy + 10.0 / 160.21766208 * result.atoms.get_volume()
    assert result.info["enthalpy"] == pytest.approx(expected_h)
    # the labels belong to the final structure
    check = result.atoms.copy()
    check.calc = EMT()
    assert check.get_potential_energy() == pytest.approx(result.energy, abs=1e-10)


def test_relax_that_runs_out_of_steps_still_labels_final_structure():
    labeller = make_labeller({"kind": "ase", "calculator": "ase.calculators.emt.EMT"})
    result = labeller.relax(cu_pt(seed=2), pressure_gpa=0.0, fmax=1e-6, steps=3)
    assert result.ok and result.info["relax_converged"] is False and result.info["steps"] == 3
    check = result.atoms.copy()
    check.calc = EMT()
    np.testing.assert_allclose(check.get_forces(), result.forces, atol=1e-10)


class _Scripted(Calculator):
    """Energy/forces/stress from EMT, or a scripted misbehaviour."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, behaviour, **kwargs):
        super().__init__(**kwargs)
        self.behaviour = list(behaviour)
        self.calls = 0

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        what = self.behaviour[min(self.calls, len(self.behaviour) - 1)]
        self.calls += 1
        if what == "raise":
            raise RuntimeError("SCF exploded")
        emt = EMT()
        emt.calculate(self.atoms, ["energy", "forces", "stress"], all_changes)
        self.results = dict(emt.results)
        if what == "nan":
            self.results["energy"] = float("nan")
            self.results.pop("free_energy", None)
        elif what == "inf_forces":
            self.results["forces"][0, 0] = np.inf
        elif what == "no_stress":
            del self.results["stress"]


def scripted(behaviour, **settings):
    calc = _Scripted(behaviour)
    s = settings_from_dict({"kind": "ase", "calculator": "ase.calculators.emt.EMT", **settings})
    return AseLabeller(s, factory=lambda settings, atoms: calc), calc


@pytest.mark.parametrize("behaviour, kind", [("nan", "invalid"), ("inf_forces", "invalid"),
                                             ("no_stress", "invalid")])
def test_non_finite_or_missing_labels_are_failures(behaviour, kind):
    labeller, calc = scripted([behaviour], retries=3)
    result = labeller.label(cu_pt())
    assert not result.ok and result.failure == kind
    assert result.energy is None and result.forces is None
    assert result.attempts == 1   # invalid labels are not retried by default
    assert len(result.info["failed_attempts"]) == 1
    assert result.labelled_atoms() is None


def test_missing_stress_allowed_when_not_required():
    labeller, _ = scripted(["no_stress"], require_stress=False)
    result = labeller.label(cu_pt())
    assert result.ok and result.stress is None


def test_retries_until_success_and_records_attempts():
    labeller, calc = scripted(["raise", "raise", "ok"], retries=2)
    result = labeller.label(cu_pt())
    assert result.ok and result.attempts == 3 and calc.calls == 3
    assert [a["failure"] for a in result.info["failed_attempts"]] == ["error", "error"]


def test_retries_exhausted_is_a_failure_with_reason():
    labeller, calc = scripted(["raise"], retries=1)
    result = labeller.label(cu_pt())
    assert not result.ok and result.failure == "error" and result.attempts == 2 and calc.calls == 2
    assert "SCF exploded" in result.reason
    summary = result.summary()
    assert summary["ok"] is False and summary["attempts"] == 2


def test_failed_single_point_fails_the_relaxation():
    labeller, _ = scripted(["ok", "ok", "raise"], retries=0)
    result = labeller.relax(cu_pt(), pressure_gpa=0.0, fmax=1e-4, steps=50)
    assert not result.ok and result.failure == "error"


def test_settings_validation_messages():
    with pytest.raises(UserError, match="kind 'ase' needs `calculator`"):
        make_labeller({"kind": "ase"})
    with pytest.raises(UserError, match=r"labeller.cuttoff: unknown key"):
        settings_from_dict({"kind": "cp2k", "cuttoff": 300})
    with pytest.raises(UserError, match=r"labeller.timeout = 'long': expected int"):
        settings_from_dict({"kind": "ase", "calculator": "x.Y", "timeout": "long"})
    with pytest.raises(UserError, match="must be one of ase, chgnet, cp2k, command"):
        settings_from_dict({"kind": "vasp"})
    with pytest.raises(UserError, match="unknown failure kind"):
        settings_from_dict({"kind": "ase", "calculator": "a.B", "retry_on": ["sometimes"]})
    with pytest.raises(UserError, match="kind 'command' needs `command`"):
        make_labeller({"kind": "command", "input_format": "vasp"})
    with pytest.raises(UserError, match="cannot import it"):
        make_labeller({"kind": "ase", "calculator": "ase.calculators.nothing.Here"})
    # None means "not set" (as in the campaign's pydantic model dump)
    s = settings_from_dict({"kind": "ase", "calculator": "ase.calculators.emt.EMT", "workdir": None,
                            "timeout": 60})
    assert isinstance(s, LabellerSettings) and s.timeout == 60.0 and s.workdir is None


def test_kpoint_mesh_from_spacing():
    # cubic 4 Å: |a*| = 0.25 Å⁻¹ -> ceil(0.25 / 0.03) = 9 along each direction
    assert kpoint_mesh(np.eye(3) * 4.0, 0.03) == (9, 9, 9)
    # the 2π convention: |b| = 2π/4 Å⁻¹ = 1.571; 1.571 / (2π × 0.03) = 8.33 -> 9
    assert kpoint_mesh(np.diag([4.0, 8.0, 30.0]), 0.03, pbc=(True, True, False)) == (9, 5, 1)
    # hexagonal a = 3, c = 5: |a*| = 2/(√3 a) = 0.385 -> 13; c* = 0.2 -> 7
    hexagonal = bulk("Mg", "hcp", a=3.0, c=5.0).cell.array
    assert kpoint_mesh(hexagonal, 0.03) == (13, 13, 7)
    assert kpoint_mesh(np.eye(3) * 100.0, 0.03) == (1, 1, 1)


def test_factory_accepts_the_campaign_config_section():
    from acnn_mpi.config import load_config
    from tests.conftest import REPO

    config = load_config(REPO / "inputs" / "demo.yaml")
    labeller = make_labeller(config.labeller)
    assert labeller.label(cu_pt()).ok
    vasp = load_config(REPO / "inputs" / "bepno.yaml").labeller
    labeller = make_labeller(vasp)
    assert labeller.input_file == "POSCAR" and labeller.output_format == "vasp-out"
    assert labeller.settings.timeout == 7200
