"""``report``: an HTML page and a Markdown summary of a campaign directory."""

HELP = "write an HTML/Markdown report of a campaign"


def add_arguments(parser) -> None:
    parser.add_argument("directory", metavar="DIR", help="campaign directory")
    parser.add_argument("--out", metavar="DIR", default=None, help="where to write (default: DIR/report)")
    parser.add_argument("--ehull-window", type=float, default=None, metavar="meV",
                        help="list candidates within this E_hull (meV/atom)")


def run(args) -> int:
    from ..errors import UserError

    raise UserError("the campaign report is not implemented yet (issue: the self-optimizing campaign)",
                    collective=args.comm.size > 1)
