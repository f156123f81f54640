"""``relax``: relax many structures at a pressure, sharded over MPI ranks into HDF5.

    mpiexec -n N python -m acnn_mpi relax --model M --input structures.(h5|xyz) --out DIR \\
        --pressure P [--batch-size 64] [--chunk-size 16] [--fmax ...] [...]

Every relaxation option is a flag named after its :class:`acnn_mpi.config.RelaxOptions` field
without the unit suffix (``--fmax`` eV/Å, ``--skin`` Å, ``--energy-floor`` eV/atom or ``none``, ...),
with the same defaults as a campaign file's ``relax`` section.

``--model``: a saved ACNN model file, ``lj`` / ``lj:epsilon,sigma[,cutoff]`` (Lennard-Jones), or an
ASE calculator class such as ``ase.calculators.emt.EMT``. ``--input``: an HDF5 structure file
(see ``acnn_mpi.relax.io``) or anything ASE reads (extxyz, ...; converted once to DIR/input.h5).
Structure ids come from the input (``structure_id``), else the position in the file.

The root deals out chunks of ``--chunk-size`` structures dynamically; every rank keeps a batch of
up to ``--batch-size`` structures relaxing (continuous batching across chunks) and commits its
finished structures to its own shard DIR/shards/rankRRRR.h5 every chunk of results
(the batch steps in a background thread, so a rank keeps relaxing while it waits for the root). At the end
the root writes DIR/index.h5 (one virtual view of all shards). Started again with the same command
after being killed, the job relaxes only the structures not yet committed; started with another
model file content or other settings it stops and names what changed.
``acnn_mpi.relax.shards.read_results(DIR)`` reads the results.
"""

HELP = "relax many structures at a pressure, sharded over ranks"


def add_arguments(parser) -> None:
    from .arguments import finite_float, positive_float

    parser.add_argument("--model", required=True, metavar="M",
                        help="ACNN model file, 'lj', 'lj:epsilon,sigma[,cutoff]', or an ASE calculator "
                             "class path such as ase.calculators.emt.EMT")
    parser.add_argument("--input", required=True, metavar="FILE", help="structures: HDF5 structure file or extxyz")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (shards, index)")
    parser.add_argument("--pressure", type=finite_float, default=0.0, metavar="GPA", help="pressure, GPa (default 0)")
    parser.add_argument("--min-distances", default=None, metavar="A-B=D,...",
                        help="pair minimum distances in Å, e.g. 'Mg-H=1.4,H-H=0.8' (default 0.8 × covalent sum)")
    add_relax_options(parser)
    parser.add_argument("--device", default=None, help="torch device for the model (default: cpu)")
    parser.add_argument("--log-every", type=positive_float, default=10.0, help="seconds between progress lines (10)")


def _option_type(annotation):
    """argparse type and nargs of a RelaxOptions field ('none' reads as None where allowed)."""
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = type(None) in typing.get_args(annotation)
    inner = args[0] if optional else annotation
    if typing.get_origin(inner) is tuple:
        from .arguments import finite_float

        return finite_float, 2
    from .arguments import finite_float

    base = inner if isinstance(inner, type) else float
    convert = finite_float if base is float else base

    def parse(text: str):
        if optional and text.lower() == "none":
            return None
        return convert(text)

    parse.__name__ = base.__name__
    return parse, None


def add_relax_options(parser) -> None:
    """One flag per :class:`acnn_mpi.config.RelaxOptions` field, named by its short name
    (``--fmax`` for ``fmax_ev_per_a``); unset flags keep RelaxOptions' defaults."""
    import argparse

    from ..config import RelaxOptions

    for short, name in RelaxOptions.short_names().items():
        info = RelaxOptions.model_fields[name]
        help_text = f"{info.description} (default {info.default})"
        flag = "--" + short.replace("_", "-")
        if info.annotation is bool:
            parser.add_argument(flag, dest=short, default=None, action=argparse.BooleanOptionalAction,
                                help=help_text)
            continue
        kind, nargs = _option_type(info.annotation)
        parser.add_argument(flag, dest=short, default=None, type=kind, nargs=nargs,
                            metavar=("MIN", "MAX") if nargs else short.upper(), help=help_text)


def relax_options(args):
    """RelaxOptions from the flags given (UserError naming the flag for a bad value)."""
    from pydantic import ValidationError

    from ..config import RelaxOptions
    from ..errors import UserError

    given = {short: getattr(args, short) for short in RelaxOptions.short_names()
             if getattr(args, short, None) is not None}
    try:
        return RelaxOptions().replace(**given)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        short = {v: k for k, v in RelaxOptions.short_names().items()}.get(field, field)
        raise UserError(f"--{short.replace('_', '-')} {given.get(short)!r}: {first['msg']}") from None


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
    """What the results depend on: a resumed job must find the same (the model file by content)."""
    import os

    from ..relax.shards import file_digest

    model = args.model
    if os.path.isfile(model):
        model = {"file": os.path.abspath(model), "sha256": file_digest(model)}
    options = relax_options(args).model_dump(mode="json", exclude={"batch_size", "max_atoms", "chunk_size"})
    return {"input": os.path.abspath(args.input), "model": model, "pressure_gpa": float(args.pressure),
            "min_distances": args.min_distances, **options}


def _prepare(args, comm_size: int) -> dict:
    """Root: check settings, open the input, find the finished ids, make the task list."""
    import os

    import numpy as np

    from ..errors import UserError
    from ..relax import shards
    from ..relax.io import open_structures

    from .preflight import make_directory

    relax_options(args)  # bad values are refused before anything is written
    if not os.path.exists(args.input):
        raise UserError(f"--input {args.input}: file not found")
    make_directory(args.out, "--out", what="results directory")
    os.makedirs(shards.shard_dir(args.out), exist_ok=True)
    shards.claim(args.out, _settings(args), f"--out {args.out}")
    try:
        source = open_structures(args.input, args.out)
    except (OSError, ValueError) as error:
        raise UserError(f"--input {args.input}: {error}") from None
    ids = source.ids
    if len(np.unique(ids)) != len(ids):
        raise UserError(f"--input {args.input}: structure ids are not unique")
    done = shards.finished_ids(args.out)
    remaining = np.nonzero(~np.isin(ids, done))[0]
    chunk = relax_options(args).chunk_size
    tasks = [remaining[i:i + chunk].tolist() for i in range(0, len(remaining), chunk)]
    return {"input": source.path, "total": len(ids), "done": int(np.isin(ids, done).sum()), "tasks": tasks}


class _Progress:
    """The root's progress lines."""

    def __init__(self, log, total: int, already: int, every_s: float):
        import time
        from collections import Counter

        self.log, self.total, self.already, self.every_s = log, total, already, every_s
        self.done, self.per_rank, self.statuses = 0, Counter(), Counter()
        self.started = self.last = time.monotonic()

    def on_result(self, task, result, rank):
        import time

        self.done += result["finished"]
        self.per_rank[rank] += result["finished"]
        self.statuses.update(result["statuses"])
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            left = max(self.total - self.already - self.done, 0)
            eta = f"{left / rate / 60:.1f} min" if rate > 0 else "?"
            ranks = " ".join(f"{r}:{n}" for r, n in sorted(self.per_rank.items()))
            self.log.info("relax: %d/%d done (%.2f/s, ETA %s; per rank %s; %s)", self.already + self.done,
                          self.total, rate, eta, ranks, dict(self.statuses))


def _report(log, args, summaries, wall_s: float, total: int) -> None:
    from ..relax import shards
    from ..relax.service import total_statuses

    statuses = total_statuses(summaries)
    n = sum(statuses.values())
    cpu = sum(s.cpu_s for s in summaries)
    steps = sum(s.steps for s in summaries)
    for s in summaries:
        log.info("relax: rank %d relaxed %d structure(s) in %d batched steps, %.1f CPU s", s.rank,
                 s.structures, s.evaluations, s.cpu_s)
    log.info("relax: %d structure(s) this run %s in %.1f s (%.0f structures per core-hour, %.1f steps "
             "each); %d/%d done in %s", n, dict(statuses), wall_s,
             n / (cpu / 3600) if cpu > 0 else 0.0, steps / n if n else 0.0,
             len(shards.finished_ids(args.out)), total, args.out)
    log.info("relax: index %s", shards.write_index(args.out))


def run(args) -> int:
    import logging
    import time

    from ..campaign import shutdown
    from ..parallel.threads import apply_torch_threads
    from ..relax import shards
    from ..relax.evaluators import load_model
    from ..relax.io import StructureFile
    from ..relax.runner import BatchRelaxer
    from ..relax.service import RelaxService, serve

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

    options = relax_options(args)
    relaxer = BatchRelaxer(model, args.pressure, options, min_distances=min_distances, device=args.device)
    source = StructureFile(plan["input"])
    writer = shards.ShardWriter(shards.shard_path(args.out, comm.rank), rank=comm.rank,
                                pressure_gpa=args.pressure, settings=shards.read_settings(args.out))
    service = RelaxService(relaxer, writer, source.read, commit_every=options.chunk_size,
                           lookahead=options.chunk_size, rank=comm.rank)
    total, already = plan["total"], plan["done"]
    progress = _Progress(log, total, already, args.log_every)
    if comm.is_root:
        log.info("relax: %d structure(s) in %s, %d already done in %s, %d to relax in %d chunk(s) "
                 "of %d over %d rank(s); model %s; P = %g GPa", total, args.input, already, args.out,
                 total - already, len(tasks), options.chunk_size, comm.size, relaxer.evaluator.describe()
                 if hasattr(relaxer.evaluator, "describe") else args.model, args.pressure)
    summaries = serve(comm, tasks, service, progress.on_result, should_stop=shutdown.requested)
    if comm.is_root:
        _report(log, args, summaries, time.monotonic() - progress.started, total)
        if shutdown.requested():
            log.warning("relax: stopped on a signal; run the same command again to finish")
    comm.barrier()
    return 0 if not shutdown.requested() else 3
