"""``data``: import labelled frames into an HDF5 store, export them, and summarise a store.

    python -m acnn_mpi data import FILES... --store labels.h5 [--format auto|extxyz|deepmd|...]
        [--source NAME] [--iteration K] [--on-bad skip|refuse] [--elements Cu Au ...]
        [--energy-key KEY --forces-key KEY --stress-key KEY --virial-key KEY] [--type-map Cu Au]
    python -m acnn_mpi data export --store labels.h5 OUT [--format extxyz|deepmd]
        [--source NAME] [--iteration K] [--force]
    python -m acnn_mpi data info labels.h5 [--json]

An import is all or nothing: with ``--on-bad refuse`` (the default) one bad frame in any file
leaves the store as it was and lists the bad frames; with ``--on-bad skip`` they are left out and
listed. Frames keep the source/iteration recorded in the file (extended XYZ written by ``data
export``, another store) unless ``--source``/``--iteration`` are given; otherwise the source is the
file's name. Only the root rank works under MPI.
"""

HELP = "import, export and inspect labelled data sets (HDF5)"

_CHUNK = 1000     # frames validated and appended at a time
_LISTED = 20      # bad frames listed in full


def add_arguments(parser) -> None:
    from .arguments import non_negative_float

    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = actions.add_parser("import", help="add labelled frames from files to a store",
                           description="add labelled frames from files to a store")
    p.add_argument("files", nargs="+", metavar="FILE", help="data files or DeePMD folders")
    p.add_argument("--store", required=True, metavar="LABELS.h5", help="store to add to (created)")
    p.add_argument("--format", default="auto",
                   help="auto (default), extxyz, deepmd, store, db, outcar, vasprun, or an ASE format")
    p.add_argument("--source", default=None, help="source name of every frame (default: as "
                   "recorded in the file, else the file name)")
    p.add_argument("--iteration", type=int, default=None, help="campaign iteration of every frame "
                   "(default: as recorded, else 0)")
    p.add_argument("--labeller", default=None, help="labeller name of every frame")
    p.add_argument("--tags", default=None, help="free text stored with every frame")
    p.add_argument("--on-bad", choices=["skip", "refuse"], default="refuse",
                   help="bad frames: leave them out, or refuse the whole import (default)")
    p.add_argument("--elements", nargs="+", metavar="EL", default=None,
                   help="allowed elements (default: any)")
    p.add_argument("--min-distance", type=non_negative_float, default=None, metavar="DIST",
                   help="shortest allowed interatomic distance, Å (default 0.3)")
    for label in ("energy", "forces", "stress", "virial"):
        p.add_argument(f"--{label}-key", default=None, metavar="KEY",
                       help=f"info/arrays key of the {label} (default: the calculator's, else '{label}')")
    p.add_argument("--type-map", nargs="+", metavar="EL", default=None,
                   help="element of each DeePMD type, for systems without type_map.raw")

    p = actions.add_parser("export", help="write the frames of a store as extxyz or DeePMD",
                           description="write the frames of a store as extxyz or DeePMD")
    p.add_argument("out", metavar="OUT", help="extxyz file, or folder for DeePMD systems")
    p.add_argument("--store", required=True, metavar="LABELS.h5", help="store to read")
    p.add_argument("--format", choices=["extxyz", "deepmd"], default=None,
                   help="default: deepmd when OUT has no extension, else extxyz")
    p.add_argument("--source", default=None, help="only frames from this source")
    p.add_argument("--iteration", type=int, default=None, help="only frames of this iteration")
    p.add_argument("--force", action="store_true", help="replace an existing OUT")

    p = actions.add_parser("info", help="summarise a store", description="summarise a store")
    p.add_argument("store", metavar="LABELS.h5")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args) -> int:
    work = {"import": _import, "export": _export, "info": _info}[args.action]
    return int(args.comm.root_then_bcast(lambda: work(args)) or 0)


def _import(args) -> int:
    from pathlib import Path

    from ..data.frames import LabelKeys
    from ..data.io import check_import_format
    from ..data.store import FrameStore
    from ..data.validate import MIN_DISTANCE, allowed_numbers
    from ..errors import UserError

    check_import_format(args.format)
    missing = [f for f in args.files if not Path(f).exists()]
    if missing:
        raise UserError(f"{missing[0]}: no such file or folder")
    allowed_numbers(args.elements)  # unknown symbols fail before anything is written
    check = dict(
        allowed_elements=args.elements, on_bad="skip",
        label_keys=LabelKeys(energy=args.energy_key, forces=args.forces_key,
                             stress=args.stress_key, virial=args.virial_key),
        min_distance=MIN_DISTANCE if args.min_distance is None else args.min_distance,
    )
    bad_lines: list[str] = []
    lines = []
    new_store = not Path(args.store).exists()
    try:
        with FrameStore(args.store, "a") as store:
            before = len(store)
            with store.transaction():
                for path in args.files:
                    read, added, bad = _import_file(store, path, args, check, bad_lines)
                    lines.append(f"{path}: {read} frames read, {added} added, {bad} bad")
                if args.on_bad == "refuse" and bad_lines:
                    raise UserError(f"{len(bad_lines)} bad frame(s); nothing imported into "
                                    f"{args.store} (--on-bad skip leaves them out):\n"
                                    + _listing(bad_lines, indent=""))
            after = len(store)
    except BaseException:
        if new_store and Path(args.store).exists():  # leave no empty store behind
            Path(args.store).unlink()
        raise
    for line in lines:
        print(line)
    if bad_lines:
        print(f"skipped {len(bad_lines)} bad frame(s):\n" + _listing(bad_lines, indent="  "))
    print(f"{args.store}: {after} frames ({after - before} added)")
    return 0


def _import_file(store, path, args, check, bad_lines) -> tuple[int, int, int]:
    """Validate and append one file's frames in chunks; returns (read, added, bad)."""
    from itertools import islice
    from pathlib import Path

    from ..data.frames import SOURCE
    from ..data.io import iter_frames
    from ..data.validate import validate_frames
    from ..errors import UserError

    frames = iter_frames(path, args.format, type_map=args.type_map)
    name = Path(path).name or str(path)
    read = added = bad = 0
    while True:
        chunk = list(islice(frames, _CHUNK))
        if not chunk:
            break
        for atoms in chunk:
            atoms.info.setdefault(SOURCE, name)
        naming = dict(first_index=read, name=f"{path} frame")
        if args.on_bad == "refuse" and bad_lines:  # refused already: only look for more
            report = validate_frames(chunk, **check, **naming)
        else:
            report = store.append(chunk, source=args.source, iteration=args.iteration,
                                  labeller=args.labeller, tags=args.tags, **check, **naming)
            added += len(report.good)
        bad += len(report.bad)
        bad_lines.extend(report.messages(**naming))
        read += len(chunk)
    if read == 0:
        raise UserError(f"{path}: no frames in it")
    return read, added, bad


def _listing(lines: list, indent: str) -> str:
    text = "\n".join(indent + line for line in lines[:_LISTED])
    if len(lines) > _LISTED:
        text += f"\n{indent}... and {len(lines) - _LISTED} more"
    return text


def _export(args) -> int:
    from pathlib import Path

    from ..data.io import export_store
    from ..data.store import FrameStore
    from ..errors import UserError

    fmt = args.format or ("extxyz" if Path(args.out).suffix else "deepmd")
    with FrameStore(args.store, "r") as store:
        store.verify()
        indices = store.select(source=args.source, iteration=args.iteration)
        if len(indices) == 0:
            raise UserError(f"{args.store}: no frames to export"
                            + (" with the given --source/--iteration" if
                               args.source is not None or args.iteration is not None else ""))
        count = export_store(store, args.out, fmt, indices=indices, overwrite=args.force)
    print(f"wrote {count} frames to {args.out} ({fmt})")
    return 0


def _info(args) -> int:
    import json

    from ..data.store import FrameStore

    with FrameStore(args.store, "r") as store:
        store.verify()
        meta = store.metadata()
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    sizes = meta["atoms_per_frame"]
    print(f"{meta['path']}: {meta['frames']} frames, {meta['atoms']} atoms"
          + (f" ({sizes[0]}-{sizes[1]} per frame)" if sizes else ""))
    print(f"  elements: {' '.join(meta['elements']) or '-'}")
    print(f"  with stress: {meta['with_stress']}")
    for title, key in (("by source", "by_source"), ("by iteration", "by_iteration"),
                       ("by formula", "by_formula")):
        items = list(meta[key].items())
        shown = ", ".join(f"{'(none)' if k == '' else k}: {v}" for k, v in items[:10])
        more = f", ... ({len(items) - 10} more)" if len(items) > 10 else ""
        print(f"  {title}: {shown or '-'}{more}")
    return 0
