"""The labeller interface: single points and relaxations that return labels or a recorded failure.

A :class:`Labeller` turns a structure into a :class:`LabelResult`: energy (eV), forces (N, 3) eV/Å
and stress (3, 3) eV/Å³ with ASE's sign (positive = tensile), or a failure with its kind, reason and
the tail of the code's output. It never returns a label it cannot vouch for: an SCF that did not
converge (by the code's own output), missing forces or stress, or a non-finite number is a failure.
Failed attempts are retried ``retries`` times when their kind is in ``retry_on``.

Subclasses implement :meth:`Labeller._single_point` (raise :class:`LabelFailure` on failure) and may
override :meth:`Labeller._relax_once`, whose default drives an ASE optimizer on a
``FrechetCellFilter`` at the target pressure with one single point per step.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..errors import UserError
from .layout import JobSlot
from .settings import LabellerSettings

log = logging.getLogger(__name__)


class LabelFailure(Exception):
    """A calculation that produced no trustworthy label.

    ``kind`` is one of ``timeout``, ``crash`` (non-zero exit), ``missing_output`` (no or a cut
    output), ``not_converged`` (by the code's own output), ``invalid`` (a quantity missing from a
    complete output, non-finite or wrongly shaped numbers) or ``error`` (an exception).
    """

    def __init__(self, kind: str, reason: str, log_tail: str = "", evaluations: Optional[int] = None):
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason
        self.log_tail = log_tail
        #: evaluations the failed attempt spent (None: one; a relaxation sets its step count)
        self.evaluations = evaluations


@dataclass
class Labels:
    energy: float
    forces: np.ndarray
    stress: Optional[np.ndarray]
    log_tail: str = ""


@dataclass
class LabelResult:
    """Outcome of one labelling (all attempts): labels, or a failure with its reason and log tail."""

    ok: bool
    atoms: Any = None                      # the structure (the final one after a relaxation)
    energy: Optional[float] = None         # eV
    forces: Optional[np.ndarray] = None    # (N, 3) eV/Å
    stress: Optional[np.ndarray] = None    # (3, 3) eV/Å³, ASE sign
    failure: Optional[str] = None          # failure kind (None when ok)
    reason: str = ""
    log_tail: str = ""
    wall_time: float = 0.0                 # s, all attempts
    attempts: int = 0
    #: labeller evaluations spent, failed attempts included (single point: 1 per attempt;
    #: relaxation: one per ionic step / force evaluation)
    evaluations: int = 0
    labeller: str = ""
    directory: Optional[str] = None        # where the calculation ran (if kept)
    info: dict = field(default_factory=dict)   # relax: steps, relax_converged, pressure_gpa, ...
    #: relax: every ionic step as Atoms with its labels (SinglePointCalculator), the last one the
    #: final structure; usable as labels (one evaluation each)
    trajectory: list = field(default_factory=list)

    def labelled_atoms(self):
        """A copy of the structure carrying the labels (SinglePointCalculator), or None."""
        if not self.ok or self.atoms is None:
            return None
        from ase.calculators.singlepoint import SinglePointCalculator
        from ase.stress import full_3x3_to_voigt_6_stress

        atoms = self.atoms.copy()
        results = dict(energy=self.energy, free_energy=self.energy, forces=self.forces)
        if self.stress is not None:
            results["stress"] = full_3x3_to_voigt_6_stress(self.stress)
        atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms

    def summary(self) -> dict:
        """A small JSON-able record (no arrays)."""
        out = dict(ok=self.ok, energy=self.energy, failure=self.failure, reason=self.reason,
                   wall_time=round(self.wall_time, 3), attempts=self.attempts,
                   labeller=self.labeller, directory=self.directory)
        out.update({k: v for k, v in self.info.items() if isinstance(v, (int, float, str, bool))})
        return out


def check_labels(energy, forces, stress, natoms: int, *, require_stress: bool = True) -> Labels:
    """Convert and validate raw labels; raises LabelFailure (missing_output / invalid)."""
    # a complete output without a quantity is deterministic (kind "invalid", not retried); an
    # absent or cut output is "missing_output" (retried: often a node or file-system hiccup)
    if energy is None:
        raise LabelFailure("invalid", "no energy in the output")
    if forces is None:
        raise LabelFailure("invalid", "no forces in the output")
    if stress is None and require_stress:
        raise LabelFailure("invalid", "no stress in the output (ask the code for it, e.g. "
                           "tstress/ISIF/STRESS_TENSOR)")
    try:
        energy = float(np.asarray(energy).reshape(()))
        forces = np.array(forces, dtype=float)
    except (TypeError, ValueError) as error:
        raise LabelFailure("invalid", f"labels are not numbers: {error}") from None
    if forces.shape != (natoms, 3):
        raise LabelFailure("invalid", f"forces have shape {forces.shape}, expected ({natoms}, 3)")
    if stress is not None:
        stress = np.array(stress, dtype=float)
        if stress.shape == (6,):
            from ase.stress import voigt_6_to_full_3x3_stress

            stress = voigt_6_to_full_3x3_stress(stress)
        if stress.shape != (3, 3):
            raise LabelFailure("invalid", f"stress has shape {stress.shape}, expected (3, 3) or (6,)")
        if not np.all(np.isfinite(stress)):
            raise LabelFailure("invalid", "non-finite stress")
    if not math.isfinite(energy):
        raise LabelFailure("invalid", f"non-finite energy {energy}")
    if not np.all(np.isfinite(forces)):
        raise LabelFailure("invalid", "non-finite forces")
    return Labels(energy, forces, stress)


def frame_labels(frame, require_stress: bool = True) -> Labels:
    """Validated labels stored on ``frame`` (a SinglePointCalculator's results)."""
    results = dict(frame.calc.results) if frame.calc is not None else {}
    return check_labels(results.get("free_energy", results.get("energy")), results.get("forces"),
                        results.get("stress"), len(frame), require_stress=require_stress)


def labels_from_calculator(atoms, *, require_stress: bool = True) -> Labels:
    """Labels of ``atoms`` from its attached calculator (energy: the free energy when given, which
    is the quantity the forces and stress derive from)."""
    energy = atoms.get_potential_energy()
    calc = atoms.calc
    results = getattr(calc, "results", {}) or {}
    if results.get("free_energy") is not None:
        energy = results["free_energy"]
    forces = atoms.get_forces()
    stress = None
    try:
        stress = atoms.get_stress(voigt=False)
    except Exception as error:  # PropertyNotImplementedError and friends
        if require_stress:
            raise LabelFailure("invalid", f"the calculator gave no stress ({error})") from None
    return check_labels(energy, forces, stress, len(atoms), require_stress=require_stress)


class Labeller(ABC):
    """Labels structures with energy, forces and stress (see the module docstring)."""

    #: human-readable name, stored with every label (subclasses set it in __init__)
    name: str = "labeller"
    #: whether calculations need a directory of their own (external codes)
    needs_directory: bool = True

    def __init__(self, settings: LabellerSettings):
        self.settings = settings
        self._own_workdir: Optional[str] = None
        #: this rank's share of the DFT job layout ({cores}, {nodes}); set by the runner
        self.job = JobSlot()

    def job_env(self) -> dict:
        """``env`` with {cores}/{nodes} filled in from :attr:`job`."""
        return {key: self.job.fill(str(value)) for key, value in self.settings.env.items()}

    # -- public interface -------------------------------------------------------------------------

    def label(self, atoms, *, name: Optional[str] = None) -> LabelResult:
        """Single point (SCF) of ``atoms``: labels or a failure, after up to ``retries`` retries."""
        def attempt(directory):
            labels = self._single_point(atoms.copy(), directory)
            return atoms.copy(), labels, {}

        return self._attempts(attempt, atoms, name, "label")

    def relax(self, atoms, pressure_gpa: float = 0.0, fmax: float = 0.01, steps: int = 200, *,
              name: Optional[str] = None) -> LabelResult:
        """Relax positions and cell at ``pressure_gpa`` until max force < ``fmax`` eV/Å (or
        ``steps`` steps); the result holds the final structure and its labels, and
        ``info`` the steps taken, whether the relaxation converged, the pressure and the enthalpy.
        A relaxation that ends without reaching ``fmax`` still returns labels
        (``info['relax_converged']`` is False); a failed single point on the way is a failure."""
        timeout = self.settings.relax_timeout or 10 * self.settings.timeout

        def attempt(directory):
            deadline = time.monotonic() + timeout
            final, labels, info = self._relax_once(atoms.copy(), float(pressure_gpa), float(fmax),
                                                   int(steps), directory, deadline)
            info = dict(info)
            info.setdefault("pressure_gpa", float(pressure_gpa))
            from ..units import gpa_to_ev_per_a3

            info["enthalpy"] = float(labels.energy + gpa_to_ev_per_a3(pressure_gpa) * final.get_volume())
            return final, labels, info

        return self._attempts(attempt, atoms, name, "relax")

    def close(self) -> None:
        """Release resources (child processes, temporary directories)."""
        if self._own_workdir and os.path.isdir(self._own_workdir):
            shutil.rmtree(self._own_workdir, ignore_errors=True)
        self._own_workdir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- for subclasses ---------------------------------------------------------------------------

    @abstractmethod
    def _single_point(self, atoms, directory: Optional[str]) -> Labels:
        """Energy, forces and stress of ``atoms`` (run in ``directory``); raise LabelFailure."""

    def _relax_once(self, atoms, pressure_gpa: float, fmax: float, steps: int,
                    directory: Optional[str], deadline: float):
        """Default relaxation: an ASE optimizer on FrechetCellFilter, one single point per step."""
        from ase.calculators.calculator import Calculator, all_changes
        from ase.filters import FrechetCellFilter
        from ase.stress import full_3x3_to_voigt_6_stress

        from ..units import gpa_to_ev_per_a3

        from .native_relax import steps_frame

        labeller = self
        counter = {"n": 0}
        last: dict = {}
        trajectory: list = []

        class _StepCalculator(Calculator):
            implemented_properties = ["energy", "free_energy", "forces", "stress"]

            def calculate(self, atoms=None, properties=None, system_changes=all_changes):
                super().calculate(atoms, properties, system_changes)
                if time.monotonic() > deadline:
                    raise LabelFailure("timeout", f"relaxation ran past its time limit after "
                                       f"{counter['n']} single points", evaluations=counter["n"])
                step_dir = None
                if directory is not None and labeller.needs_directory:
                    step_dir = os.path.join(directory, f"step-{counter['n']:04d}")
                    os.makedirs(step_dir, exist_ok=True)
                counter["n"] += 1
                try:
                    labels = labeller._single_point(self.atoms.copy(), step_dir)
                except LabelFailure as failure:
                    failure.evaluations = counter["n"]
                    raise
                if labels.stress is None:
                    raise LabelFailure("invalid", "a relaxation needs the stress")
                last["labels"] = labels
                last["positions"] = self.atoms.positions.copy()
                last["cell"] = self.atoms.cell.array.copy()
                trajectory.append(steps_frame(self.atoms, self.atoms.positions, self.atoms.cell.array,
                                              labels.energy, labels.forces, labels.stress))
                self.results = dict(energy=labels.energy, free_energy=labels.energy,
                                    forces=labels.forces,
                                    stress=full_3x3_to_voigt_6_stress(labels.stress))

        atoms.calc = _StepCalculator()
        optimizer_class = _optimizer(self.settings.relax_optimizer)
        logfile = os.path.join(directory, "relax.log") if directory else None
        target = FrechetCellFilter(atoms, scalar_pressure=gpa_to_ev_per_a3(pressure_gpa))
        optimizer = optimizer_class(target, logfile=logfile)
        converged = bool(optimizer.run(fmax=fmax, steps=steps))
        # labels must belong to the final structure: evaluate again if the last step moved it
        if ("labels" not in last or not np.array_equal(last["positions"], atoms.positions)
                or not np.array_equal(last["cell"], atoms.cell.array)):
            atoms.calc.results.clear()
            atoms.get_potential_energy()
        labels = last["labels"]
        final = atoms.copy()
        final.calc = None
        return final, labels, dict(steps=int(optimizer.nsteps), relax_converged=converged,
                                   single_points=counter["n"], evaluations=counter["n"],
                                   trajectory=trajectory)

    # -- machinery --------------------------------------------------------------------------------

    def _root_workdir(self) -> str:
        if self.settings.workdir:
            os.makedirs(self.settings.workdir, exist_ok=True)
            return self.settings.workdir
        if self._own_workdir is None:
            self._own_workdir = tempfile.mkdtemp(prefix="acnn_label_")
        return self._own_workdir

    def _attempts(self, attempt, atoms, name, what: str) -> LabelResult:
        settings = self.settings
        if name is None:
            sid = atoms.info.get("structure_id") if hasattr(atoms, "info") else None
            name = f"s{sid}" if sid is not None else f"{what}-{uuid.uuid4().hex[:10]}"
        base = None
        if self.needs_directory:
            base = os.path.join(self._root_workdir(), str(name) + ("" if what == "label" else f"-{what}"))
        start = time.monotonic()
        history = []
        result = None
        evaluations = 0
        max_attempts = settings.retries + 1
        for number in range(1, max_attempts + 1):
            directory = None
            if base is not None:
                directory = os.path.join(base, f"attempt-{number}")
                if os.path.isdir(directory):
                    shutil.rmtree(directory, ignore_errors=True)
                os.makedirs(directory)
            t0 = time.monotonic()
            try:
                final, labels, info = attempt(directory)
            except LabelFailure as failure:
                evaluations += 1 if failure.evaluations is None else int(failure.evaluations)
                history.append(dict(attempt=number, failure=failure.kind, reason=failure.reason,
                                    seconds=round(time.monotonic() - t0, 3)))
                result = LabelResult(ok=False, atoms=atoms.copy(), failure=failure.kind,
                                     reason=failure.reason, log_tail=failure.log_tail,
                                     labeller=self.name, directory=directory)
                log.debug("%s %s attempt %d failed: %s", what, name, number, failure)
                if failure.kind not in settings.retry_on or number == max_attempts:
                    break
                continue
            except UserError:
                raise   # bad settings fail every structure alike: stop, do not record failures
            except Exception as error:  # noqa: BLE001 - a labeller bug or library error is a failure
                import traceback

                evaluations += 1
                history.append(dict(attempt=number, failure="error", reason=repr(error),
                                    seconds=round(time.monotonic() - t0, 3)))
                result = LabelResult(ok=False, atoms=atoms.copy(), failure="error",
                                     reason=f"{type(error).__name__}: {error}",
                                     log_tail=_last_lines(traceback.format_exc(), settings.log_tail_lines),
                                     labeller=self.name, directory=directory)
                if "error" not in settings.retry_on or number == max_attempts:
                    break
                continue
            evaluations += int(info.get("evaluations", info.get("single_points", 1)))
            trajectory = info.pop("trajectory", [])
            result = LabelResult(ok=True, atoms=final, energy=labels.energy, forces=labels.forces,
                                 stress=labels.stress, labeller=self.name, directory=directory,
                                 info=info, trajectory=trajectory)
            break
        result.attempts = len(history) + (1 if result.ok else 0)
        result.evaluations = evaluations
        result.wall_time = time.monotonic() - start
        if history:
            result.info["failed_attempts"] = history
        result.log_tail = _last_lines(result.log_tail, settings.log_tail_lines)
        self._tidy(base, result)
        return result

    def _tidy(self, base: Optional[str], result: LabelResult) -> None:
        keep = self.settings.keep_files
        if base is None or not os.path.isdir(base):
            return
        if keep == "none" or (keep == "failed" and result.ok):
            shutil.rmtree(base, ignore_errors=True)
            result.directory = None


def _optimizer(name: str):
    from ase import optimize

    return {"BFGS": optimize.BFGS, "FIRE": optimize.FIRE, "LBFGS": optimize.LBFGS}[name.upper()]


def _last_lines(text: str, n: int) -> str:
    if not text or n <= 0:
        return ""
    return "\n".join(text.splitlines()[-n:])
