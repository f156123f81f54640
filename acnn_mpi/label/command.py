"""The ``command`` labeller: any external code on any launcher, as ASE's FileIOCalculator does it.

For each calculation: write the input with ASE into a directory of its own, run the user's command
template there (``srun -n 64 vasp_std``, ``mpirun -n 32 pw.x -in {input} > {output}``) in its own
process group under a time limit, then read the output with ASE. Placeholders in the template:
``{input}``, ``{output}`` (file names in the directory), ``{directory}`` (absolute path) and
``{name}`` (the structure's name); other braces (``${SLURM_NTASKS}``) are left to the shell.

Input formats with full input sets: ``vasp`` (INCAR, KPOINTS, POSCAR, POTCAR by ASE's Vasp calculator,
from ``parameters`` and ``$VASP_PP_PATH``), ``espresso-in`` (pw.x input: ``parameters`` are
``write_espresso_in`` arguments: ``input_data``, ``pseudopotentials``...), ``cp2k`` (from the cp2k
settings). Any other ase.io format writes the structure only (``parameters`` go to ``ase.io.write``).

An output counts only if the code says it converged: ``vasp-out`` (electronic steps < NELM in the
last ionic step, normal end of OUTCAR), ``espresso-out`` (no "convergence NOT achieved", "JOB DONE"),
``cp2k`` (no "SCF run NOT converged", "PROGRAM ENDED AT"), extended XYZ (``converged=F`` in the
frame's info is a failure); ``failure_patterns``/``success_patterns`` add regular expressions.
"""

from __future__ import annotations

import os
import re
from typing import Optional

import numpy as np

from .base import LabelFailure, Labeller, Labels, check_labels
from .kpoints import kpoint_mesh
from .layout import fill_template  # noqa: F401 - part of this module's interface
from .process import child_environment, run_command, tail
from .settings import LabellerSettings

#: input_format -> (input file, output format, output file)
FORMAT_DEFAULTS = {
    "vasp": ("POSCAR", "vasp-out", "OUTCAR"),
    "espresso-in": ("espresso.pwi", "espresso-out", "espresso.pwo"),
    "cp2k": ("cp2k.inp", "cp2k", "cp2k.out"),
    "extxyz": ("input.xyz", "extxyz", "output.xyz"),
}

def resolved_files(settings: LabellerSettings) -> tuple[str, str, str, str]:
    """(input_format, input_file, output_format, output_file) with the defaults filled in."""
    fmt = settings.input_format
    default_in, default_out_fmt, default_out = FORMAT_DEFAULTS.get(
        fmt, (f"input.{fmt}", fmt, f"output.{fmt}"))
    out_fmt = settings.output_format or default_out_fmt
    if settings.output_format and fmt not in FORMAT_DEFAULTS and not settings.output_file:
        default_out = f"output.{out_fmt}"
    return (fmt, settings.input_file or default_in, out_fmt, settings.output_file or default_out)


# -- convergence checks on the code's own output ---------------------------------------------------

def check_vasp_outcar(text: str) -> Optional[tuple[str, str]]:
    """(kind, reason) if an OUTCAR shows an unconverged or unfinished run, else None."""
    if re.search(r"self-consistency was not achieved", text, re.IGNORECASE):
        return "not_converged", "VASP: the electronic self-consistency was not achieved (NELM)"
    nelm_match = re.search(r"NELM\s*=\s*(\d+)", text)
    iterations = re.findall(r"Iteration\s+(\d+)\s*\(\s*(\d+)\)", text)
    if nelm_match and iterations:
        nelm = int(nelm_match.group(1))
        last_ionic = iterations[-1][0]
        steps = max(int(e) for i, e in iterations if i == last_ionic)
        if steps >= nelm:
            return "not_converged", (f"VASP: the last ionic step used {steps} electronic steps "
                                     f"= NELM {nelm} (SCF not converged)")
    if "General timing and accounting" not in text:
        return "missing_output", "VASP: OUTCAR is incomplete (no 'General timing and accounting')"
    return None


def check_espresso_output(text: str) -> Optional[tuple[str, str]]:
    if re.search(r"convergence NOT achieved", text):
        return "not_converged", "Quantum ESPRESSO: convergence NOT achieved"
    if "JOB DONE" not in text:
        return "missing_output", "Quantum ESPRESSO: output is incomplete (no 'JOB DONE')"
    return None


# -- the labeller -----------------------------------------------------------------------------------

class CommandLabeller(Labeller):
    """An external program run through a command template; see the module docstring."""

    def __init__(self, settings: LabellerSettings):
        super().__init__(settings)
        (self.input_format, self.input_file,
         self.output_format, self.output_file) = resolved_files(settings)
        self.name = f"command:{self.input_format} `{settings.command}`"

    # input
    def write_input(self, atoms, directory: str) -> None:
        """Write the input files of ``atoms`` into ``directory``."""
        from ..errors import UserError

        s = self.settings
        path = os.path.join(directory, self.input_file)
        mesh = kpoint_mesh(atoms.cell.array, s.kpoint_spacing, atoms.pbc)
        try:
            if self.input_format == "vasp":
                from ase.calculators.vasp import Vasp

                params = dict(s.parameters)
                if "kpts" not in params and "kspacing" not in params:
                    params["kpts"] = mesh
                    params.setdefault("gamma", s.gamma_centered)
                Vasp(directory=directory, **params).write_input(atoms)
            elif self.input_format == "espresso-in":
                from ase.io import write

                params = dict(s.parameters)
                if "kpts" not in params and "kspacing" not in params:
                    params["kpts"] = mesh
                    params.setdefault("koffset", (0, 0, 0) if s.gamma_centered else (1, 1, 1))
                input_data = dict(params.pop("input_data", {}) or {})
                control = dict(input_data.get("control", {}) or {})
                control.setdefault("tstress", True)
                control.setdefault("tprnfor", True)
                input_data["control"] = control
                write(path, atoms, format="espresso-in", input_data=input_data, parallel=False, **params)
            elif self.input_format == "cp2k":
                from .cp2k import cp2k_calculator_kwargs, generate_cp2k_input

                kwargs = cp2k_calculator_kwargs(s, atoms, standalone=True)
                with open(path, "w") as f:
                    f.write(generate_cp2k_input(atoms, kwargs, project="cp2k"))
            else:
                from ase.io import write

                write(path, atoms, format=self.input_format, parallel=False, **s.parameters)
        except (KeyError, ValueError, TypeError, OSError, RuntimeError) as error:
            # a setting (or a missing POTCAR) breaks every structure alike: stop the job
            raise UserError(f"labeller: could not write the {self.input_format} input "
                            f"({type(error).__name__}: {error})") from None
        for source in s.copy_files:
            from .ase_labeller import _copy_into

            _copy_into(source, directory)

    # output
    def read_output(self, atoms, directory: str, run_log: str) -> Labels:
        """Labels from the output files in ``directory``; raises LabelFailure."""
        from ase.io import read

        s = self.settings
        path = os.path.join(directory, self.output_file)
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            raise LabelFailure("missing_output", f"no output file {self.output_file}")
        with open(path, errors="replace") as f:
            text = f.read()
        log_text = ""
        if os.path.exists(run_log):
            with open(run_log, errors="replace") as f:
                log_text = f.read()

        problem = None
        fmt = self.output_format
        if fmt in ("vasp-out", "vasp-xml", "vasp-xdatcar"):
            outcar = os.path.join(directory, "OUTCAR")
            if os.path.exists(outcar):
                with open(outcar, errors="replace") as f:
                    problem = check_vasp_outcar(f.read())
            if problem is None and re.search(r"self-consistency was not achieved", log_text, re.I):
                problem = ("not_converged", "VASP: the electronic self-consistency was not achieved")
        elif fmt == "espresso-out":
            problem = check_espresso_output(text)
        elif fmt == "cp2k":
            from .cp2k import check_cp2k_output

            problem = check_cp2k_output(text)
        if problem is None:
            for pattern in s.failure_patterns:
                if re.search(pattern, text) or re.search(pattern, log_text):
                    problem = ("not_converged", f"the output matches failure pattern {pattern!r}")
                    break
        if problem is None:
            for pattern in s.success_patterns:
                if not (re.search(pattern, text) or re.search(pattern, log_text)):
                    problem = ("missing_output", f"the output lacks {pattern!r} (incomplete run?)")
                    break
        if problem is not None:
            raise LabelFailure(*problem)

        if fmt == "cp2k":
            from .cp2k import parse_cp2k_output

            try:
                energy, forces, stress = parse_cp2k_output(text, len(atoms))
            except ValueError as error:
                raise LabelFailure("missing_output", f"CP2K output: {error}") from None
            return check_labels(energy, forces, stress, len(atoms), require_stress=s.require_stress)

        try:
            frame = read(path, format=fmt, index=-1, parallel=False)
        except Exception as error:  # noqa: BLE001 - any reader error means an unusable output
            raise LabelFailure("missing_output", f"could not read {self.output_file} as {fmt}: "
                               f"{type(error).__name__}: {error}") from None
        if frame.info.get("converged") is False or str(frame.info.get("converged")).upper() in ("F", "FALSE"):
            raise LabelFailure("not_converged", "the output says converged = False")
        results = dict(frame.calc.results) if frame.calc is not None else {}
        energy = results.get("free_energy", results.get("energy"))
        forces = results.get("forces")
        stress = results.get("stress")
        if len(frame) != len(atoms):
            raise LabelFailure("invalid", f"the output has {len(frame)} atoms, the input {len(atoms)}")
        sort_file = os.path.join(directory, "ase-sort.dat")
        if fmt.startswith("vasp") and forces is not None and os.path.exists(sort_file):
            resort = np.loadtxt(sort_file, dtype=int, ndmin=2)[:, 1]
            forces = np.asarray(forces)[resort]
        return check_labels(energy, forces, stress, len(atoms), require_stress=s.require_stress)

    def _single_point(self, atoms, directory):
        s = self.settings
        self.write_input(atoms, directory)
        command = self.job.fill(s.command, input=self.input_file, output=self.output_file,
                                directory=directory,
                                name=os.path.basename(os.path.dirname(directory.rstrip("/"))))
        env = child_environment(inherit_mpi_env=s.inherit_mpi_env, extra=self.job_env())
        run_log = os.path.join(directory, "run.log")
        with open(run_log, "w") as f:
            f.write(f"$ {command}\n")
        outcome = run_command(command, cwd=directory, timeout=s.timeout, env=env, log_path=run_log)

        def log_tail():
            parts = [tail(run_log, s.log_tail_lines)]
            output = os.path.join(directory, self.output_file)
            if os.path.abspath(output) != os.path.abspath(run_log):
                parts.append(f"--- {self.output_file} ---\n" + tail(output, s.log_tail_lines)
                             if os.path.exists(output) else f"--- no {self.output_file} ---")
            return "\n".join(p for p in parts if p)

        if outcome.timed_out:
            raise LabelFailure("timeout", f"killed after the time limit of {s.timeout:g} s", log_tail())
        if outcome.returncode != 0:
            raise LabelFailure("crash", f"`{command}` exited with code {outcome.returncode}", log_tail())
        try:
            return self.read_output(atoms, directory, run_log)
        except LabelFailure as failure:
            failure.log_tail = failure.log_tail or log_tail()
            raise
