"""``run``: run or resume a self-optimizing CSP campaign."""

HELP = "run or resume a self-optimizing CSP campaign from a YAML file"


def add_arguments(parser) -> None:
    parser.add_argument("campaign", nargs="?", default="campaign.yaml", metavar="CAMPAIGN.yaml",
                        help="campaign file (default: ./campaign.yaml, as CALYPSO/VASP read theirs)")
    parser.add_argument("--output-dir", default=None, metavar="DIR",
                        help="campaign directory (default: output_dir of the file)")
    parser.add_argument("--max-iterations", type=int, default=None, metavar="K",
                        help="stop after K self-optimizing iterations (overrides the file)")


def run(args) -> int:
    from ..config import load_config
    from ..errors import UserError

    comm = args.comm
    config = comm.root_then_bcast(lambda: load_config(args.campaign))
    raise UserError(
        f"{args.campaign} is valid (elements {'-'.join(config.elements)}, {config.pressure} GPa), "
        "but the campaign controller is not implemented yet (issue: the self-optimizing campaign); "
        "the stages run on their own: compositions, relax, label, train, hull",
        collective=comm.size > 1,
    )
