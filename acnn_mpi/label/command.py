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

from .base import LabelFailure, Labeller, Labels, check_labels, frame_labels
from .kpoints import kpoint_mesh
from .layout import fill_template  # noqa: F401 - part of this module's interface
from .native_relax import (RelaxRequest, cp2k_relax_converged, cp2k_relax_keywords,
                           cp2k_standard_cell, espresso_relax_converged, espresso_relax_input,
                           read_cp2k_relaxation, steps_frame, vasp_relax_converged,
                           vasp_relax_parameters)
from .process import child_environment, run_command, tail
from .settings import LabellerSettings

#: input_format -> (input file, output format, output file)
FORMAT_DEFAULTS = {
    "vasp": ("POSCAR", "vasp-out", "OUTCAR"),
    "espresso-in": ("espresso.pwi", "espresso-out", "espresso.pwo"),
    "cp2k": ("cp2k.inp", "cp2k", "cp2k.out"),
    "extxyz": ("input.xyz", "extxyz", "output.xyz"),
}
#: input formats whose code relaxes ions and cell itself (relax_driver auto/code)
NATIVE_RELAX_FORMATS = ("vasp", "espresso-in", "cp2k")

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
        from ..errors import UserError

        super().__init__(settings)
        (self.input_format, self.input_file,
         self.output_format, self.output_file) = resolved_files(settings)
        self.name = f"command:{self.input_format} `{settings.command}`"
        native = self.input_format in NATIVE_RELAX_FORMATS
        if settings.relax_driver == "code" and not native:
            raise UserError(f"labeller.relax_driver = 'code': input_format {self.input_format!r} has "
                            f"no relaxation of its own here (those that do: "
                            f"{', '.join(NATIVE_RELAX_FORMATS)}); use relax_driver: ase")
        #: relaxations by the code's own optimizer (VASP IBRION=2/ISIF=3, QE vc-relax, CP2K CELL_OPT)
        self.native_relax = native and settings.relax_driver != "ase"

    # input
    def write_input(self, atoms, directory: str, relax: Optional[RelaxRequest] = None) -> None:
        """Write the input files of ``atoms`` into ``directory`` (a single point, or with ``relax``
        a variable-cell relaxation by the code itself)."""
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
                if relax is not None:
                    params = vasp_relax_parameters(params, relax)
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
                if relax is not None:
                    input_data = espresso_relax_input(input_data, relax, len(atoms), atoms.get_volume())
                write(path, atoms, format="espresso-in", input_data=input_data, parallel=False, **params)
            elif self.input_format == "cp2k":
                from .cp2k import cp2k_calculator_kwargs, generate_cp2k_input

                keywords = (cp2k_relax_keywords(relax, len(atoms), atoms.get_volume())
                            if relax is not None else None)
                kwargs = cp2k_calculator_kwargs(s, atoms, standalone=True, relax=keywords)
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
    def check_output(self, directory: str, run_log: str) -> str:
        """The output text, after the code's own convergence checks and the user's patterns;
        raises LabelFailure."""
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
        return text

    def read_output(self, atoms, directory: str, run_log: str) -> Labels:
        """Labels from the output files in ``directory``; raises LabelFailure."""
        from ase.io import read

        s = self.settings
        fmt = self.output_format
        path = os.path.join(directory, self.output_file)
        text = self.check_output(directory, run_log)
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
        self.write_input(atoms, directory)
        run_log, log_tail = self._run_code(directory, self.settings.timeout)
        try:
            return self.read_output(atoms, directory, run_log)
        except LabelFailure as failure:
            failure.log_tail = failure.log_tail or log_tail()
            raise

    def _run_code(self, directory: str, timeout: float):
        """Run the command in ``directory`` under ``timeout`` s: (run.log path, a function giving
        the tail of the logs); raises LabelFailure on a timeout or a non-zero exit."""
        s = self.settings
        command = self.job.fill(s.command, input=self.input_file, output=self.output_file,
                                directory=directory,
                                name=os.path.basename(os.path.dirname(directory.rstrip("/"))))
        env = child_environment(inherit_mpi_env=s.inherit_mpi_env, extra=self.job_env())
        run_log = os.path.join(directory, "run.log")
        with open(run_log, "w") as f:
            f.write(f"$ {command}\n")
        outcome = run_command(command, cwd=directory, timeout=timeout, env=env, log_path=run_log)

        def log_tail():
            parts = [tail(run_log, s.log_tail_lines)]
            output = os.path.join(directory, self.output_file)
            if os.path.abspath(output) != os.path.abspath(run_log):
                parts.append(f"--- {self.output_file} ---\n" + tail(output, s.log_tail_lines)
                             if os.path.exists(output) else f"--- no {self.output_file} ---")
            return "\n".join(p for p in parts if p)

        if outcome.timed_out:
            raise LabelFailure("timeout", f"killed after the time limit of {timeout:g} s", log_tail())
        if outcome.returncode != 0:
            raise LabelFailure("crash", f"`{command}` exited with code {outcome.returncode}", log_tail())
        return run_log, log_tail

    # relaxation by the code's own optimizer
    def _relax_once(self, atoms, pressure_gpa, fmax, steps, directory, deadline):
        if not self.native_relax:
            return super()._relax_once(atoms, pressure_gpa, fmax, steps, directory, deadline)
        import time

        request = RelaxRequest(pressure_gpa, fmax, steps)
        if self.input_format == "cp2k":
            atoms = cp2k_standard_cell(atoms)
        self.write_input(atoms, directory, relax=request)
        run_log, log_tail = self._run_code(directory, max(1.0, deadline - time.monotonic()))
        try:
            text = self.check_output(directory, run_log)
            frames, evaluations, converged = self._read_relaxation(atoms, directory, text)
            if not frames:
                raise LabelFailure("missing_output", "no ionic step could be read from the output",
                                   evaluations=evaluations)
            for frame in frames:   # every step is a label: none may be unusable
                frame_labels(frame, self.settings.require_stress)
        except LabelFailure as failure:
            failure.log_tail = failure.log_tail or log_tail()
            raise
        final = frames[-1]
        labels = frame_labels(final, self.settings.require_stress)
        if labels.stress is None:
            raise LabelFailure("invalid", "a relaxation needs the stress", log_tail())
        structure = final.copy()
        structure.calc = None
        return structure, labels, dict(steps=len(frames) - 1, relax_converged=converged,
                                       evaluations=evaluations, trajectory=frames,
                                       relax_driver=f"{self.input_format} native")

    def _read_relaxation(self, atoms, directory: str, text: str):
        """(frames, evaluations, converged) of a finished native relaxation."""
        from ase.io import read
        from ase.stress import voigt_6_to_full_3x3_stress

        fmt = self.output_format
        if fmt == "cp2k":
            frames, evaluations = read_cp2k_relaxation(directory, text, atoms)
            return frames, evaluations, cp2k_relax_converged(text)
        path = os.path.join(directory, "OUTCAR" if fmt.startswith("vasp") else self.output_file)
        try:
            steps = read(path, index=":", format="vasp-out" if fmt.startswith("vasp") else fmt,
                         parallel=False)
        except Exception as error:  # noqa: BLE001 - any reader error means an unusable output
            raise LabelFailure("missing_output", f"could not read the relaxation from {path}: "
                               f"{type(error).__name__}: {error}") from None
        order = np.arange(len(atoms))
        sort_file = os.path.join(directory, "ase-sort.dat")
        if fmt.startswith("vasp") and os.path.exists(sort_file):
            order = np.loadtxt(sort_file, dtype=int, ndmin=2)[:, 1]
        frames = []
        for step in steps:
            results = step.calc.results if step.calc is not None else {}
            stress = results.get("stress")
            frames.append(steps_frame(atoms, step.positions[order], step.cell.array,
                                      results.get("free_energy", results.get("energy")),
                                      None if results.get("forces") is None else results["forces"][order],
                                      None if stress is None else voigt_6_to_full_3x3_stress(stress)))
        if fmt.startswith("vasp"):
            with open(path, errors="replace") as f:
                converged = vasp_relax_converged(f.read())
        else:
            converged = espresso_relax_converged(text)
        return frames, len(frames), converged
