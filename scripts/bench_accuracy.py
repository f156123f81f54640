"""Accuracy benchmark: train the ACNN with ``python -m acnn_mpi train --config FILE`` on a training
split and compare its test-split errors with published potentials.

    python scripts/bench_accuracy.py --ranks 2                        # mlearn Ge, Li, Si; 2 MPI ranks
    python scripts/bench_accuracy.py --element Si --steps 1500 --set training.ema_decay=0.99
    python scripts/bench_accuracy.py --train Cu_train.xyz --test Cu_test.xyz --name Cu
    python scripts/bench_accuracy.py --element Si --valid-only        # choose settings: no test
    python scripts/bench_accuracy.py --ranks 2 --committee 1 --steps 45000   # one model, not the pair

For each data set the script writes ``OUT/NAME/config.yaml`` (the campaign defaults of
``acnn_mpi.config``, the recipe of ``inputs/accuracy_mlearn.yaml`` or ``--recipe FILE``, the
benchmark's budget and any ``--set``), runs the CLI on it in a child
process (``--valid TEST`` adds the test split to the log only; the held-out part of the training
split, ``training.validation_fraction``, is the only thing that chooses a model), then evaluates
``model.pt`` on the test split. With a committee (``--committee K`` or the recipe's
``search.committee``) the CLI trains K members side by side on the ranks and ``model.pt`` is their
mean. ``--valid-only`` reports the validation errors and never reads the
test split: use it to compare settings. With a ``group`` in the frames' info (mlearn: Elastic,
Vacancy, AIMD-NVT, Surface) the errors per group follow the table. mlearn data:
../shared/data/mlearn/{El}_training.xyz and {El}_test.xyz (or --data-dir). ``--ranks N`` trains
under ``mpiexec -n N`` (data parallel). Prints the machine, each run's wall and CPU time (the
child's user + system seconds, all ranks together) and a Markdown table; writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml

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
                   help="mlearn element(s) to run (repeat; default all three unless --train)")
    p.add_argument("--train", help="training split (any file `acnn_mpi train --data` reads)")
    p.add_argument("--test", help="test split (with --train)")
    p.add_argument("--name", help="label of the --train/--test run (default: the file's stem)")
    p.add_argument("--published", action="append", default=[], metavar="NAME=E,F",
                   help="published RMSE of --train/--test's data (meV/atom, eV/Å), e.g. MTP=3.0,0.088")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps per data set (per member); default: the recipe's training.steps")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each training process")
    p.add_argument("--ranks", type=int, default=1,
                   help="MPI ranks of the training (data parallel, `mpiexec -n RANKS`); default 1")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a model/training setting (YAML value), e.g. training.batch_size=8")
    p.add_argument("--committee", type=int, default=None, metavar="K",
                   help="train K members (seeds training.seed + m) and report their mean "
                        "(default: the recipe's search.committee; 1: one model)")
    p.add_argument("--valid-only", action="store_true",
                   help="report validation-split errors only; the test split is never read")
    p.add_argument("--recipe", default=str(RECIPE_FILE),
                   help="campaign file whose model/training sections are the recipe")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "mlearn"))
    p.add_argument("--out", default=str(REPO / "build" / "bench_accuracy"))
    args = p.parse_args(argv)
    if bool(args.train) != bool(args.test):
        p.error("--train and --test go together")
    if args.ranks < 1 or args.threads < 1:
        p.error("--ranks and --threads must be at least 1")
    if args.committee is not None and args.committee < 1:
        p.error("--committee must be at least 1")
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be at least 1")
    return args


def datasets(args) -> list[dict]:
    """[{name, train, test, published}] from --train/--test and --element."""
    sets = []
    if args.train:
        published = {}
        for item in args.published:
            label, _, numbers = item.partition("=")
            energy, force = (float(x) for x in numbers.split(","))
            published[label] = (energy, force)
        sets.append({"name": args.name or Path(args.train).stem, "train": args.train,
                     "test": args.test, "published": published, "mae": {}})
    for element in args.element or ([] if args.train else sorted(PUBLISHED_RMSE)):
        data = Path(args.data_dir)
        sets.append({"name": element, "train": str(data / f"{element}_training.xyz"),
                     "test": str(data / f"{element}_test.xyz"), "published": PUBLISHED_RMSE[element],
                     "mae": PUBLISHED_MAE[element]})
    for s in sets:
        for key in ("train", "test"):
            if not Path(s[key]).exists():
                fail(f"{s[key]} not found (give --data-dir or --train/--test)")
    return sets


#: The benchmark's recipe (docs/training.md, ablation table): the ``model`` and ``training`` sections
#: of this campaign file, on top of the config defaults; the budget and any --set come on top.
RECIPE_FILE = REPO / "inputs" / "accuracy_mlearn.yaml"


def fail(message: str) -> None:
    """A bad input: one line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def recipe(path: Path = RECIPE_FILE) -> dict:
    """{"model": {...}, "training": {...}, "search": {"committee": K}} as written in ``path`` (its
    `steps` is the budget unless --steps; of `search`, only the committee concerns training)."""
    if not Path(path).is_file():
        fail(f"--recipe {path} not found")
    data = yaml.safe_load(Path(path).read_text())
    committee = (data.get("search") or {}).get("committee")
    return {"model": dict(data.get("model") or {}), "training": dict(data.get("training") or {}),
            "search": {"committee": committee}}


def benchmark_settings(args) -> dict:
    """The ``model``/``training`` sections and ``search.committee``: the config defaults, the recipe
    file, the budget and --committee, then ``--set``."""
    base = recipe(Path(args.recipe))
    committee = base["search"]["committee"] if args.committee is None else args.committee
    steps = args.steps if args.steps is not None else base["training"].get("steps")
    if not isinstance(steps, int) or steps < 1:
        fail(f"--recipe {args.recipe}: training.steps is {steps!r}; write a positive number of steps "
             "there or give --steps")
    settings = {"model": {**base["model"], "device": "cpu"},
                "training": {**base["training"], "steps": steps, "epochs": None,
                             "log_every": max(1, steps // 24),
                             "validate_every": max(1, steps // 12),
                             "checkpoint_every": max(1, steps // 6)},
                "search": {"committee": committee if committee and committee > 1 else None}}
    apply_sets(settings, args.set, "use model.KEY=VALUE, training.KEY=VALUE or search.committee=K")
    return settings


def apply_sets(settings: dict, items: list[str], usage: str, require_value: bool = False) -> None:
    """Apply ``SECTION.KEY=VALUE`` overrides (YAML values) to ``settings`` ({section: {key: value}})
    in place; an item naming no section of ``settings``, no key or (``require_value``) no value stops
    with one line: ``--set ITEM: USAGE``."""
    for item in items:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        if section not in settings or not name or (require_value and not value):
            fail(f"--set {item}: {usage}")
        settings[section][name] = yaml.safe_load(value)


def write_config(path: Path, train_file: str, settings: dict) -> Path:
    """A campaign YAML with the data's elements and ``settings``; validated like the CLI does."""
    from acnn_mpi.config import load_config
    from acnn_mpi.data.io import read_frames
    from acnn_mpi.errors import UserError

    elements = sorted({s for atoms in read_frames(train_file) for s in atoms.get_chemical_symbols()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"elements": elements, **settings}, sort_keys=False))
    try:
        load_config(path)  # a bad --set fails here, before any training
    except UserError as error:
        fail(f"--set: {error}")
    return path


def train(config: Path, dataset: dict, out: Path, args) -> dict:
    """Run the CLI on ``config``; returns its wall and CPU seconds."""
    # the mpiexec of the MPI that mpi4py runs on (the mpich wheel's, beside the interpreter), as the tests use
    beside = Path(sys.executable).parent / "mpiexec"
    launcher = [str(beside) if beside.is_file() else "mpiexec", "-n", str(args.ranks)] if args.ranks > 1 else []
    command = launcher + [sys.executable, "-m", "acnn_mpi", "train", "--threads", str(args.threads),
               "--config", str(config), "--data", dataset["train"], "--out", str(out)]
    if not args.valid_only:
        command += ["--valid", dataset["test"]]  # logged only; never chooses the model
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(out / "train.log", "w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code:
        sys.exit(f"error: training failed (exit {code}); see {out / 'train.log'}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "command": " ".join(command)}


def run_dataset(dataset: dict, args) -> dict:
    from ase.io import read

    from acnn_mpi.train.metrics import evaluate_errors
    from acnn_mpi.train.models import load_model

    out = Path(args.out) / dataset["name"]
    out.mkdir(parents=True, exist_ok=True)
    settings = benchmark_settings(args)
    config = write_config(out / "config.yaml", dataset["train"], settings)
    timing = train(config, dataset, out, args)
    summary = json.loads((out / "metrics.json").read_text())
    final = summary.get("final", {})
    steps = max((r["step"] for r in summary.get("records", summary.get("history", []))),
                default=settings["training"]["steps"])
    result = {"name": dataset["name"], "steps": steps, "committee": settings["search"]["committee"],
              **timing,
              "load_avg_5min": os.getloadavg()[1], "valid": final.get("valid"),
              "train": final.get("train"), "published": dataset["published"], "mae": dataset["mae"]}
    model = load_model(out / "model.pt")
    if args.valid_only:
        from acnn_mpi.config import TrainingSettings

        training = TrainingSettings(**settings["training"])
        result["valid_groups"] = group_errors(model, read(dataset["train"], ":"),
                                              training.validation_fraction, training.seed)
    else:
        frames = read(dataset["test"], ":")
        batcher = frame_batcher(model, frames)
        result["test"] = evaluate_errors(model, frames, batcher=batcher)
        result["test_groups"] = group_errors(model, frames, batcher=batcher)
    return result


def frame_batcher(model, frames: list):
    """One :class:`FrameBatcher` of ``frames`` for ``model`` (its cutoff, dtype, device), so that
    the errors of the whole split and of each group share one set of neighbour lists."""
    from acnn_mpi.train.frames import FrameBatcher, load_frames
    from acnn_mpi.model.forces import model_dtype_device

    dtype, device = model_dtype_device(model)
    return FrameBatcher(load_frames(frames), model.cutoff, dtype=dtype, device=device)


def group_errors(model, frames: list, valid_fraction: float | None = None, seed: int = 0,
                 batcher=None) -> dict:
    """{group: evaluate_errors(...)} over labelled ASE ``frames`` by their ``group`` (extxyz info;
    {} when the frames have none), on all frames or, with ``valid_fraction``, on the held-out
    split the trainer made of their file (frame id = position, :func:`acnn_mpi.train.api.split_by_id`).
    ``batcher``: :func:`frame_batcher` of these frames, to reuse (default: one built here)."""
    import numpy as np

    from acnn_mpi.train.api import split_by_id
    from acnn_mpi.train.metrics import evaluate_errors

    chosen = range(len(frames))
    if valid_fraction is not None:
        chosen = split_by_id(np.arange(len(frames)), valid_fraction, seed)[1]
    groups: dict[str, list[int]] = {}
    for i in chosen:
        if "group" in frames[i].info:
            groups.setdefault(str(frames[i].info["group"]), []).append(int(i))
    if not groups:
        return {}
    batcher = batcher or frame_batcher(model, frames)
    return {name: evaluate_errors(model, frames, indices=ids, batcher=batcher)
            for name, ids in sorted(groups.items())}


def group_table(results: list[dict], split: str) -> str:
    """RMSE energy meV/atom / force meV/Å per configuration group ('' without groups)."""
    rows = [f"| {r['name']} | {g} | {e['n_frames']} | {e['energy_rmse']:.2f} / {e['force_rmse']:.1f} |"
            for r in results for g, e in (r.get(f"{split}_groups") or {}).items()]
    if not rows:
        return ""
    return "\n".join([f"| data | group | frames | RMSE E / F ({split}; meV/atom / meV/Å) |",
                      "|---|---|---|---|", *rows])


def _pair(e, f) -> str:
    return f"{e:.2f} / {f:.4f}"


def table(results: list[dict], split: str) -> str:
    labels = sorted({k for r in results for k in r["published"]})
    lines = [f"| data | ACNN RMSE E / F ({split}) | " + " | ".join(labels)
             + " | ACNN MAE E / F | steps | wall (CPU) |",
             "|---" * (len(labels) + 5) + "|"]
    for r in results:
        t = r[split] or {}
        pub = [_pair(*r["published"][k]) if k in r["published"] else "" for k in labels]
        lines.append(
            f"| {r['name']} | **{_pair(t['energy_rmse'], t['force_rmse'] / 1000)}** | "
            + " | ".join(pub)
            + f" | {t['energy_mae']:.2f} / {t['force_mae'] / 1000:.4f} | {_steps(r)} | "
            f"{r['wall_s'] / 60:.1f} min ({r['cpu_s'] / 60:.1f} min) |")
    lines.append(f"Energy meV/atom, force eV/Å, on the {split} split; published: PUBLISHED.md.")
    return "\n".join(lines)


def _steps(r: dict) -> str:
    """Steps per model, × the committee's members when there is one."""
    k = r.get("committee")
    return f"{r['steps']} × {k}" if k else str(r["steps"])


def verdict(r: dict, split: str) -> str:
    t = r[split]
    e, f = t["energy_rmse"], t["force_rmse"] / 1000
    parts = [f"{r['name']} ({split}): E {e:.2f} meV/atom, F {f:.4f} eV/Å"]
    for label, (pe, pf) in r["published"].items():
        parts.append(f"{label} {pe}/{pf}: E ×{e / pe:.2f}, F ×{f / pf:.2f}")
    return "; ".join(parts)


def main(argv=None) -> int:
    args = parse_args(argv)
    sets = datasets(args)
    split = "valid" if args.valid_only else "test"
    print(f"machine: {machine_line()}; {args.ranks} MPI rank(s) × {args.threads} torch thread(s)")
    print(f"settings: {json.dumps(benchmark_settings(args))}")
    results = []
    for dataset in sets:
        results.append(run_dataset(dataset, args))
        print(verdict(results[-1], split), flush=True)
    print()
    print(table(results, split))
    groups = group_table(results, split)
    if groups:
        print()
        print(groups)
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(
        {"machine": machine_line(), "args": vars(args), "results": results}, indent=1))
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
