"""Errors of trained models on a labelled split, per configuration group, and of their mean.

    python scripts/eval_models.py TEST.xyz A/model.pt B/model.pt ... [--signed Surface]

For each model file, and with two or more for their committee mean (energies and forces averaged,
:class:`acnn_mpi.train.committee.CommitteeMean`), prints the RMSE energy (meV/atom) / force
(meV/Å) of every ``group`` of the frames (extxyz info; mlearn: Elastic, Vacancy, AIMD-NVT,
Surface) and of all frames, then the signed energy error (model − label, meV/atom) of each frame of
the ``--signed`` group with its atom count: whether models that differ in a lever err the same way
on the same frames (round 11 of docs/training.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench_accuracy import frame_batcher, group_errors  # noqa: E402  (scripts/ is on sys.path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("frames", help="labelled frames (extxyz) to evaluate on")
    parser.add_argument("models", nargs="+", help="model files written by training (model.pt)")
    parser.add_argument("--signed", default="Surface", help="group whose per-frame signed energy "
                        "errors are printed (default Surface; '' for none)")
    return parser.parse_args(argv)


def label(path: str) -> str:
    """A short name of a model file: its run directory (OUT/NAME/data/model.pt -> NAME)."""
    parts = Path(path).parts
    return parts[-3] if len(parts) >= 3 else path


def row(name: str, model, frames: list, signed: str) -> str:
    from acnn_mpi.train import evaluate_errors
    from acnn_mpi.train.committee import energies_per_atom

    batcher = frame_batcher(model, frames)
    cells = [f"{g} {e['energy_rmse']:.2f} / {e['force_rmse']:.1f}"
             for g, e in group_errors(model, frames, batcher=batcher).items()]
    total = evaluate_errors(model, frames, batcher=batcher)
    cells.append(f"all {total['energy_rmse']:.2f} / {total['force_rmse']:.1f}")
    chosen = [i for i, a in enumerate(frames) if signed and str(a.info.get("group")) == signed]
    if chosen:
        subset = [frames[i] for i in chosen]
        predicted = energies_per_atom(model, subset)
        labels = np.array([a.get_potential_energy() / len(a) for a in subset])
        cells.append(f"{signed} signed " + ", ".join(
            f"{1000 * d:+.1f} ({len(a)})" for d, a in zip(predicted - labels, subset)))
    return f"| {name} | " + " | ".join(cells) + " |"


def main(argv=None) -> int:
    args = parse_args(argv)
    from ase.io import read

    from acnn_mpi.train.committee import CommitteeMean
    from acnn_mpi.train.models import load_model

    for path in [args.frames, *args.models]:
        if not Path(path).is_file():
            print(f"eval_models: no file {path}", file=sys.stderr)
            return 2
    frames = read(args.frames, ":")
    models = []
    for path in args.models:
        try:
            models.append(load_model(path))   # ACNN file, committee, or checkpoint (raw weights)
        except Exception as error:  # not a model file: one line, not a traceback
            print(f"eval_models: {path} is not a model file ({type(error).__name__}: {error})",
                  file=sys.stderr)
            return 2
    print("RMSE energy meV/atom / force meV/Å per group; signed energy errors meV/atom (atoms)")
    for path, model in zip(args.models, models):
        print(row(label(path), model, frames, args.signed))
    if len(models) > 1:
        print(row(f"mean of {len(models)}", CommitteeMean(models), frames, args.signed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
