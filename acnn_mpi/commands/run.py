"""``run``: run or resume a self-optimizing CSP campaign."""

HELP = "run or resume a self-optimizing CSP campaign from a YAML file"


def add_arguments(parser) -> None:
    from .arguments import non_negative_int

    parser.add_argument("campaign", nargs="?", default="campaign.yaml", metavar="CAMPAIGN.yaml",
                        help="campaign file (default: ./campaign.yaml, as CALYPSO/VASP read theirs)")
    parser.add_argument("--output-dir", default=None, metavar="DIR",
                        help="campaign directory (default: output_dir of the file)")
    parser.add_argument("--max-iterations", type=non_negative_int, default=None, metavar="K",
                        help="stop after K self-optimizing iterations (overrides the file)")


def run(args) -> int:
    import os

    from ..campaign.controller import run_campaign
    from ..config import load_config
    from .preflight import check_campaign

    comm = args.comm

    def read():
        config = load_config(args.campaign)
        if args.output_dir:
            config.output_dir = os.path.abspath(args.output_dir)
        check_campaign(config, args.campaign, output_setting="--output-dir" if args.output_dir else "output_dir")
        return config

    config = comm.root_then_bcast(read)
    return run_campaign(config, comm, max_iterations=args.max_iterations)
