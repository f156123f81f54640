"""Relaxations by the code's own optimizer: the input each code gets (VASP IBRION=2/ISIF=3 with
PSTRESS, QE vc-relax with press, CP2K CELL_OPT with EXTERNAL_PRESSURE) and every ionic step read
back as labels, here with a fake VASP (fake_vasp.py) that relaxes with EMT and writes a multi-step
OUTCAR."""

import sys

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from acnn_mpi.errors import UserError
from acnn_mpi.label import make_labeller
from acnn_mpi.units import ev_per_a3_to_gpa

PY = sys.executable

from tests.label.test_command import vasp_setup as fake_vasp  # noqa: F401 - fixture: POTCARs, fake VASP


def cu_au():
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True)
    atoms[0].symbol = "Au"          # Au first: the POSCAR is sorted, every step must be resorted
    atoms.rattle(0.05, seed=2)
    return atoms


def test_vasp_relaxes_itself_and_every_ionic_step_is_a_label(fake_vasp, tmp_path):
    labeller = make_labeller(dict(kind="command", command=f"{PY} {fake_vasp} relax", input_format="vasp",
                                  parameters={"xc": "PBE", "encut": 400}, kpoint_spacing=0.05,
                                  workdir=str(tmp_path / "w"), keep_files="all"))
    assert labeller.native_relax
    atoms = cu_au()
    result = labeller.relax(atoms, pressure_gpa=5.0, fmax=0.02, steps=60, name="v")
    assert result.ok, (result.reason, result.log_tail)
    incar = (tmp_path / "w" / "v-relax" / "attempt-1" / "INCAR").read_text()
    for line in ("IBRION = 2", "ISIF = 3", "NSW = 60", "PSTRESS = 50.0", "EDIFFG = -2.00e-02"):
        assert line in incar
    assert result.info["relax_converged"] is True and result.info["relax_driver"] == "vasp native"
    assert len(result.trajectory) == result.evaluations == result.info["steps"] + 1 > 3
    assert result.trajectory[0].get_chemical_symbols() == atoms.get_chemical_symbols()
    np.testing.assert_allclose(result.trajectory[0].positions, atoms.positions, atol=1e-5)
    for frame in (result.trajectory[0], result.trajectory[-1]):   # labels in the input's atom order
        check = frame.copy()
        check.calc = EMT()
        assert frame.get_potential_energy() == pytest.approx(check.get_potential_energy(), abs=1e-5)
        np.testing.assert_allclose(frame.get_forces(), check.get_forces(), atol=2e-5)
        np.testing.assert_allclose(frame.get_stress(), check.get_stress(), atol=1e-6)
    # converged at the pressure: the stress is -p on the diagonal, the forces below fmax
    np.testing.assert_allclose(ev_per_a3_to_gpa(np.diag(result.stress)), -5.0, atol=0.2)
    assert np.abs(result.forces).max() < 0.02
    assert result.info["enthalpy"] == pytest.approx(
        result.energy + 5.0 * 0.006241509 * result.atoms.get_volume(), rel=1e-6)


def test_relax_driver_ase_keeps_one_run_per_step(fake_vasp, tmp_path):
    labeller = make_labeller(dict(kind="command", command="true", input_format="extxyz",
                                  relax_driver="auto"))
    assert not labeller.native_relax                      # extxyz: no optimizer of its own
    with pytest.raises(UserError, match="relax_driver = 'code'"):
        make_labeller(dict(kind="command", command="true", input_format="extxyz", relax_driver="code"))
    vasp = make_labeller(dict(kind="command", command="x", input_format="vasp", relax_driver="ase"))
    assert not vasp.native_relax


def test_espresso_vc_relax_input(tmp_path):
    from acnn_mpi.label.native_relax import RelaxRequest

    labeller = make_labeller(dict(kind="command", command="pw.x", input_format="espresso-in",
                                  parameters={"pseudopotentials": {"Cu": "Cu.UPF", "Au": "Au.UPF"},
                                              "input_data": {"system": {"ecutwfc": 40}}}))
    labeller.write_input(cu_au(), str(tmp_path), relax=RelaxRequest(3.0, 0.01, 80))
    text = (tmp_path / "espresso.pwi").read_text().lower()
    for piece in ("calculation      = 'vc-relax'", "nstep            = 80", "press            = 30.0",
                  "cell_dofree      = 'all'", "tstress          = .true.", "&ions", "&cell"):
        assert piece in text, piece
    # forc_conv_thr in Ry/Bohr: 0.01 eV/Å = 3.89e-4 Ry/Bohr
    value = float(next(line for line in text.splitlines() if "forc_conv_thr" in line).split("=")[1])
    assert value == pytest.approx(0.01 / 25.71104, rel=1e-4)


def test_cp2k_cell_opt_input(tmp_path):
    from acnn_mpi.label.native_relax import RelaxRequest, cp2k_standard_cell

    labeller = make_labeller(dict(kind="command", command="cp2k -i {input} -o {output}",
                                  input_format="cp2k", inp="&GLOBAL\n RUN_TYPE ENERGY\n&END GLOBAL\n"))
    atoms = cp2k_standard_cell(bulk("Si", "diamond", a=5.43))
    labeller.write_input(atoms, str(tmp_path), relax=RelaxRequest(10.0, 0.01, 50))
    text = (tmp_path / "cp2k.inp").read_text()
    for piece in ("RUN_TYPE CELL_OPT", "EXTERNAL_PRESSURE [GPa] 10", "MAX_ITER 50", "&CELL ON",
                  "KEEP_SYMMETRY F", "&STRESS_TENSOR"):
        assert piece in text, piece
    assert "RUN_TYPE ENERGY\n" not in text and "ENERGY_FORCE" not in text
    cell = atoms.cell.array
    assert cell[0, 1] == cell[0, 2] == cell[1, 2] == 0.0      # CP2K's orientation: no silent rotation


def test_cp2k_meshes_centred_at_gamma_are_odd():
    from acnn_mpi.label.cp2k import cp2k_input_template
    from acnn_mpi.label.settings import settings_from_dict

    atoms = bulk("Si", "diamond", a=5.43)            # 2π × 0.2 Å⁻¹: 2 points per direction
    centred = settings_from_dict(dict(kind="cp2k", kpoint_spacing=0.2))
    shifted = settings_from_dict(dict(kind="cp2k", kpoint_spacing=0.2, gamma_centered=False))
    assert "MONKHORST-PACK 3 3 3" in cp2k_input_template(centred, atoms, standalone=True)
    assert "MONKHORST-PACK 2 2 2" in cp2k_input_template(shifted, atoms, standalone=True)
