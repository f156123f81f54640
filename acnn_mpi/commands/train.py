"""``train``: train or refine an ACNN model on labelled data, data-parallel over MPI ranks."""

HELP = "train or refine an ACNN model on labelled data"


def add_arguments(parser) -> None:
    parser.add_argument("--config", metavar="CAMPAIGN.yaml", help="model and training settings")
    parser.add_argument("--data", required=True, metavar="LABELS.h5", help="labelled frames (HDF5 store)")
    parser.add_argument("--out", required=True, metavar="DIR", help="checkpoints, logs and the model")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (overrides the file)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in DIR")
    parser.add_argument("--refine", metavar="CKPT", help="start from this model, perturbed (paper)")
    parser.add_argument("--valid", metavar="FILE", help="extra validation set (HDF5 store or extxyz)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)


def run(args) -> int:
    from ..errors import UserError

    raise UserError("training is not implemented yet (issue: training ACNN)",
                    collective=args.comm.size > 1)
