"""Accuracy benchmark: train the ACNN on the mlearn Ge/Li/Si training splits and compare test errors
with the published potentials (Zuo et al. 2020; Chen & Ong 2022), side by side.

    python scripts/bench_accuracy.py                       # all three elements, default budget
    python scripts/bench_accuracy.py --element Si --steps 2000 --threads 2

Data: ../shared/data/mlearn/{El}_training.xyz and {El}_test.xyz relative to the repository (or
--data-dir). The model trains on the whole training split (no frames held out); the test split is
only evaluated (every --validate-every steps for the log, and at the end for the table), never used
to pick a model. Prints the machine, the budget (steps, wall time, threads) and a Markdown table;
writes results.json and each run's model, checkpoint and logs under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from benchlib import machine_line  # noqa: E402  (scripts/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]

#: Published test-split errors (PUBLISHED.md): RMSE energy meV/atom, force eV/Å; MAE likewise.
PUBLISHED_RMSE = {
    "Ge": {"MTP": (3.7, 0.0703), "NNP": (11.0, 0.1243), "M3GNet": (9.4, 0.0764)},
    "Li": {"MTP": (0.7, 0.0132), "NNP": (1.0, 0.0634), "M3GNet": (2.5, 0.0221)},
    "Si": {"MTP": (3.0, 0.0881), "NNP": (9.9, 0.1742), "M3GNet": (9.6, 0.1028)},
}
PUBLISHED_MAE = {
    "Ge": {"GAP": (2.06, 0.05), "MTP": (1.79, 0.05)},
    "Li": {"GAP": (0.49, 0.01), "MTP": (0.49, 0.01)},
    "Si": {"GAP": (2.91, 0.07), "MTP": (2.21, 0.06)},
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--element", action="append", choices=sorted(PUBLISHED_RMSE),
                   help="element(s) to run (repeat; default all)")
    p.add_argument("--steps", type=int, default=6000, help="optimizer steps per element")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: the machine this ran on is shared; a second thread lost)")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "mlearn"))
    p.add_argument("--out", default=str(REPO / "build" / "bench_accuracy"))
    p.add_argument("--batch-size", type=int, default=4, help="structures per minibatch")
    p.add_argument("--lr", type=float, default=3e-3, help="initial learning rate")
    p.add_argument("--final-lr-ratio", type=float, default=0.05,
                   help="lr at the last step / initial lr (staircase, 20 decays per run)")
    p.add_argument("--p-energy", type=float, default=1.0)
    p.add_argument("--p-force-start", type=float, default=30.0)
    p.add_argument("--p-force-end", type=float, default=1.0)
    p.add_argument("--r-angular", type=float, default=5.0, help="angular cutoff, Å (radial: 5.0)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--validate-every", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def machine() -> str:
    import torch

    return machine_line(f"{platform.system()} {platform.release()}", f"torch {torch.__version__}")


def config_for(element: str, args):
    from acnn_mpi.config import config_from_dict

    decays = 20
    decay_steps = max(1, args.steps // decays)
    lr_decay = args.final_lr_ratio ** (1.0 / decays)
    return config_from_dict({
        "elements": [element],
        "model": {"r_cut_radial": 5.0, "r_cut_angular": args.r_angular, "dtype": args.dtype,
                  "device": "cpu"},  # paper sizes: n_r 16, n_a 14, l_max 4, [64,64], [256,256]
        "training": {"steps": args.steps, "batch_size": args.batch_size, "learning_rate": args.lr,
                     "lr_decay": lr_decay, "decay_steps": decay_steps, "p_energy": args.p_energy,
                     "p_force_start": args.p_force_start, "p_force_end": args.p_force_end,
                     "validation_fraction": 0.0, "log_every": max(1, args.validate_every // 4),
                     "validate_every": args.validate_every, "checkpoint_every": args.validate_every,
                     "seed": args.seed},
    })


def run_element(element: str, args) -> dict:
    from acnn_mpi.train import train_model
    from acnn_mpi.train.metrics import evaluate_errors
    from acnn_mpi.model.potential import ACNN

    data = Path(args.data_dir)
    train_file, test_file = data / f"{element}_training.xyz", data / f"{element}_test.xyz"
    for path in (train_file, test_file):
        if not path.is_file():
            sys.exit(f"error: {path} not found (give --data-dir)")
    out = Path(args.out) / element
    started, cpu_started = time.perf_counter(), time.process_time()
    result = train_model(config_for(element, args), train_file, out, valid=test_file)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    test = evaluate_errors(ACNN.load(result.model_path), test_file)
    load = os.getloadavg()[1] if hasattr(os, "getloadavg") else None
    return {"element": element, "steps": result.steps, "wall_s": wall, "cpu_s": cpu,
            "load_avg_5min": load, "n_train": result.n_train, "test": test,
            "train": result.metrics.get("train")}


def table(results: list[dict]) -> str:
    lines = ["| element | ACNN (this run) RMSE E / F | MTP | NNP | M3GNet | ACNN MAE E / F | GAP MAE | MTP MAE | steps | wall (CPU) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        el, t = r["element"], r["test"]
        pub, mae = PUBLISHED_RMSE[el], PUBLISHED_MAE[el]
        fmt = lambda e, f: f"{e:.1f} / {f:.4f}"  # noqa: E731
        lines.append(
            f"| {el} | **{fmt(t['energy_rmse'], t['force_rmse'] / 1000)}** | {fmt(*pub['MTP'])} | "
            f"{fmt(*pub['NNP'])} | {fmt(*pub['M3GNet'])} | "
            f"{t['energy_mae']:.2f} / {t['force_mae'] / 1000:.3f} | {mae['GAP'][0]} / {mae['GAP'][1]} | "
            f"{mae['MTP'][0]} / {mae['MTP'][1]} | {r['steps']} | {r['wall_s'] / 60:.1f} min "
            f"({r.get('cpu_s', 0) / 60:.1f} min) |")
    lines.append("Energy meV/atom, force eV/Å, on the mlearn test split; published numbers from "
                 "PUBLISHED.md.")
    return "\n".join(lines)


def verdict(r: dict) -> str:
    el, t = r["element"], r["test"]
    best_e = min(v[0] for v in PUBLISHED_RMSE[el].values())
    best_f = min(v[1] for v in PUBLISHED_RMSE[el].values())
    e, f = t["energy_rmse"], t["force_rmse"] / 1000
    return (f"{el}: energy RMSE {e:.2f} vs best published {best_e} meV/atom "
            f"({'matches/beats' if e <= best_e else f'{e / best_e:.1f}× worse'}); force RMSE {f:.4f} vs "
            f"{best_f} eV/Å ({'matches/beats' if f <= best_f else f'{f / best_f:.1f}× worse'})")


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    print(f"machine: {machine()}; {args.threads} torch thread(s)")
    print(f"budget: {args.steps} steps/element, batch {args.batch_size}, lr {args.lr} → "
          f"{args.lr * args.final_lr_ratio:g}, p_e {args.p_energy}, p_f {args.p_force_start} → "
          f"{args.p_force_end}, cutoffs 5.0/{args.r_angular} Å, {args.dtype}")
    results = []
    for element in args.element or sorted(PUBLISHED_RMSE):
        results.append(run_element(element, args))
        print(verdict(results[-1]), flush=True)
    print()
    print(table(results))
    for r in results:
        print(verdict(r))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(
        {"machine": machine(), "threads": args.threads, "args": vars(args), "results": results},
        indent=1))
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
