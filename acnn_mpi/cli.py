"""``python -m acnn_mpi``: the command line.

Each subcommand is a module in ``acnn_mpi/commands`` with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; it is imported only when named (so ``--help`` stays fast and a missing optional
dependency of one command does not break the others). ``args.comm`` holds the job's communicator.

With no arguments, ``mpirun -n 192 python -m acnn_mpi`` runs (or resumes) the campaign in
``./campaign.yaml``, as CALYPSO and VASP read their input from the working directory.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__

#: subcommand -> (module, one-line help); the help is here so `--help` needs no import.
COMMANDS = {
    "run": ("acnn_mpi.commands.run", "run or resume a self-optimizing CSP campaign from a YAML file"),
    "check": ("acnn_mpi.commands.check", "validate a campaign file and print the resolved settings"),
    "compositions": ("acnn_mpi.commands.compositions", "list the composition space of a campaign"),
    "data": ("acnn_mpi.commands.data", "import, export and inspect labelled data sets (HDF5)"),
    "train": ("acnn_mpi.commands.train", "train or refine an ACNN model on labelled data"),
    "relax": ("acnn_mpi.commands.relax", "relax many structures at a pressure, sharded over ranks"),
    "label": ("acnn_mpi.commands.label", "label structures with DFT or an ASE calculator"),
    "hull": ("acnn_mpi.commands.hull", "convex hull, stable phases and candidates of results"),
    "report": ("acnn_mpi.commands.report", "write an HTML/Markdown report of a campaign"),
    "export": ("acnn_mpi.commands.export", "write every structure of a campaign as an ASE db, extended XYZ or pymatgen JSON"),
}

log = logging.getLogger("acnn_mpi")


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage is one ``--help`` away)."""

    def error(self, message: str):
        from .parallel.comm import launcher_rank

        if launcher_rank() != 0:  # every rank parses the same line: one says it
            self.exit(2)
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _common_options(defaults: bool) -> argparse.ArgumentParser:
    """--threads, -v, --log-all-ranks, accepted before and after the subcommand. Only the top
    level sets defaults: a subcommand's default would overwrite `--threads 2 train ...`."""
    def default(value):
        return value if defaults else argparse.SUPPRESS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, default=default(None), metavar="N",
                        help="torch/BLAS threads per rank (default: the cores of the node divided among "
                        "its ranks; 1 when ranks fill the node)")
    common.add_argument("-v", "--verbose", action="store_true", default=default(False), help="debug output")
    common.add_argument("--log-all-ranks", action="store_true", default=default(False),
                        help="let every rank log, not only the root")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options(defaults=True)
    parser = _Parser(
        prog="python -m acnn_mpi",
        description="Self-optimizing crystal structure prediction with the ACNN potential, "
        "parallel over MPI. With no arguments: run the campaign in ./campaign.yaml.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"acnn_mpi {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text,
                                        parents=[_common_options(defaults=False)])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            command_parser.set_defaults(_unavailable=True)
            continue
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


def _startup(args) -> "object":
    """Threads and logging before any heavy import; returns the communicator."""
    from .parallel.logs import setup_logging
    from .parallel.startup import log_startup, start

    startup = start(args.threads)
    comm = startup.comm
    setup_logging(comm.rank, comm.size, verbose=args.verbose, all_ranks=args.log_all_ranks)
    args.threads = startup.threads
    args.comm = comm
    log_startup(startup, __version__)
    return comm


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or all(a.startswith("-") and a not in ("-h", "--help", "--version") for a in argv):
        argv = ["run", *argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_unavailable", False):
        print(f"error: the '{args.command}' command is not part of this installation yet",
              file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    # a log line that cannot be written (a full disk) must not print a traceback; the write that
    # matters fails next and says so in one line
    logging.raiseExceptions = False
    comm = _startup(args)
    from .parallel.guard import run_guarded

    return run_guarded(comm, lambda: args._module.run(args))
