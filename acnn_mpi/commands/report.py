"""``report``: an HTML page and a Markdown summary of a campaign directory."""

HELP = "write an HTML/Markdown report of a campaign"


def add_arguments(parser) -> None:
    from .arguments import non_negative_float

    parser.add_argument("directory", metavar="DIR", help="campaign directory (its output_dir)")
    parser.add_argument("--out", metavar="DIR", default=None, help="where to write (default: DIR/report)")
    parser.add_argument("--ehull-window", type=non_negative_float, default=50.0, metavar="meV",
                        help="list candidates within this E_hull, meV/atom (default 50)")


def run(args) -> int:
    from .arguments import root_only

    return root_only(args.comm, lambda: _run(args))


def _run(args) -> int:
    if not args.comm.is_root:
        return 0
    from pathlib import Path

    from ..campaign.report import write_report
    from ..errors import UserError
    from .preflight import directory_problem

    if not Path(args.directory).is_dir():
        raise UserError(f"{args.directory}: no such campaign directory; give a campaign's output_dir")
    out = args.out or str(Path(args.directory) / "report")
    problem = directory_problem(out, "--out" if args.out else "report directory", what="report directory")
    if problem:
        raise UserError(problem)

    files = write_report(args.directory, args.out, ehull_window_mev=args.ehull_window)
    print(f"wrote {files.html} and {files.markdown}")
    return 0
