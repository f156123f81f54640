"""``check``: validate campaign files and print the resolved settings."""

HELP = "validate a campaign file and print the resolved settings"


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="*", metavar="CAMPAIGN.yaml", help="campaign file(s) to check")
    parser.add_argument("--env", action="store_true",
                        help="report the MPI library, ranks per node, threads, GPUs (as the campaign "
                        "file sets them, if given) and the job's end time; exit 1 if the launcher "
                        "and MPI disagree on the number of ranks")
    parser.add_argument("--quiet", "-q", action="store_true", help="only say whether each file is valid")


def run(args) -> int:

    from ..config import load_config, resolved_yaml
    from ..errors import UserError
    from .preflight import check_campaign

    comm = args.comm
    if args.env or not args.files:
        return _environment(args)
    failures = []

    def check_all():
        texts = []
        for path in args.files:
            try:
                config = load_config(path)
                check_campaign(config, path)
            except UserError as error:
                failures.append(str(error))
                continue
            texts.append((path, config))
        return texts, failures

    results, problems = comm.root_then_bcast(check_all)
    if comm.is_root:
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


def _environment(args) -> int:
    """``check --env [CAMPAIGN.yaml]``: the job's environment; exit 1 on a rank-count mismatch.

    A campaign file, if given, supplies ``model.device`` and ``parallel.ranks_per_gpu``."""
    from ..config import load_config
    from ..errors import UserError
    from ..parallel.environment import environment_report

    if not args.env:
        raise UserError("check: name a campaign file (or use --env to report the environment)")
    comm = args.comm
    config = comm.root_then_bcast(lambda: load_config(args.files[0])) if args.files else None
    text, problems = environment_report(
        comm, args.threads, ranks_per_gpu=config.parallel.ranks_per_gpu if config else None,
        device=config.model.device if config else "auto")
    if comm.is_root:
        print(text, flush=True)
    return 1 if problems else 0
