"""``report``: an HTML page and a Markdown summary of a campaign directory."""

HELP = "write an HTML/Markdown report of a campaign"


def add_arguments(parser) -> None:
    from .arguments import finite_float

    parser.add_argument("directory", metavar="DIR", help="campaign directory (its output_dir)")
    parser.add_argument("--out", metavar="DIR", default=None, help="where to write (default: DIR/report)")
    parser.add_argument("--ehull-window", type=finite_float, default=50.0, metavar="meV",
                        help="list candidates within this E_hull, meV/atom (default 50)")


def run(args) -> int:
    if not args.comm.is_root:
        return 0
    from ..campaign.report import write_report

    files = write_report(args.directory, args.out, ehull_window_mev=args.ehull_window)
    print(f"wrote {files.html} and {files.markdown}")
    return 0
