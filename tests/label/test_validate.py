"""Bad labeller settings found before any work starts: one line naming the setting (exit 2)."""

import sys

import pytest

from acnn_mpi.errors import UserError
from acnn_mpi.label.validate import validate_labeller

PY = sys.executable


def command(template, **more):
    return {"kind": "command", "command": template, "input_format": "extxyz", **more}


def test_a_good_command_passes():
    s = validate_labeller(command(f"{PY} driver.py {{input}} {{output}} -n {{cores}}",
                                  env={"OMP_NUM_THREADS": "{cores}"}))
    assert s.kind == "command"


@pytest.mark.parametrize("settings, message", [
    (command("no_such_dft_code_xyz -i {input}"),
     "labeller.command: 'no_such_dft_code_xyz' is not found on PATH"),
    (command(f"env OMP_NUM_THREADS=2 {PY} -c pass"), None),
    (command("./driver.sh {input} {output}", copy_files=[]), None),      # copied into each directory
    (command("/no/such/dir/vasp_std"), "'/no/such/dir/vasp_std' is not found on PATH"),
    (command("mpirun -n {cores} no_such_vasp_xyz"),
     r"the program started by mpirun \(no_such_vasp_xyz\) is not found on PATH"),
    (command(f"{PY} run.py {{inptu}} {{output}}"), "labeller.command = .*unknown placeholder\\(s\\) \\{inptu\\}"),
    (command(f"{PY} run.py", env={"OMP_NUM_THREADS": "{threads}"}),
     "labeller.env.OMP_NUM_THREADS = '\\{threads\\}': unknown placeholder"),
    (dict(kind="cp2k", env={"CP2K_DATA_DIR": "/no/such/cp2k/data"}),
     "CP2K_DATA_DIR = /no/such/cp2k/data: no such directory"),
    (dict(kind="cp2k", basis_set_file="/no/such/BASIS"), "labeller.basis_set_file = /no/such/BASIS: no such file"),
    (command(f"{PY} vasp.py", input_format="vasp", env={"VASP_PP_PATH": "/no/such/potentials"}),
     "VASP_PP_PATH = /no/such/potentials: no such directory"),
    (command(f"{PY} pw.py", input_format="espresso-in",
             parameters={"input_data": {"control": {"pseudo_dir": "/no/such/pseudo"}}}),
     "pseudo_dir = /no/such/pseudo: no such directory"),
])
def test_bad_settings_named_in_one_line(settings, message, monkeypatch):
    monkeypatch.setattr("acnn_mpi.label.ase_labeller.find_cp2k_shell", lambda command=None: "cp2k_shell")
    if message is None:
        validate_labeller(settings)
        return
    with pytest.raises(UserError, match=message) as error:
        validate_labeller(settings)
    assert "\n" not in str(error.value)


def test_missing_pseudopotential_file(tmp_path):
    (tmp_path / "Si.upf").write_text("x")
    settings = command(f"{PY} pw.py", input_format="espresso-in", parameters={
        "pseudopotentials": {"Si": "Si.upf", "C": "C.pbe.UPF"},
        "input_data": {"control": {"pseudo_dir": str(tmp_path)}}})
    with pytest.raises(UserError, match="pseudopotentials: C.pbe.UPF not in"):
        validate_labeller(settings)


def test_check_and_run_stop_on_a_placeholder_and_a_missing_program(acnn, tmp_path):
    config = tmp_path / "campaign.yaml"
    config.write_text("elements: [Si]\nlabeller:\n  kind: command\n  command: 'no_such_dft_code_xyz {inptu}'\n"
                      "  input_format: extxyz\n")
    result = acnn(["check", str(config)], timeout=60)
    assert result.returncode == 2 and "unknown placeholder(s) {inptu}" in result.stderr
    assert "Traceback" not in result.stderr
    # a program missing here: `check` refuses what `run` would refuse ...
    config.write_text(config.read_text().replace("{inptu}", "{input}"))
    result = acnn(["check", "-q", str(config)], timeout=60)
    assert result.returncode == 2 and "'no_such_dft_code_xyz' is not found on PATH" in result.stderr
    # ... and `run` stops before any work, in one line, exit 2
    result = acnn(["run", str(config), "--output-dir", str(tmp_path / "out")], timeout=60)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'no_such_dft_code_xyz' is not found on PATH" in errors[0]
    assert not (tmp_path / "out" / "iter_000").exists()
