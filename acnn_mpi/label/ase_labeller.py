"""Labellers built on ASE calculators: ``ase`` (any calculator by import path), ``chgnet`` and
``cp2k`` (ASE's CP2K calculator driving ``cp2k_shell``).

In-process calculators (``ase`` by default, ``chgnet``) run in the labelling rank itself: fast, but a
time limit cannot be enforced. With ``isolate: true`` (always for ``cp2k``) every single point or
relaxation runs in a child Python process (:mod:`acnn_mpi.label.worker`) in its own directory and
process group, with the MPI-stripped environment and a hard time limit; the child writes its
labels to ``result.extxyz`` and its verdict to ``result.json``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import shutil
import sys
from typing import Callable, Optional

from .base import LabelFailure, Labeller, Labels, frame_labels, labels_from_calculator
from .process import child_environment, run_command, tail
from .settings import LabellerSettings


def import_object(path: str):
    """``package.module.Name`` (or ``package.module:Name``) -> the object."""
    module_name, sep, attribute = path.replace(":", ".").rpartition(".")
    if not sep or not module_name:
        raise ValueError(f"{path!r} is not an import path such as ase.calculators.emt.EMT")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"module {module_name} has no {attribute!r}") from None


class AseLabeller(Labeller):
    """Any ASE calculator, from ``calculator`` (import path) and ``parameters`` (its kwargs)."""

    def __init__(self, settings: LabellerSettings, factory: Optional[Callable] = None,
                 name: Optional[str] = None):
        super().__init__(settings)
        self._factory = factory
        self._calc = None
        self.name = name or f"ase:{settings.calculator}"
        self.needs_directory = bool(settings.isolate)

    # -- in process -----------------------------------------------------------------------------

    def make_calculator(self, atoms=None):
        if self._factory is not None:
            return self._factory(self.settings, atoms)
        cls = import_object(self.settings.calculator)
        return cls(**self.settings.parameters)

    def calculator(self, atoms=None):
        if self._calc is None:
            self._calc = self.make_calculator(atoms)
        return self._calc

    def _single_point(self, atoms, directory):
        if self.settings.isolate:
            return self._run_worker(atoms, directory, dict(mode="single"), self.settings.timeout)[1]
        atoms.calc = self.calculator(atoms)
        try:
            labels = labels_from_calculator(atoms, require_stress=self.settings.require_stress)
        except LabelFailure:
            raise
        except Exception as error:  # noqa: BLE001 - a calculator's own failure
            raise LabelFailure("error", f"{type(error).__name__}: {error}") from None
        finally:
            atoms.calc = None
        return labels

    def _relax_once(self, atoms, pressure_gpa, fmax, steps, directory, deadline):
        if self.settings.isolate:
            import time

            job = dict(mode="relax", pressure_gpa=pressure_gpa, fmax=fmax, steps=steps)
            final, labels, info = self._run_worker(atoms, directory, job,
                                                   max(1.0, deadline - time.monotonic()))
            return final, labels, info
        return super()._relax_once(atoms, pressure_gpa, fmax, steps, directory, deadline)

    def close(self) -> None:
        calc, self._calc = self._calc, None
        if calc is not None and hasattr(calc, "close"):
            try:
                calc.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        super().close()

    # -- in a child process ----------------------------------------------------------------------

    #: files of the code whose tail is reported with a failure (besides worker.log)
    code_output: Optional[str] = None

    def worker_factory(self) -> str:
        """What the worker builds: an import path, or a key of worker.FACTORIES."""
        return self.settings.calculator

    def _run_worker(self, atoms, directory, job: dict, timeout: float):
        from ase.io import read, write

        settings = self.settings.to_dict()
        if settings.get("command"):
            settings["command"] = self.job.fill(settings["command"])
        job = dict(job, factory=self.worker_factory(), settings=settings)
        with open(os.path.join(directory, "job.json"), "w") as f:
            json.dump(job, f, indent=1)
        write(os.path.join(directory, "structure.extxyz"), atoms, format="extxyz", parallel=False)
        for path in self.settings.copy_files:
            _copy_into(path, directory)
        env = child_environment(inherit_mpi_env=self.settings.inherit_mpi_env, extra=self.job_env())
        # the child must import this very package, even where `env` sets its own PYTHONPATH
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        log_path = os.path.join(directory, "worker.log")
        outcome = run_command([sys.executable, "-m", "acnn_mpi.label.worker", directory],
                              cwd=directory, timeout=timeout, env=env, log_path=log_path, shell=False)
        lines = self.settings.log_tail_lines

        def log_tail():
            parts = [tail(log_path, lines)]
            if self.code_output:
                parts.append(tail(os.path.join(directory, self.code_output), lines))
            return "\n".join(p for p in parts if p)

        if outcome.timed_out:
            raise LabelFailure("timeout", f"killed after the time limit of {timeout:.0f} s", log_tail(),
                               evaluations=_logged_steps(os.path.join(directory, "relax.log")))
        result_path = os.path.join(directory, "result.json")
        if not os.path.exists(result_path):
            raise LabelFailure("crash", f"the calculation process exited with code "
                               f"{outcome.returncode} without a result", log_tail())
        with open(result_path) as f:
            verdict = json.load(f)
        if not verdict.get("ok"):
            raise LabelFailure(verdict.get("failure", "error"), verdict.get("reason", "unknown"),
                               log_tail(), evaluations=verdict.get("evaluations"))
        final = read(os.path.join(directory, "result.extxyz"), format="extxyz", parallel=False)
        labels = frame_labels(final, self.settings.require_stress)
        final.calc = None
        info = verdict.get("info", {})
        steps = os.path.join(directory, "trajectory.extxyz")
        if os.path.exists(steps):
            info["trajectory"] = read(steps, index=":", format="extxyz", parallel=False)
        return final, labels, info


class ChgnetLabeller(AseLabeller):
    """CHGNet's pretrained universal potential: an offline stand-in for DFT (not DFT!)."""

    def __init__(self, settings: LabellerSettings):
        super().__init__(settings, factory=_chgnet_calculator, name="chgnet (stand-in for DFT)")

    def worker_factory(self) -> str:
        return "chgnet"


def _chgnet_calculator(settings: LabellerSettings, atoms=None):
    try:
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator
    except ImportError:
        from ..errors import UserError

        raise UserError("labeller kind 'chgnet' needs the chgnet package: pip install '.[chgnet]' "
                        "(or pip install chgnet)") from None
    model = None
    if settings.model:
        if os.path.exists(settings.model):
            model = CHGNet.from_file(settings.model)
        else:
            model = CHGNet.load(model_name=settings.model)
    kwargs = dict(settings.parameters)
    return CHGNetCalculator(model=model, use_device=settings.device, **kwargs)


class Cp2kLabeller(AseLabeller):
    """CP2K through ASE's CP2K calculator and ``cp2k_shell``, one child process per calculation."""

    code_output = "cp2k.out"

    def __init__(self, settings: LabellerSettings):
        settings = dataclasses.replace(settings, isolate=True)
        super().__init__(settings, name=f"cp2k ({settings.functional}, {settings.basis_set}, "
                                        f"{settings.cutoff:g} Ry, k-spacing 2π×{settings.kpoint_spacing:g}/Å)")

    def worker_factory(self) -> str:
        return "cp2k"


def find_cp2k_shell(command: Optional[str] = None) -> Optional[str]:
    """The cp2k_shell command to use: ``command`` if given, else the first of cp2k_shell,
    cp2k_shell.psmp, cp2k_shell.ssmp, ``cp2k.psmp -s``, ``cp2k.ssmp -s`` on PATH (None if none)."""
    if command:
        return command
    for candidate in ("cp2k_shell", "cp2k_shell.psmp", "cp2k_shell.ssmp", "cp2k_shell.sopt"):
        if shutil.which(candidate):
            return candidate
    for candidate in ("cp2k.psmp", "cp2k.ssmp", "cp2k.popt", "cp2k.sopt", "cp2k"):
        if shutil.which(candidate):
            return f"{candidate} -s"
    return None


def _logged_steps(path: str) -> Optional[int]:
    """Steps an ASE optimizer wrote to its log ``path`` (one line each), None without a log."""
    if not os.path.exists(path):
        return None
    with open(path, errors="replace") as f:
        return max(1, sum(1 for line in f if re.match(r"^\w+:\s+\d+\s", line)))


def _copy_into(path: str, directory: str) -> None:
    target = os.path.join(directory, os.path.basename(path.rstrip("/")))
    if os.path.isdir(path):
        shutil.copytree(path, target, dirs_exist_ok=True)
    else:
        shutil.copy2(path, target)


__all__ = ["AseLabeller", "ChgnetLabeller", "Cp2kLabeller", "find_cp2k_shell", "import_object",
           "Labels"]
