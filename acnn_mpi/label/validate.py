"""Checks of a labeller's settings against this machine, before any work starts.

:func:`validate_labeller` raises :class:`~acnn_mpi.errors.UserError` with one line naming the
setting when the DFT command is not on PATH, the command template (or an ``env`` value) uses a
placeholder that does not exist, or a pseudopotential/basis directory or file is missing. ``run``
and labelling call it before any work; ``check`` stops on the settings and warns about what this
machine lacks (a campaign file is often checked on a login node before the job loads its codes).
"""

from __future__ import annotations

import os
import shlex
import shutil
from typing import Any, Optional

from ..errors import UserError
from .layout import check_template
from .settings import LabellerSettings, settings_from_dict

#: launchers and wrappers whose arguments include the program to run
LAUNCHERS = {"mpirun", "mpiexec", "mpiexec.hydra", "srun", "aprun", "jsrun", "ibrun", "orterun",
             "prun", "env", "time", "nice", "numactl", "taskset", "timeout", "stdbuf", "nohup"}
#: where CP2K looks for BASIS_MOLOPT, GTH_POTENTIALS... besides $CP2K_DATA_DIR
CP2K_DATA_DIRS = ("/usr/share/cp2k", "/usr/share/cp2k/data", "/usr/local/share/cp2k/data")


def validate_labeller(settings: Any, *, base_dir: Optional[str] = None,
                      machine: bool = True) -> LabellerSettings:
    """Validate ``settings`` (mapping, pydantic section or LabellerSettings), and with ``machine``
    against this machine (:func:`machine_problems`); returns the LabellerSettings. Raises
    UserError (one line naming the setting)."""
    s = settings_from_dict(settings, base_dir=base_dir)
    problems = []
    for where, template in [("labeller.command", s.command)] + [
            (f"labeller.env.{key}", str(value)) for key, value in s.env.items()]:
        problem = check_template(template, where)
        if problem:
            problems.append(problem)
    if machine:
        problems += machine_problems(s)
    if problems:
        raise UserError("; ".join(problems))
    return s


def machine_problems(settings: Any) -> list[str]:
    """What this machine lacks for the labeller: its program on PATH, CP2K/VASP/QE data."""
    s = settings_from_dict(settings)
    problems: list[str] = []
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in s.env.items()})
    if s.kind == "command" and s.command:
        problems += _missing_programs(s.command, env)
    if s.kind == "cp2k":
        from .ase_labeller import find_cp2k_shell

        shell = find_cp2k_shell(s.command)
        if shell is None:
            problems.append("labeller.command: no cp2k_shell (or cp2k.psmp) on PATH; set "
                            "labeller.command, e.g. 'mpirun -n {cores} cp2k.psmp -s'")
        elif s.command:
            problems += _missing_programs(s.command, env)
    if s.kind == "cp2k" or (s.kind == "command" and s.input_format == "cp2k"):
        problems += _cp2k_data_problems(s, env)
    if s.kind == "command" and s.input_format == "vasp":
        problems += _vasp_problems(s, env)
    if s.kind == "command" and s.input_format == "espresso-in":
        problems += _espresso_problems(s, env)
    return problems


def _missing_programs(template: str, env: dict) -> list[str]:
    """The command's program (and the one a launcher starts) must be on PATH (or a file)."""
    from .layout import fill_template

    text = fill_template(template, input="in", output="out", directory=".", name="s0", cores=1, nodes=1)
    first = text.split("|")[0].split(";")[0].split("&&")[0]
    try:
        words = shlex.split(first)
    except ValueError:
        return []   # shell syntax beyond us: the run will tell
    words = [w for w in words if not (("=" in w and not w.startswith("-")) and w.split("=")[0].isidentifier())]
    if not words:
        return []
    path = env.get("PATH", os.defpath)

    def found(word):
        if os.sep in word and not os.path.isabs(word):
            return True   # relative to the calculation directory (copy_files): the run will tell
        return shutil.which(word, path=path) is not None or (os.path.isabs(word) and os.path.exists(word))

    program = words[0]
    if not found(program):
        return [f"labeller.command: {program!r} is not found on PATH (in `{template}`)"]
    if os.path.basename(program) in LAUNCHERS:
        # the program a launcher starts: the first later word that is a program; if none is, the
        # words that could be it (not options, not numbers) are reported
        candidates = [w for w in words[1:] if not w.startswith("-") and not w.replace(".", "").isdigit()
                      and "{" not in w]
        if candidates and not any(found(w) for w in candidates):
            return [f"labeller.command: the program started by {program} ({', '.join(candidates)}) "
                    f"is not found on PATH (in `{template}`)"]
    return []


def _cp2k_data_problems(s: LabellerSettings, env: dict) -> list[str]:
    problems = []
    data_dir = env.get("CP2K_DATA_DIR")
    if data_dir and not os.path.isdir(data_dir):
        return [f"labeller.env CP2K_DATA_DIR = {data_dir}: no such directory (basis sets and "
                f"pseudopotentials of CP2K)"]
    directories = [d for d in ([data_dir] if data_dir else []) + list(CP2K_DATA_DIRS) if os.path.isdir(d)]
    copied = {os.path.basename(p) for p in s.copy_files}
    for key in ("basis_set_file", "potential_file"):
        name = getattr(s, key)
        if os.path.isabs(name):
            if not os.path.exists(name):
                problems.append(f"labeller.{key} = {name}: no such file")
        elif name not in copied and directories and not any(
                os.path.exists(os.path.join(d, name)) for d in directories):
            problems.append(f"labeller.{key} = {name}: not in {', '.join(directories)} "
                            f"(set CP2K_DATA_DIR in labeller.env, or give a full path)")
        elif not directories and name not in copied:
            problems.append(f"labeller.{key} = {name}: no CP2K data directory found (install "
                            f"cp2k-data or set CP2K_DATA_DIR in labeller.env)")
    return problems


def _vasp_problems(s: LabellerSettings, env: dict) -> list[str]:
    pp_path = env.get("VASP_PP_PATH")
    if not pp_path:
        return ["labeller.env VASP_PP_PATH: not set (the folder holding potpaw_PBE/...; set it in "
                "labeller.env or the environment)"]
    if not os.path.isdir(pp_path):
        return [f"labeller.env VASP_PP_PATH = {pp_path}: no such directory (VASP pseudopotentials)"]
    return []


def _espresso_problems(s: LabellerSettings, env: dict) -> list[str]:
    control = ((s.parameters.get("input_data") or {}).get("control") or {})
    pseudo_dir = control.get("pseudo_dir") or env.get("ESPRESSO_PSEUDO") or os.path.expanduser(
        "~/espresso/pseudo")
    where = "labeller.parameters.input_data.control.pseudo_dir"
    if not os.path.isabs(pseudo_dir) and control.get("pseudo_dir"):
        return []   # relative to each calculation directory (copy_files): checked by the run
    if not os.path.isdir(pseudo_dir):
        return [f"{where} = {pseudo_dir}: no such directory (Quantum ESPRESSO pseudopotentials)"]
    missing = [f for f in (s.parameters.get("pseudopotentials") or {}).values()
               if not os.path.exists(os.path.join(pseudo_dir, f))]
    if missing:
        return [f"labeller.parameters.pseudopotentials: {', '.join(missing)} not in {pseudo_dir}"]
    return []
