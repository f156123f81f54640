"""``relax``: relax many structures at a pressure, sharded over MPI ranks into HDF5.

    mpiexec -n N python -m acnn_mpi relax --model M --input structures.(h5|xyz) --out DIR \\
        --pressure P [--batch-size 64] [--chunk-size 16] [...]

``--model``: a saved ACNN model file, ``lj`` / ``lj:epsilon,sigma[,cutoff]`` (Lennard-Jones), or an
ASE calculator class such as ``ase.calculators.emt.EMT``. ``--input``: an HDF5 structure file
(see ``acnn_mpi.relax.io``) or anything ASE reads (extxyz, ...; converted once to DIR/input.h5).
Structure ids come from the input (``structure_id``), else the position in the file.

The root deals out chunks of ``--chunk-size`` structures dynamically; every rank keeps a batch of
up to ``--batch-size`` structures relaxing (continuous batching across chunks) and commits its
finished structures to its own shard DIR/shards/rankRRRR-ATTEMPT.h5 every chunk of results
(the batch steps in a background thread, so a rank keeps relaxing while it waits for the root). At the end
the root writes DIR/index.h5 (one virtual view of all shards). Started again with the same command
after being killed, the job relaxes only the structures not yet committed.
``acnn_mpi.relax.shards.read_results(DIR)`` reads the results.
"""

HELP = "relax many structures at a pressure, sharded over ranks"


def add_arguments(parser) -> None:
    from .arguments import finite_float, non_negative_float, number, positive_float, positive_int

    parser.add_argument("--model", required=True, metavar="M",
                        help="ACNN model file, 'lj', 'lj:epsilon,sigma[,cutoff]', or an ASE calculator "
                             "class path such as ase.calculators.emt.EMT")
    parser.add_argument("--input", required=True, metavar="FILE", help="structures: HDF5 structure file or extxyz")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (shards, index)")
    parser.add_argument("--pressure", type=finite_float, default=0.0, metavar="GPA", help="pressure, GPa (default 0)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="structures relaxed together per rank (64)")
    parser.add_argument("--max-atoms", type=positive_int, default=None, help="cap on atoms in a rank's batch")
    parser.add_argument("--chunk-size", type=positive_int, default=16, help="structures per task dealt to a rank (16)")
    parser.add_argument("--fmax", type=positive_float, default=1e-3, help="max force, eV/Å (1e-3)")
    parser.add_argument("--dh-tol", type=positive_float, default=1e-6, help="enthalpy change per step, eV/atom (1e-6)")
    parser.add_argument("--stress-tol", type=positive_float, default=0.05, help="max |σ + P·I|, GPa (0.05)")
    parser.add_argument("--max-steps", type=positive_int, default=1000, help="step limit per structure (1000)")
    parser.add_argument("--min-distances", default=None, metavar="A-B=D,...",
                        help="pair minimum distances in Å, e.g. 'Mg-H=1.4,H-H=0.8' (default 0.8 × covalent sum)")
    parser.add_argument("--min-distance-fraction", type=number(float, 0, above=True, high=1), default=0.5,
                        help="unphysical below this × the pair minimum distance (0.5)")
    parser.add_argument("--volume-window", type=finite_float, nargs=2, default=(0.5, 200.0), metavar=("MIN", "MAX"),
                        help="allowed volume per atom, Å³ (0.5 200)")
    parser.add_argument("--energy-floor", type=finite_float, default=None, help="unphysical below this energy per atom relative to the model's "
                        "per-element reference energies (ACNN; 0 for other models), eV/atom")
    parser.add_argument("--maxstep", type=positive_float, default=0.2, help="largest step per coordinate row, Å (0.2)")
    parser.add_argument("--skin", type=non_negative_float, default=1.0, help="Verlet skin of the neighbour lists, Å (1.0)")
    parser.add_argument("--device", default=None, help="torch device for the model (default: cpu)")
    parser.add_argument("--log-every", type=positive_float, default=10.0, help="seconds between progress lines (10)")


def _parse_min_distances(text):
    import math

    from ..errors import UserError

    if not text:
        return None
    table = {}
    for item in text.split(","):
        if not item.strip():
            continue
        pair, _, value = item.partition("=")
        try:
            a, b = (s.strip() for s in pair.split("-"))
            table[(a, b)] = float(value)
        except ValueError:
            raise UserError(f"--min-distances: {item!r} is not A-B=distance (e.g. Mg-H=1.4)") from None
        if not math.isfinite(table[(a, b)]):
            raise UserError(f"--min-distances: {item!r}: the distance must be a finite number of Å")
    from ..relax.status import min_distance_table

    try:
        min_distance_table(table)
    except ValueError as error:
        raise UserError(f"--min-distances: {error}") from None
    return table


def _settings(args) -> dict:
    import os

    return {
        "input": os.path.abspath(args.input), "model": args.model, "pressure_gpa": float(args.pressure),
        "fmax": args.fmax, "dh_tol": args.dh_tol, "stress_tol": args.stress_tol, "max_steps": args.max_steps,
        "min_distances": args.min_distances, "min_distance_fraction": args.min_distance_fraction,
        "volume_window": list(args.volume_window), "energy_floor": args.energy_floor,
    }


def _prepare(args, comm_size: int) -> dict:
    """Root: check settings, open the input, find the finished ids, make the task list."""
    import json
    import os
    import time

    import numpy as np

    from ..errors import UserError
    from ..relax import shards
    from ..relax.io import open_structures

    from .preflight import make_directory

    if not os.path.exists(args.input):
        raise UserError(f"--input {args.input}: file not found")
    for name in ("batch_size", "chunk_size", "max_steps"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    make_directory(args.out, "--out", what="results directory")
    os.makedirs(shards.shard_dir(args.out), exist_ok=True)
    settings = _settings(args)
    settings_path = os.path.join(args.out, "relax.json")
    if os.path.exists(settings_path) and len(shards.finished_ids(args.out)):
        try:
            with open(settings_path, "rb") as handle:
                previous = json.loads(handle.read().decode("utf-8"))
            if not isinstance(previous, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise UserError(f"{settings_path} is damaged ({error}): it records which job the results "
                            f"in --out belong to; put back a copy, or use a new --out directory") from None
        for key in ("input", "model", "pressure_gpa"):
            if previous.get(key) != settings[key]:
                raise UserError(f"--out {args.out} holds results of another job ({key} was {previous.get(key)!r}, "
                                f"now {settings[key]!r}); use a new --out directory")
    else:
        tmp = settings_path + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(settings, handle, indent=1)
        os.replace(tmp, settings_path)
    try:
        source = open_structures(args.input, args.out)
    except (OSError, ValueError) as error:
        raise UserError(f"--input {args.input}: {error}") from None
    ids = source.ids
    if len(np.unique(ids)) != len(ids):
        raise UserError(f"--input {args.input}: structure ids are not unique")
    done = shards.finished_ids(args.out)
    remaining = np.nonzero(~np.isin(ids, done))[0]
    chunk = int(args.chunk_size)
    tasks = [remaining[i:i + chunk].tolist() for i in range(0, len(remaining), chunk)]
    attempt = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
    return {"input": source.path, "attempt": attempt, "total": len(ids), "done": int(np.isin(ids, done).sum()),
            "tasks": tasks}


def run(args) -> int:
    import logging
    import time
    from collections import Counter

    from ..campaign import shutdown
    from ..parallel.tasks import run_dynamic
    from ..parallel.threads import apply_torch_threads
    from ..relax import shards
    from ..relax.evaluators import load_model
    from ..relax.io import StructureFile
    from ..relax.runner import BatchRelaxer
    from ..relax.worker import RelaxWorker

    log = logging.getLogger("acnn_mpi.relax")
    comm = args.comm
    apply_torch_threads(args.threads)

    def check_model():
        load_model(args.model, device=args.device)  # a bad spec fails on every rank alike

    comm.root_then_bcast(check_model)
    min_distances = comm.root_then_bcast(lambda: _parse_min_distances(args.min_distances))
    plan = comm.root_then_bcast(lambda: _prepare(args, comm.size))
    tasks = plan.pop("tasks") if comm.is_root else None
    plan.pop("tasks", None)
    model = load_model(args.model, device=args.device)
    shutdown.install()

    relaxer = BatchRelaxer(
        model, args.pressure, batch_size=args.batch_size, max_atoms=args.max_atoms, fmax=args.fmax,
        dh_tol=args.dh_tol, stress_tol=args.stress_tol, max_steps=args.max_steps, min_distances=min_distances,
        min_distance_fraction=args.min_distance_fraction, volume_window=tuple(args.volume_window),
        energy_floor=args.energy_floor, maxstep=args.maxstep, skin=args.skin, device=args.device)
    source = StructureFile(plan["input"])
    writer = shards.ShardWriter(shards.shard_path(args.out, comm.rank, plan["attempt"]), rank=comm.rank,
                                attempt=plan["attempt"], pressure_gpa=args.pressure, model=args.model)
    cpu_start = time.process_time()
    worker = RelaxWorker(relaxer, writer.append, commit_every=args.chunk_size, lookahead=args.chunk_size)

    def work(rows):
        return worker.work(source.read(rows))

    total, already = plan["total"], plan["done"]
    if comm.is_root:
        log.info("relax: %d structure(s) in %s, %d already done in %s, %d to relax in %d chunk(s) "
                 "of %d over %d rank(s); model %s; P = %g GPa", total, args.input, already, args.out,
                 total - already, len(tasks), args.chunk_size, comm.size, relaxer.evaluator.describe()
                 if hasattr(relaxer.evaluator, "describe") else args.model, args.pressure)
    progress = {"done": 0, "per_rank": Counter(), "statuses": Counter(), "started": time.monotonic(),
                "last": 0.0}
    to_do = total - already

    def on_result(task, result, rank):
        progress["done"] += result["finished"]
        progress["per_rank"][rank] += result["finished"]
        progress["statuses"].update(result["statuses"])
        now = time.monotonic()
        if now - progress["last"] >= args.log_every:
            progress["last"] = now
            elapsed = now - progress["started"]
            rate = progress["done"] / elapsed if elapsed > 0 else 0.0
            left = max(to_do - progress["done"], 0)
            eta = f"{left / rate / 60:.1f} min" if rate > 0 else "?"
            ranks = " ".join(f"{r}:{n}" for r, n in sorted(progress["per_rank"].items()))
            log.info("relax: %d/%d done (%.2f/s, ETA %s; per rank %s; %s)", already + progress["done"], total,
                     rate, eta, ranks, dict(progress["statuses"]))

    try:
        run_dynamic(comm, tasks, work, on_result, should_stop=shutdown.requested)
    except BaseException:
        worker.finish(drain=False)
        raise
    # finish what is queued and in the batch (unless asked to stop: redone on restart)
    worker.finish(drain=not shutdown.requested())
    summary = {"rank": comm.rank, "statuses": dict(worker.statuses), "steps": worker.steps,
               "cpu_s": time.process_time() - cpu_start, "evaluations": relaxer.n_steps}
    summaries = comm.gather(summary)
    if comm.is_root:
        statuses = Counter()
        for s in summaries:
            statuses.update(s["statuses"])
        n = sum(statuses.values())
        cpu = sum(s["cpu_s"] for s in summaries)
        steps = sum(s["steps"] for s in summaries)
        wall = time.monotonic() - progress["started"]
        for s in summaries:
            log.info("relax: rank %d relaxed %d structure(s) in %d batched steps, %.1f CPU s", s["rank"],
                     sum(s["statuses"].values()), s["evaluations"], s["cpu_s"])
        log.info("relax: %d structure(s) this run %s in %.1f s (%.0f structures per core-hour, %.1f steps "
                 "each); %d/%d done in %s", n, dict(statuses), wall,
                 n / (cpu / 3600) if cpu > 0 else 0.0, steps / n if n else 0.0,
                 len(shards.finished_ids(args.out)), total, args.out)
        index = shards.write_index(args.out)
        log.info("relax: index %s", index)
        if shutdown.requested():
            log.warning("relax: stopped on a signal; run the same command again to finish")
    comm.barrier()
    return 0 if not shutdown.requested() else 3
