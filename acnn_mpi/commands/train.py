"""``train``: train or refine an ACNN model on labelled data, data-parallel over MPI ranks.

    python -m acnn_mpi train --data LABELS.h5 --out DIR [--config CAMPAIGN.yaml] [--steps N]
        [--resume] [--refine CKPT] [--valid FILE] [--device cpu|cuda|auto] [--committee K]
    mpiexec -n 4 python -m acnn_mpi train ...      # each global minibatch split over 4 ranks
    mpiexec -n 2 python -m acnn_mpi train --committee 2 ...   # two members side by side

Writes DIR/model.pt (the trained model), DIR/checkpoint.pt (to resume), DIR/metrics.csv and
DIR/metrics.json (progress and validation errors). Without --config the paper's settings are used
and the elements are those present in the data. With --resume and --refine together, an existing
checkpoint in DIR wins (a refinement that was interrupted continues); otherwise the refinement
starts. SIGTERM/SIGUSR1 stop after the current step with a checkpoint written.

A committee (``--committee K``, or the file's ``search.committee``) trains K models from seeds
``training.seed + m`` in DIR/member_M/ (side by side on min(K, ranks) rank groups) and writes their
mean as DIR/model.pt (K evaluations per structure); ``--committee 1`` trains one model.
"""

HELP = "train or refine an ACNN model on labelled data"


def add_arguments(parser) -> None:
    from .arguments import non_negative_int

    parser.add_argument("--config", metavar="CAMPAIGN.yaml", help="model and training settings")
    parser.add_argument("--data", required=True, metavar="LABELS.h5",
                        help="labelled frames (HDF5 store, or any file ASE reads such as extxyz)")
    parser.add_argument("--out", required=True, metavar="DIR", help="checkpoints, logs and the model")
    parser.add_argument("--steps", type=non_negative_int, default=None, help="optimizer steps (overrides the file)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in DIR")
    parser.add_argument("--refine", metavar="CKPT", help="start from this model, perturbed (paper)")
    parser.add_argument("--valid", metavar="FILE", help="extra validation set (HDF5 store or extxyz)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None,
                        help="model precision (overrides the file)")
    parser.add_argument("--committee", type=non_negative_int, default=None, metavar="K",
                        help="train K models (seeds training.seed + m) and write their mean "
                             "(overrides the file's search.committee; 1: one model)")


def _settings(args):
    """(settings with .model/.training/.elements) from --config or the defaults."""
    from types import SimpleNamespace

    from ..config import ModelSettings, TrainingSettings, load_config

    if args.config:
        config = load_config(args.config)
        settings = SimpleNamespace(model=config.model.model_copy(), training=config.training,
                                   elements=list(config.elements), committee=config.search.committee)
    else:
        settings = SimpleNamespace(model=ModelSettings(), training=TrainingSettings(), elements=None,
                                   committee=None)
    if args.committee is not None:
        settings.committee = args.committee
    if args.dtype:
        settings.model = settings.model.model_copy(update={"dtype": args.dtype})
    return settings


def run(args) -> int:
    from pathlib import Path

    from ..errors import UserError

    comm = args.comm
    collective = comm.size > 1
    for flag, path in (("--data", args.data), ("--valid", args.valid), ("--refine", args.refine),
                       ("--config", args.config)):
        if path is not None and not Path(path).exists():  # data may be a DeePMD folder
            raise UserError(f"{flag} {path}: file not found", collective=collective)
    for flag, path in (("--refine", args.refine), ("--config", args.config)):
        if path is not None and Path(path).is_dir():
            raise UserError(f"{flag} {path} is a directory: give a file", collective=collective)
    from .preflight import directory_problem

    problem = directory_problem(args.out, "--out", what="training directory")
    if problem:
        raise UserError(problem, collective=collective)
    if args.steps is not None and args.steps < 0:
        raise UserError(f"--steps must be >= 0, got {args.steps}", collective=collective)
    if args.committee == 0:
        raise UserError("--committee 0: give K >= 2 models, or 1 for a single model",
                        collective=collective)
    settings = _settings(args)

    from ..campaign import shutdown
    from ..parallel.threads import apply_torch_threads
    from ..train import train_model

    apply_torch_threads(args.threads)
    shutdown.install()
    options = dict(resume=args.resume, refine_from=args.refine, steps=args.steps, valid=args.valid,
                   device=args.device, should_stop=shutdown.requested)
    k = settings.committee or 1
    if k > 1:
        from ..train.committee_training import train_committee_model

        result = train_committee_model(settings, args.data, args.out, comm, k, **options)
    else:
        result = train_model(settings, args.data, args.out, comm, **options)
    if comm.is_root:
        if result.rejected:
            print(f"{len(result.rejected)} frame(s) skipped (see the warnings above)")
        print(f"{'stopped at' if result.stopped else 'trained to'} step {result.steps}: "
              f"{result.n_train} training, {result.n_valid} validation frames")
        if k > 1 and not result.stopped:
            print(f"committee of {k} (the mean of the models in {Path(args.out) / 'member_*'}):")
        for name, errors in result.metrics.items():
            if name == "members":
                for member, member_errors in errors.items():
                    for split, values in member_errors.items():
                        print(f"  member {member} {_error_line(split, values)}")
            else:
                print(f"  {_error_line(name, errors)}")
        if k > 1 and result.stopped:
            print("stopped before every member finished: no committee model; --resume to go on")
        print(f"model: {result.model_path}\ncheckpoint: {result.checkpoint_path}\n"
              f"logs: {result.metrics_csv}, {result.metrics_json}")
    return 0


def _error_line(name: str, errors: dict) -> str:
    from ..train.metrics import METRIC_UNITS

    parts = [f"{key} {errors[key]:.4g} {METRIC_UNITS[key]}" for key in
             ("energy_rmse", "force_rmse", "stress_rmse", "energy_mae", "force_mae")
             if errors.get(key) is not None]
    return f"{name:5s} ({errors['n_frames']} frames): " + ", ".join(parts)
