"""Child process of an isolated ASE-calculator labeller: ``python -m acnn_mpi.label.worker DIR``.

Reads ``DIR/job.json`` (factory, mode, settings) and ``DIR/structure.extxyz``; runs a single point or
a relaxation with the calculator in DIR; writes ``result.extxyz`` (structure + labels) and
``result.json`` (``ok``, ``failure``, ``reason``, ``info``). For CP2K the output ``cp2k.out`` is
scanned for SCF convergence once the shell has ended (its buffers are then flushed).
"""

from __future__ import annotations

import json
import os
import sys
import time


def _cp2k_factory(settings, atoms):
    from ase.calculators.cp2k import CP2K

    from .ase_labeller import find_cp2k_shell
    from .cp2k import cp2k_calculator_kwargs

    command = find_cp2k_shell(settings.command)
    if command is None:
        raise RuntimeError("no cp2k_shell (or cp2k.psmp) on PATH; set labeller.command")
    return CP2K(command=command, label="cp2k", **cp2k_calculator_kwargs(settings, atoms))


def _chgnet_factory(settings, atoms):
    from .ase_labeller import _chgnet_calculator

    return _chgnet_calculator(settings, atoms)


FACTORIES = {"cp2k": _cp2k_factory, "chgnet": _chgnet_factory}


def _check_cp2k(directory: str):
    from .cp2k import check_cp2k_output

    path = os.path.join(directory, "cp2k.out")
    if not os.path.exists(path):
        return "missing_output", "CP2K wrote no cp2k.out"
    with open(path, errors="replace") as f:
        return check_cp2k_output(f.read(), complete=False)


def main(directory: str) -> int:
    from ase.io import read, write

    from .ase_labeller import AseLabeller
    from .base import LabelFailure
    from .settings import settings_from_dict

    with open(os.path.join(directory, "job.json")) as f:
        job = json.load(f)
    settings = settings_from_dict(job["settings"])
    settings.isolate = False
    atoms = read(os.path.join(directory, "structure.extxyz"), format="extxyz", parallel=False)
    factory_name = job["factory"]
    factory = FACTORIES.get(factory_name)
    labeller = AseLabeller(settings, factory=factory)
    verdict: dict = dict(ok=False)
    start = time.monotonic()
    final = labels = None
    try:
        if job["mode"] == "single":
            final = atoms.copy()
            labels = labeller._single_point(atoms.copy(), None)
            info = {}
        else:
            final, labels, info = labeller._relax_once(
                atoms.copy(), float(job["pressure_gpa"]), float(job["fmax"]), int(job["steps"]),
                directory, deadline=float("inf"))
        trajectory = info.pop("trajectory", None)
        if trajectory:
            write(os.path.join(directory, "trajectory.extxyz"), trajectory, format="extxyz",
                  parallel=False)
        verdict = dict(ok=True, info=info)
    except LabelFailure as failure:
        verdict = dict(ok=False, failure=failure.kind, reason=failure.reason,
                       evaluations=failure.evaluations)
    except Exception as error:  # noqa: BLE001 - reported to the parent
        import traceback

        traceback.print_exc()
        verdict = dict(ok=False, failure="error", reason=f"{type(error).__name__}: {error}")
    finally:
        labeller.close()   # ends cp2k_shell, which flushes its output
    if factory_name == "cp2k" and verdict.get("ok"):
        problem = _check_cp2k(directory)
        if problem is not None:
            verdict = dict(ok=False, failure=problem[0], reason=problem[1])
    if verdict.get("ok"):
        from ase.calculators.singlepoint import SinglePointCalculator
        from ase.stress import full_3x3_to_voigt_6_stress

        results = dict(energy=labels.energy, free_energy=labels.energy, forces=labels.forces)
        if labels.stress is not None:
            results["stress"] = full_3x3_to_voigt_6_stress(labels.stress)
        final = final.copy()
        final.calc = SinglePointCalculator(final, **results)
        write(os.path.join(directory, "result.extxyz"), final, format="extxyz", parallel=False)
    verdict["seconds"] = round(time.monotonic() - start, 3)
    with open(os.path.join(directory, "result.json.tmp"), "w") as f:
        json.dump(verdict, f)
    os.replace(os.path.join(directory, "result.json.tmp"), os.path.join(directory, "result.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
