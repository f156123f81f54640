"""A real CP2K single point (energy, forces, stress) on a 2-atom Si cell, through ASE's CP2K calculator
(cp2k_shell) and through the command labeller (cp2k -i/-o); an SCF cut short is a failure.

Skipped where CP2K is not installed (Debian/Ubuntu: apt-get install cp2k cp2k-data; .ci/install_cp2k.sh).
Kept under a minute: SZV basis, 150 Ry cutoff, Γ point, one OpenMP thread.
"""

import os
import shutil

import numpy as np
import pytest
from ase.build import bulk

from acnn_mpi.label import make_labeller
from acnn_mpi.label.ase_labeller import find_cp2k_shell
from acnn_mpi.units import ev_per_a3_to_gpa

CP2K_SHELL = find_cp2k_shell()
DATA = next((d for d in ("/usr/share/cp2k", "/usr/share/cp2k/data", os.environ.get("CP2K_DATA_DIR", ""))
             if d and os.path.exists(os.path.join(d, "BASIS_MOLOPT"))), None)

pytestmark = [
    pytest.mark.skipif(CP2K_SHELL is None, reason="CP2K is not installed: no cp2k_shell or cp2k.psmp "
                       "on PATH (apt-get install cp2k cp2k-data, or run .ci/install_cp2k.sh)"),
    pytest.mark.skipif(DATA is None, reason="CP2K data (BASIS_MOLOPT, GTH_POTENTIALS) not found: "
                       "apt-get install cp2k-data or set CP2K_DATA_DIR"),
]

SMALL = dict(functional="PBE", cutoff=150, rel_cutoff=30, basis_set="SZV-MOLOPT-SR-GTH",
             kpoint_spacing=1.0,   # a Γ-point mesh for this 3.8 Å cell: fast
             env={"OMP_NUM_THREADS": "1"}, retries=0, timeout=120)


def silicon():
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.positions[1] += [0.05, 0.0, -0.03]
    return atoms


@pytest.fixture(scope="module")
def shell_result(tmp_path_factory):
    labeller = make_labeller(dict(kind="cp2k", workdir=str(tmp_path_factory.mktemp("cp2k")), **SMALL))
    return labeller, labeller.label(silicon(), name="si")


def test_cp2k_single_point_energy_forces_stress(shell_result):
    labeller, result = shell_result
    assert "cp2k" in labeller.name and "SZV-MOLOPT-SR-GTH" in labeller.name
    assert result.ok, (result.failure, result.reason, result.log_tail)
    # two Si atoms with 4 valence electrons each: about -96 eV per atom in GTH-PBE
    assert -200 < result.energy < -185
    assert result.forces.shape == (2, 3) and result.stress.shape == (3, 3)
    np.testing.assert_allclose(result.forces.sum(axis=0), 0.0, atol=1e-3)      # momentum conserved
    assert np.abs(result.forces).max() > 0.1                                      # displaced atom
    np.testing.assert_allclose(result.stress, result.stress.T, atol=1e-8)
    # this tiny basis at 5.43 Å is strongly compressed: large pressure, negative ASE stress
    assert ev_per_a3_to_gpa(np.trace(result.stress) / 3) < -10


def test_cp2k_command_labeller_agrees_with_the_shell(shell_result, tmp_path):
    cp2k = next(c for c in ("cp2k", "cp2k.psmp", "cp2k.ssmp", "cp2k.popt", "cp2k.sopt") if shutil.which(c))
    labeller = make_labeller(dict(kind="command", command=f"{cp2k} -i {{input}} -o {{output}}",
                                  input_format="cp2k", workdir=str(tmp_path), **SMALL))
    result = labeller.label(silicon(), name="si")
    _, reference = shell_result
    assert result.ok, (result.failure, result.reason, result.log_tail)
    assert result.energy == pytest.approx(reference.energy, abs=1e-4)
    np.testing.assert_allclose(result.forces, reference.forces, atol=1e-4)
    np.testing.assert_allclose(result.stress, reference.stress, atol=1e-5)


def test_cp2k_scf_not_converged_is_a_failure(tmp_path):
    labeller = make_labeller(dict(kind="cp2k", workdir=str(tmp_path), keep_files="failed",
                                  **dict(SMALL, max_scf=2)))
    result = labeller.label(silicon(), name="short")
    assert not result.ok and result.failure == "not_converged", (result.failure, result.reason)
    assert "SCF run NOT converged" in result.reason and result.attempts == 1
    assert result.energy is None
    assert os.path.exists(os.path.join(result.directory, "cp2k.out"))


def test_cp2k_kpoints_smearing_and_stress_against_energy_differences(tmp_path):
    # 2π × 0.2 Å⁻¹ gives a (shifted) 2×2×2 Monkhorst-Pack mesh for this cell; Fermi-Dirac smearing on
    labeller = make_labeller(dict(kind="cp2k", workdir=str(tmp_path), keep_files="all", gamma_centered=False,
                                  **dict(SMALL, kpoint_spacing=0.2, smearing_temperature=1000.0)))
    atoms = silicon()
    result = labeller.label(atoms, name="k")
    assert result.ok, (result.failure, result.reason, result.log_tail)
    text = open(os.path.join(result.directory, "cp2k.inp")).read()
    assert "SCHEME MONKHORST-PACK 2 2 2" in text and "ELECTRONIC_TEMPERATURE [K] 1000" in text
    # ASE sign: tr(stress)/3 = (1/3V) dE/dε for a uniform strain ε, from CP2K's own energies
    eps, energies = 0.005, []
    for sign in (1, -1):
        strained = atoms.copy()
        strained.set_cell(atoms.cell * (1 + sign * eps), scale_atoms=True)
        other = labeller.label(strained, name=f"k{sign}")
        assert other.ok, other.reason
        energies.append(other.energy)
    numerical = (energies[0] - energies[1]) / (2 * eps) / atoms.get_volume() / 3
    assert np.trace(result.stress) / 3 == pytest.approx(numerical, rel=0.02)


def test_cp2k_cell_opt_agrees_with_ase_optimizer_on_cp2k_single_points(tmp_path):
    """CP2K's own CELL_OPT and ASE's BFGS on cp2k_shell single points reach the same lattice
    constant (within 0.5 %), and every CELL_OPT step comes back as a label.

    Cubic Si₈ at the Γ point (cubic symmetry kept: a shifted 2×2×2 mesh of Si₂ shears the cell),
    compressed at a = 5.55 Å (this tiny setup's minimum is near 5.71 Å): 5-7 evaluations each."""
    cheap = dict(SMALL, timeout=300)
    atoms = bulk("Si", "diamond", a=5.55, cubic=True)
    native = make_labeller(dict(kind="command", command=f"{_cp2k_program()} -i {{input}} -o {{output}}",
                                input_format="cp2k", workdir=str(tmp_path / "n"), **cheap))
    result = native.relax(atoms, pressure_gpa=0.0, fmax=0.01, steps=30, name="si8")
    assert result.ok, (result.failure, result.reason, result.log_tail)
    assert result.info["relax_driver"] == "cp2k native" and result.info["relax_converged"]
    reference = make_labeller(dict(kind="cp2k", workdir=str(tmp_path / "a"), relax_optimizer="BFGS",
                                   **cheap)).relax(atoms, pressure_gpa=0.0, fmax=0.01, steps=30, name="si8")
    assert reference.ok and reference.info["relax_converged"], reference.reason
    a_native = result.atoms.get_volume() ** (1 / 3)
    a_ase = reference.atoms.get_volume() ** (1 / 3)
    assert a_native == pytest.approx(a_ase, rel=0.005)
    assert a_native > 5.6                                 # it did expand from 5.55 Å
    # every step is a label; step 0 is the input, evaluated alike by both drivers
    frames = result.trajectory
    assert len(frames) >= 3 and result.evaluations >= len(frames)
    assert frames[0].get_potential_energy() == pytest.approx(
        reference.trajectory[0].get_potential_energy(), abs=1e-3)
    assert frames[-1].get_volume() == pytest.approx(result.atoms.get_volume(), rel=1e-9)
    pressures = [-ev_per_a3_to_gpa(np.trace(f.get_stress(voigt=False)) / 3) for f in frames]
    assert pressures[0] > 1.0 and abs(pressures[-1]) < 0.1   # GPa: compressed, then relaxed
    assert result.energy == pytest.approx(reference.energy, abs=2e-3)


def _cp2k_program():
    return next(c for c in ("cp2k", "cp2k.psmp", "cp2k.ssmp", "cp2k.popt", "cp2k.sopt") if shutil.which(c))
