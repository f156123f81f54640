"""Benchmark: training steps per CPU second, the accuracy recipe against one changed setting.

One optimizer step as the trainer takes it, less the gradient clip and the weight average: a
minibatch of labelled frames (cached neighbour lists), energy and forces with the graph kept
(``create_graph``), the loss of the recipe's ``training`` section at its first step, its backward
through the forces (double backward), an AdamW step. Two models, A (the recipe file's settings)
and B (the same with ``--set``, as bench_accuracy.py applies it), train on the same frames in
alternating blocks in one process, so a shared or throttled machine slows both alike; the
figure is steps per CPU second of this process (1 torch thread) and B's time over A's.

    python scripts/bench_train_step.py --set model.activation=silu
    python scripts/bench_train_step.py --set model.l_max=4 --data ../shared/data/mlearn/Ge_training.xyz
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from ase.data import chemical_symbols  # noqa: E402

torch.set_num_threads(1)

from acnn_mpi.config import ModelSettings, TrainingSettings  # noqa: E402
from acnn_mpi.model.forces import evaluate  # noqa: E402
from acnn_mpi.train.frames import FrameBatcher, load_frames  # noqa: E402
from acnn_mpi.train.loss import Schedule, loss_sum  # noqa: E402
from acnn_mpi.train.models import build_acnn, fit_input_statistics  # noqa: E402
from bench_accuracy import RECIPE_FILE, benchmark_settings, fail  # noqa: E402  (scripts/ is on sys.path)
from benchlib import machine_line  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="B's change to the recipe (model.KEY or training.KEY); repeatable")
    p.add_argument("--recipe", default=str(RECIPE_FILE))
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mlearn" / "Si_training.xyz"))
    p.add_argument("--steps", type=int, default=60, help="steps per block (default 60)")
    p.add_argument("--blocks", type=int, default=6, help="blocks per model, alternating (default 6)")
    args = p.parse_args(argv)
    if args.steps < 1 or args.blocks < 1:
        p.exit(2, "error: --steps and --blocks must be at least 1\n")
    if not Path(args.data).is_file():
        p.exit(2, f"error: --data {args.data}: no such file (give a labelled extxyz or frame store)\n")
    return args


def variants(args) -> dict[str, tuple[ModelSettings, TrainingSettings]]:
    """name -> (model, training settings) for A (the recipe) and B (the recipe with ``--set``)."""
    chosen = {}
    for name, changes in (("A", []), ("B", args.set)):
        settings = benchmark_settings(argparse.Namespace(recipe=args.recipe, steps=1, set=changes))
        chosen[name] = tuple(_validated(kind, section, settings[section])
                             for kind, section in ((ModelSettings, "model"), (TrainingSettings, "training")))
    return chosen


def _validated(kind, section: str, values: dict):
    """``kind(**values)``; a bad value exits 2 with one line naming ``section.KEY``."""
    try:
        return kind(**values)
    except ValidationError as error:
        first = error.errors()[0]
        fail(f"--set {section}.{'.'.join(map(str, first['loc']))}: {first['msg']}")


def make_trainer(frames, model_settings: ModelSettings, training: TrainingSettings, elements: list[str],
                 seed: int = 0):
    """A closure taking one optimizer step of a fresh model on random minibatches of ``frames``."""
    model = build_acnn(model_settings, elements)
    batcher = FrameBatcher(frames, float(model.cutoff), dtype=model.dtype)
    fit_input_statistics(model, batcher, list(range(len(frames))))
    optimizer = torch.optim.AdamW(model.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay)
    p_e, p_f, p_w = Schedule.from_settings(training).prefactors(0)
    rng = np.random.default_rng(seed)

    def step() -> None:
        chosen = rng.choice(len(frames), training.batch_size, replace=False)
        batch, edges, targets = batcher.batch(chosen)
        optimizer.zero_grad(set_to_none=True)
        out = evaluate(model, batch, compute_forces=True, compute_stress=False, create_graph=True, edges=edges)
        parts = loss_sum(out, targets, p_e, p_f, p_w, energy_per_atom=training.energy_loss == "per_atom")
        (parts.total / training.batch_size).backward()
        optimizer.step()

    return step


def main(argv=None) -> int:
    args = parse_args(argv)
    chosen = variants(args)
    frames = load_frames(args.data)
    elements = sorted({chemical_symbols[int(z)] for f in frames for z in np.unique(f.numbers)})
    steps = {name: make_trainer(frames, m, t, elements) for name, (m, t) in chosen.items()}
    for step in steps.values():  # every frame's neighbour list cached, allocator warm
        for _ in range(len(frames) // 2):
            step()
    cpu = dict.fromkeys(steps, 0.0)
    for block in range(args.blocks):
        for name in (("A", "B") if block % 2 == 0 else ("B", "A")):
            start = time.process_time()
            for _ in range(args.steps):
                steps[name]()
            cpu[name] += time.process_time() - start
    n = args.steps * args.blocks
    print(machine_line(f"torch {torch.__version__}", "1 torch thread"))
    print(f"data: {args.data} ({len(frames)} frames); A: {args.recipe}; B: A with {' '.join(args.set) or 'nothing'}")
    for name in steps:
        print(f"{name}: {n / cpu[name]:.2f} steps per CPU second ({n} steps)")
    print(f"B / A time per step: {cpu['B'] / cpu['A']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
