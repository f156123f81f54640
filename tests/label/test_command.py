"""The ``command`` labeller against small fake executables (Python scripts written into tmp dirs):
a good code, a crash, a hang past the time limit (killed with its children, within seconds),
unconverged and cut outputs, the MPI-environment stripping, and the VASP/QE/CP2K input writers
and output checks."""

import json
import os
import sys
import time

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from acnn_mpi.errors import UserError
from acnn_mpi.label import child_environment, is_rank_variable, make_labeller
from acnn_mpi.label.command import check_espresso_output, check_vasp_outcar, fill_template
from acnn_mpi.label.cp2k import check_cp2k_output, parse_cp2k_output
from acnn_mpi.label.process import run_command

PY = sys.executable

#: A fake code: reads {input} (extxyz), labels it with EMT, writes {output}; behaviour from argv.
FAKE_CODE = r'''
import os, sys, time, json
mode, inp, out = sys.argv[1], sys.argv[2], sys.argv[3]
print("fake code starting", mode, flush=True)
with open("env.json", "w") as f:
    json.dump(dict(os.environ), f)
if mode == "crash":
    print("segmentation fault in subroutine ZHEEV", flush=True)
    sys.exit(3)
if mode == "hang":
    import subprocess
    child = subprocess.Popen(["sleep", "600"])
    with open("grandchild.pid.tmp", "w") as f:
        f.write(str(child.pid))
    os.replace("grandchild.pid.tmp", "grandchild.pid")
    time.sleep(600)
from ase.io import read, write
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
if mode == "flaky" and not os.path.exists(os.path.join("..", "attempt-2")):
    sys.exit(1)                      # the first attempt dies, the second works
atoms = read(inp, format="extxyz")
atoms.calc = EMT()
results = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces(), stress=atoms.get_stress())
if mode == "nan":
    results["energy"] = float("nan")
if mode == "nostress":
    del results["stress"]
if mode == "scf_message":
    print("WARNING: SCF NOT CONVERGED after 100 steps", flush=True)
atoms.calc = SinglePointCalculator(atoms, **results)
if mode == "unconverged":
    atoms.info["converged"] = False
if mode == "nooutput":
    sys.exit(0)
write(out, atoms, format="extxyz")
if mode == "truncated":
    text = open(out).read()
    open(out, "w").write(text[: len(text) // 2])
print("fake code done", flush=True)
'''


@pytest.fixture
def fake_code(tmp_path):
    path = tmp_path / "fake_code.py"
    path.write_text(FAKE_CODE)
    return path


def command_labeller(fake_code, mode, tmp_path, **extra):
    settings = dict(kind="command", command=f"{PY} {fake_code} {mode} {{input}} {{output}}",
                    input_format="extxyz", workdir=str(tmp_path / "work"), retries=0,
                    timeout=60, keep_files="all")
    settings.update(extra)
    return make_labeller(settings)


def structure(seed=0):
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True)
    atoms[2].symbol = "Au"
    atoms.rattle(0.04, seed=seed)
    return atoms


def test_good_code_labels_like_emt(fake_code, tmp_path):
    labeller = command_labeller(fake_code, "ok", tmp_path)
    atoms = structure()
    result = labeller.label(atoms, name="s7")
    assert result.ok, (result.reason, result.log_tail)
    reference = atoms.copy()
    reference.calc = EMT()
    # extended XYZ keeps 8 decimals
    assert result.energy == pytest.approx(reference.get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(result.forces, reference.get_forces(), atol=1e-6)
    np.testing.assert_allclose(result.stress, reference.get_stress(voigt=False), atol=1e-6)
    assert result.directory == str(tmp_path / "work" / "s7" / "attempt-1")
    assert "fake code done" in open(os.path.join(result.directory, "run.log")).read()


def test_crash_is_recorded_with_log_tail_and_retried(fake_code, tmp_path):
    labeller = command_labeller(fake_code, "crash", tmp_path, retries=2)
    result = labeller.label(structure())
    assert not result.ok and result.failure == "crash" and result.attempts == 3
    assert "exited with code 3" in result.reason
    assert "segmentation fault in subroutine ZHEEV" in result.log_tail


def test_flaky_code_succeeds_on_retry(fake_code, tmp_path):
    labeller = command_labeller(fake_code, "flaky", tmp_path, retries=1)
    result = labeller.label(structure(), name="flaky")
    assert result.ok and result.attempts == 2
    assert result.info["failed_attempts"][0]["failure"] == "crash"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_hang_is_killed_at_the_time_limit_with_its_children(fake_code, tmp_path):
    labeller = command_labeller(fake_code, "hang", tmp_path, timeout=3.0)
    start = time.monotonic()
    result = labeller.label(structure(), name="hang")
    elapsed = time.monotonic() - start
    assert not result.ok and result.failure == "timeout" and result.attempts == 1
    assert elapsed < 12, elapsed     # 3 s, then SIGTERM and at most 3 s to SIGKILL
    assert "fake code starting hang" in result.log_tail
    pid_file = tmp_path / "work" / "hang" / "attempt-1" / "grandchild.pid"
    for _ in range(50):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the code's own child process survived the timeout"


@pytest.mark.parametrize("mode, kind", [
    ("unconverged", "not_converged"), ("nan", "invalid"), ("nostress", "invalid"),
    ("nooutput", "missing_output"), ("truncated", "missing_output"),
])
def test_bad_outputs_are_failures_never_labels(fake_code, tmp_path, mode, kind):
    labeller = command_labeller(fake_code, mode, tmp_path)
    result = labeller.label(structure())
    assert not result.ok and result.failure == kind, (result.failure, result.reason)
    assert result.energy is None and result.forces is None and result.stress is None
    assert result.log_tail  # the tail of the code's output is kept


def test_user_failure_and_success_patterns(fake_code, tmp_path):
    labeller = command_labeller(fake_code, "scf_message", tmp_path,
                                failure_patterns=[r"SCF NOT CONVERGED"])
    result = labeller.label(structure())
    assert result.failure == "not_converged" and "SCF NOT CONVERGED" in result.reason
    labeller = command_labeller(fake_code, "ok", tmp_path, success_patterns=[r"JOB DONE"])
    result = labeller.label(structure())
    assert result.failure == "missing_output" and "JOB DONE" in result.reason


def test_keep_files_failed_removes_successful_directories(fake_code, tmp_path):
    labeller = command_labeller(fake_code, "ok", tmp_path, keep_files="failed")
    result = labeller.label(structure(), name="gone")
    assert result.ok and result.directory is None
    assert not (tmp_path / "work" / "gone").exists()
    labeller = command_labeller(fake_code, "crash", tmp_path, keep_files="failed")
    result = labeller.label(structure(), name="kept")
    assert (tmp_path / "work" / "kept" / "attempt-1" / "run.log").exists()


# -- the MPI environment of child processes ------------------------------------------------------

RANK_VARIABLES = {
    "PMI_RANK": "3", "PMI_SIZE": "8", "PMI_FD": "9", "PMIX_RANK": "3", "HYDI_CONTROL_FD": "7",
    "MPI_LOCALRANKID": "3", "MPI_LOCALNRANKS": "8", "OMPI_COMM_WORLD_RANK": "3",
    "OMPI_COMM_WORLD_SIZE": "8", "OMPI_MCA_ess": "pmi", "OMPI_MCA_orte_hnp_uri": "x",
    "SLURM_PROCID": "3", "SLURM_STEP_ID": "0", "SLURM_LOCALID": "1", "PALS_RANKID": "3",
    "ACNN_MPI_FORCE_MPI": "1",
}
KEPT_VARIABLES = {
    "SLURM_JOB_ID": "12345", "SLURM_NODELIST": "nid[001-004]", "SLURM_NTASKS": "8",
    "OMPI_MCA_btl": "^openib", "I_MPI_PIN_DOMAIN": "omp", "MPICH_GPU_SUPPORT_ENABLED": "0",
    "PMIX_MCA_gds": "hash", "OMP_NUM_THREADS": "4", "VASP_PP_PATH": "/opt/pp",
}


def test_rank_variables_classified():
    for name in RANK_VARIABLES:
        assert is_rank_variable(name), name
    for name in KEPT_VARIABLES:
        assert not is_rank_variable(name), name


def test_child_does_not_inherit_the_launchers_mpi_environment(fake_code, tmp_path, monkeypatch):
    for name, value in {**RANK_VARIABLES, **KEPT_VARIABLES}.items():
        monkeypatch.setenv(name, value)
    # a plain child printing its environment
    log = tmp_path / "env.log"
    outcome = run_command([PY, "-c", "import os, json; print(json.dumps(dict(os.environ)))"],
                          cwd=str(tmp_path), timeout=30, env=child_environment(), log_path=str(log),
                          shell=False)
    assert outcome.returncode == 0
    env = json.loads(log.read_text().strip().splitlines()[-1])
    assert not set(RANK_VARIABLES) & set(env)
    assert all(env[k] == v for k, v in KEPT_VARIABLES.items())
    # the same through the command labeller, plus user variables
    labeller = command_labeller(fake_code, "ok", tmp_path, env={"OMP_NUM_THREADS": 16})
    result = labeller.label(structure(), name="env")
    assert result.ok
    env = json.loads((tmp_path / "work" / "env" / "attempt-1" / "env.json").read_text())
    assert not set(RANK_VARIABLES) & set(env)
    assert env["OMP_NUM_THREADS"] == "16" and env["SLURM_JOB_ID"] == "12345"
    # unless the user asks for them
    labeller = command_labeller(fake_code, "ok", tmp_path, inherit_mpi_env=True)
    result = labeller.label(structure(), name="inherit")
    env = json.loads((tmp_path / "work" / "inherit" / "attempt-1" / "env.json").read_text())
    assert all(env[k] == v for k, v in RANK_VARIABLES.items())


def test_template_placeholders_leave_shell_braces_alone():
    text = fill_template("srun -n ${SLURM_NTASKS} pw.x -in {input} > {output} # {name} {other}",
                         input="a.pwi", output="a.pwo", directory="/d", name="s1")
    assert text == "srun -n ${SLURM_NTASKS} pw.x -in a.pwi > a.pwo # s1 {other}"


# -- VASP: the input set through ASE, a fake vasp writing an OUTCAR, the SCF check ------------------

FAKE_VASP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_vasp.py")


@pytest.fixture
def vasp_setup(tmp_path, monkeypatch):
    """Fake POTCARs in $VASP_PP_PATH; returns the fake VASP script (tests/label/fake_vasp.py)."""
    for element in ("Cu", "Au"):
        folder = tmp_path / "pp" / "potpaw_PBE" / element
        folder.mkdir(parents=True)
        (folder / "POTCAR").write_text(f"  PAW_PBE {element} 06Sep2000\n   POMASS =  63.5; ZVAL   =   11.000\n End of Dataset\n")
    monkeypatch.setenv("VASP_PP_PATH", str(tmp_path / "pp"))
    return FAKE_VASP


def test_vasp_input_set_and_outcar_in_original_atom_order(vasp_setup, tmp_path):
    labeller = make_labeller(dict(kind="command", command=f"{PY} {vasp_setup} ok", input_format="vasp",
                                  parameters={"xc": "PBE", "encut": 400, "ismear": 1, "sigma": 0.2},
                                  kpoint_spacing=0.05, workdir=str(tmp_path / "w"), keep_files="all"))
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms[0].symbol = "Au"          # Au first: ASE's Vasp sorts the POSCAR, labels must be resorted
    atoms.rattle(0.05, seed=4)
    result = labeller.label(atoms, name="v")
    assert result.ok, (result.reason, result.log_tail)
    directory = tmp_path / "w" / "v" / "attempt-1"
    assert {"INCAR", "KPOINTS", "POSCAR", "POTCAR"} <= set(os.listdir(directory))
    incar = (directory / "INCAR").read_text()
    assert "ENCUT = 400" in incar and "ISMEAR = 1" in incar
    # 3.7 Å cubic, spacing 0.05: ceil(0.2703 / 0.05) = 6, Γ-centred
    assert (directory / "KPOINTS").read_text().split("\n")[2:4] == ["Gamma", "6 6 6"]
    reference = atoms.copy()
    reference.calc = EMT()
    np.testing.assert_allclose(result.forces, reference.get_forces(), atol=2e-6)
    np.testing.assert_allclose(result.stress, reference.get_stress(voigt=False), atol=1e-6)
    assert result.energy == pytest.approx(reference.get_potential_energy(), abs=1e-6)


def test_vasp_unconverged_scf_is_rejected(vasp_setup, tmp_path):
    labeller = make_labeller(dict(kind="command", command=f"{PY} {vasp_setup} unconverged",
                                  input_format="vasp", parameters={"xc": "PBE"},
                                  workdir=str(tmp_path / "w")))
    result = labeller.label(structure())
    assert result.failure == "not_converged" and "NELM" in result.reason and result.attempts == 1


def test_vasp_without_potcars_stops_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VASP_PP_PATH", str(tmp_path / "nothing"))
    labeller = make_labeller(dict(kind="command", command="vasp_std", input_format="vasp",
                                  workdir=str(tmp_path / "w")))
    with pytest.raises(UserError, match="could not write the vasp input"):
        labeller.label(structure())


def test_vasp_outcar_checks():
    head = "   NELM   =     60;   NELMIN=  2\n"
    steps = "".join(f" Iteration      {i}(  {j})\n" for i in (1, 2) for j in range(1, 8))
    done = " General timing and accounting informations for this job:\n"
    assert check_vasp_outcar(head + steps + done) is None
    last = "".join(f" Iteration      3(  {j})\n" for j in range(1, 61))
    assert check_vasp_outcar(head + steps + last + done)[0] == "not_converged"
    assert check_vasp_outcar(head + steps)[0] == "missing_output"
    vasp6 = head + steps + " The electronic self-consistency was not achieved in the given\n" + done
    assert check_vasp_outcar(vasp6)[0] == "not_converged"


# -- Quantum ESPRESSO: input written by ASE, output checks ------------------------------------------

def test_espresso_input_has_forces_stress_and_kpoint_mesh(tmp_path):
    labeller = make_labeller(dict(
        kind="command", command="mpirun -n 4 pw.x -in {input} > {output}", input_format="espresso-in",
        parameters={"input_data": {"system": {"ecutwfc": 40}},
                    "pseudopotentials": {"Cu": "Cu.pbe.UPF", "Au": "Au.pbe.UPF"}},
        kpoint_spacing=0.03, workdir=str(tmp_path / "w")))
    directory = tmp_path / "w" / "manual"
    directory.mkdir(parents=True)
    labeller.write_input(structure(), str(directory))
    text = (directory / "espresso.pwi").read_text().lower()
    assert "tstress" in text and "tprnfor" in text and "ecutwfc" in text
    assert "k_points automatic" in text and "10 10 10  0 0 0" in text   # ceil(0.274/0.03) = 10


def test_espresso_output_checks():
    assert check_espresso_output("     convergence has been achieved in  10 iterations\n JOB DONE.\n") is None
    assert check_espresso_output("     convergence NOT achieved after 100 iterations: stopping\n")[0] == "not_converged"
    assert check_espresso_output("     total energy = -10 Ry\n")[0] == "missing_output"


# -- CP2K output parsing (no CP2K needed; captured from CP2K 2023.1) -------------------------------

CP2K_OUT = """
  *** SCF run converged in     9 steps ***
 ENERGY| Total FORCE_EVAL ( QS ) energy [a.u.]:               -7.081641630937399

 ATOMIC FORCES in [a.u.]

 # Atom   Kind   Element          X              Y              Z
      1      1      Si          0.03630109     0.00161019    -0.02180340
      2      1      Si         -0.03630101    -0.00161031     0.02180381
 SUM OF ATOMIC FORCES           0.00000008    -0.00000012     0.00000041     0.00000044

 STRESS| Analytical stress tensor [GPa]
 STRESS|                        x                   y                   z
 STRESS|      x        6.49415464214E+01   4.17351454395E+00   9.74194542713E-02
 STRESS|      y        4.17351454395E+00   6.55508356594E+01  -6.95281571247E+00
 STRESS|      z        9.74194542713E-02  -6.95281571247E+00   6.53305820819E+01
 STRESS| 1/3 Trace                                             6.52743213875E+01
  **** **** ******  **  PROGRAM ENDED AT                 2026-11-25 13:55:20.966
"""


def test_cp2k_output_parsed_in_ase_units_and_sign():
    energy, forces, stress = parse_cp2k_output(CP2K_OUT, 2)
    assert energy == pytest.approx(-7.081641630937399 * 27.211386, rel=1e-6)
    assert forces[0, 0] == pytest.approx(0.03630109 * 51.42208619, rel=1e-6)
    # CP2K prints pressure-sign GPa: 64.94 GPa of pressure is -64.94 GPa of ASE stress
    assert stress[0, 0] * 160.21766208 == pytest.approx(-64.9415464214, rel=1e-6)
    np.testing.assert_allclose(stress, stress.T)
    assert check_cp2k_output(CP2K_OUT) is None
    unconverged = CP2K_OUT.replace("*** SCF run converged in     9 steps ***",
                                   "*** WARNING in qs_scf.F:601 :: SCF run NOT converged ***")
    assert check_cp2k_output(unconverged)[0] == "not_converged"
    assert check_cp2k_output(CP2K_OUT.split("PROGRAM ENDED")[0])[0] == "missing_output"
