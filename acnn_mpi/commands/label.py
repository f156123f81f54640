"""``label``: label structures with DFT or an ASE calculator, spread over MPI ranks, resumable.

    mpiexec -n 9 python -m acnn_mpi label --input structures.xyz --out labels.h5 --config campaign.yaml

Structures come from any file ASE reads (extended XYZ with a ``structure_id`` per frame is best: a
rerun skips ids already in ``--out`` and ids that failed before). Failures go to
``<out>.failures.jsonl`` with the reason and the tail of the code's output.
"""

HELP = "label structures with DFT or an ASE calculator"


def add_arguments(parser) -> None:
    from .arguments import finite_float, non_negative_int, positive_float, positive_int

    parser.add_argument("--input", "-i", required=True, metavar="FILE",
                        help="structures (any ASE-readable file; extxyz with structure_id per frame)")
    parser.add_argument("--out", "-o", required=True, metavar="LABELS",
                        help="labels file (.h5 or .xyz/.extxyz), appended as results arrive")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", "-c", metavar="CAMPAIGN.yaml",
                        help="campaign file whose 'labeller:' section says how to label")
    source.add_argument("--calculator", metavar="IMPORT.PATH",
                        help="shortcut for kind 'ase' with this calculator, e.g. ase.calculators.emt.EMT")
    parser.add_argument("--failures", metavar="FILE", default=None,
                        help="failure record, JSON lines (default: <out without extension>.failures.jsonl)")
    parser.add_argument("--workdir", metavar="DIR", default=None,
                        help="calculation directories (default: the labeller's workdir, else "
                             "<out without extension>.work)")
    parser.add_argument("--relax", action="store_true",
                        help="relax each structure with the labeller (final stage) instead of a single point")
    parser.add_argument("--pressure", type=finite_float, default=None, metavar="GPa",
                        help="relaxation pressure (default: the campaign's pressure, else 0)")
    parser.add_argument("--fmax", type=positive_float, default=0.01, metavar="eV/Å",
                        help="relaxation force threshold (default 0.01)")
    parser.add_argument("--steps", type=non_negative_int, default=200, help="relaxation steps at most (default 200)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="label again structures with recorded failures")
    parser.add_argument("--max-failed-runs", type=positive_int, default=1, metavar="N",
                        help="skip structures with N recorded failures (default 1)")
    parser.add_argument("--source", default=None, metavar="TEXT",
                        help="'source' stored with every frame (default: the input file's name)")
    parser.add_argument("--iteration", type=non_negative_int, default=None, metavar="K",
                        help="campaign iteration stored with every frame")
    parser.add_argument("--root-works", choices=("auto", "yes", "no"), default="auto",
                        help="whether rank 0 labels too (auto: only for in-process calculators on <= 4 ranks)")


def _read_section(path):
    """(labeller mapping, campaign pressure or None, base dir) from a campaign YAML file."""
    import os
    from pathlib import Path

    from ..config import read_yaml_file, refuse_non_finite
    from ..errors import UserError

    data = read_yaml_file(Path(path), what="--config") or {}
    refuse_non_finite(data, f"--config {path}")
    if not isinstance(data, dict) or "labeller" not in data:
        raise UserError(f"--config {path}: no 'labeller:' section (see docs/labelling.md)")
    section = data["labeller"]
    if not isinstance(section, dict):
        raise UserError(f"--config {path}: 'labeller:' must be a mapping of settings")
    pressure = data.get("pressure")
    return dict(section), pressure, os.path.dirname(os.path.abspath(path))


def run(args) -> int:
    import json
    import os

    from ..campaign import shutdown
    from ..errors import UserError
    from ..label.runner import label_structures
    from ..label.sink import read_structures

    comm = args.comm
    if args.steps < 0 or args.fmax <= 0 or args.max_failed_runs < 1:
        raise UserError("--steps must be >= 0, --fmax > 0 and --max-failed-runs >= 1",
                        collective=comm.size > 1)

    def prepare():
        from .preflight import directory_problem

        problem = directory_problem(os.path.dirname(os.path.abspath(args.out)), "--out",
                                    what="folder of the labels file")
        if problem or os.path.isdir(args.out):
            raise UserError(problem or f"--out {args.out} is a directory: give a labels file name "
                            "such as labels.h5")
        if args.config:
            section, pressure, base_dir = _read_section(args.config)
        else:
            section, pressure, base_dir = dict(kind="ase", calculator=args.calculator), None, os.getcwd()
        if args.workdir:
            section["workdir"] = os.path.abspath(args.workdir)
        elif not section.get("workdir"):
            section["workdir"] = os.path.abspath(os.path.splitext(args.out)[0] + ".work")
        structures = read_structures(args.input)
        return section, pressure, base_dir, structures

    # only the root reads the input; the others learn the settings from label_structures
    box = {}

    def root_part():
        section, pressure, base_dir, structures = prepare()
        box["structures"] = structures
        return section, pressure, base_dir

    section, campaign_pressure, base_dir = comm.root_then_bcast(root_part)
    if isinstance(campaign_pressure, list) and args.pressure is None:
        if len(campaign_pressure) > 1 and args.relax:
            raise UserError(f"--config {args.config} gives the pressures {campaign_pressure} GPa: "
                            "give the one to relax at with --pressure")
        campaign_pressure = campaign_pressure[0] if campaign_pressure else None
    pressure = args.pressure if args.pressure is not None else float(campaign_pressure or 0.0)
    root_works = {"auto": None, "yes": True, "no": False}[args.root_works]
    shutdown.install()
    summary = label_structures(
        comm, box.get("structures"), section, os.path.abspath(args.out),
        failures_path=os.path.abspath(args.failures) if args.failures else None,
        mode="relax" if args.relax else "label", pressure_gpa=pressure, fmax=args.fmax,
        steps=args.steps, retry_failed=args.retry_failed, max_failed_runs=args.max_failed_runs,
        root_works=root_works, should_stop=shutdown.requested, base_dir=base_dir,
        source=args.source if args.source is not None else os.path.basename(args.input),
        iteration=args.iteration)
    if comm.is_root:
        print(summary.text())
        summary_path = os.path.splitext(os.path.abspath(args.out))[0] + ".summary.json"
        with open(summary_path, "w") as f:
            json.dump(summary.to_dict(), f, indent=1)
    return 0
