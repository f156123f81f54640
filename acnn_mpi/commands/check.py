"""``check``: validate campaign files and print the resolved settings."""

HELP = "validate a campaign file and print the resolved settings"


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="CAMPAIGN.yaml", help="campaign file(s) to check")
    parser.add_argument("--quiet", "-q", action="store_true", help="only say whether each file is valid")


def run(args) -> int:
    import sys

    from ..config import load_config, resolved_yaml
    from ..errors import UserError
    from ..label.validate import machine_problems, validate_labeller

    comm = args.comm
    failures = []
    warnings = []   # what this machine lacks for the labeller (DFT program, data)

    def check_all():
        texts = []
        for path in args.files:
            try:
                config = load_config(path)
                validate_labeller(config.labeller, machine=False)   # placeholders
                warnings.extend(f"warning: {path}: {problem} (`run` stops on it)"
                                for problem in machine_problems(config.labeller))
            except UserError as error:
                failures.append(str(error))
                continue
            texts.append((path, config))
        return texts, failures

    results, problems = comm.root_then_bcast(check_all)
    if comm.is_root:
        for warning in warnings:
            print(warning, file=sys.stderr)
        for path, config in results:
            if args.quiet:
                print(f"{path}: ok")
            else:
                print(f"# {path}: valid; resolved settings ({comm.size} rank(s), "
                      f"{args.threads} thread(s) per rank)")
                print(resolved_yaml(config))
    if problems:
        raise UserError("\n".join(problems), collective=comm.size > 1)
    return 0
