"""``export``: every relaxed and labelled structure of a campaign, for ASE db / pymatgen queries.

    python -m acnn_mpi export DIR --format ase-db|extxyz|pymatgen-json [-o FILE]
                                  [--config CAMPAIGN.yaml | --pressure GPa [--elements A,B]]
                                  [--kinds relaxed,label,final] [--symprec 0.1 | --no-space-groups]

Writes one file (default ``DIR/structures.db``, ``.xyz`` or ``.json``) with, per structure: kind
(relaxed by the model / labelled / relaxed by the labeller), iteration, structure_id, status,
composition, energy, enthalpy, enthalpy_per_atom and e_hull (eV, eV/atom), pressure_gpa,
space_group and space_group_number (see ``acnn_mpi.campaign.catalog``). The pressure and elements
come from the campaign file (``--config``, or ``DIR/campaign.yaml`` when present); without one give
``--pressure`` (the elements are then read from the label store).
"""

from __future__ import annotations

HELP = "write every structure of a campaign as an ASE db, extended XYZ or pymatgen JSON"


#: as acnn_mpi.campaign.catalog.FORMATS and KINDS (spelled out: --help must not import numpy)
FORMATS = ("ase-db", "extxyz", "pymatgen-json")
KINDS = ("relaxed", "label", "final")


def add_arguments(parser) -> None:
    parser.add_argument("directory", metavar="DIR", help="campaign directory (its output_dir)")
    parser.add_argument("--format", choices=FORMATS, default="ase-db",
                        help="ase-db (SQLite, `ase db FILE space_group=Fm-3m`), extxyz, or "
                        "pymatgen-json (a list of Structure.as_dict()); default ase-db")
    parser.add_argument("--output", "-o", metavar="FILE", default=None,
                        help="file to write (default DIR/structures.db|.xyz|.json)")
    parser.add_argument("--config", metavar="CAMPAIGN.yaml", default=None,
                        help="the campaign file (elements, pressure, search.symprec)")
    parser.add_argument("--pressure", type=float, default=None, metavar="GPa",
                        help="campaign pressure, when no campaign file is given")
    parser.add_argument("--elements", default=None, metavar="A,B,...",
                        help="element order, when no campaign file is given (default: from labels.h5)")
    parser.add_argument("--kinds", default=",".join(KINDS), metavar="K1,K2",
                        help=f"which structures (default {','.join(KINDS)})")
    parser.add_argument("--symprec", type=float, default=None, metavar="Å",
                        help="spglib tolerance for the space groups (default: search.symprec or 0.1)")
    parser.add_argument("--no-space-groups", action="store_true",
                        help="leave out the space groups (faster for millions of structures)")


def _settings(args) -> tuple[list[str], float, float]:
    """(elements, pressure GPa, symprec Å) from the campaign file or the options."""
    from pathlib import Path

    from ..campaign.catalog import infer_elements
    from ..errors import UserError

    config_path = args.config or (Path(args.directory) / "campaign.yaml")
    if args.config or Path(config_path).exists():
        from ..config import load_config

        config = load_config(config_path)
        return list(config.elements), float(config.pressure), args.symprec or config.search.symprec
    if args.pressure is None:
        raise UserError(f"export: give the campaign file with --config (or --pressure GPa): "
                        f"{args.directory} does not record its pressure")
    if args.elements:
        from ..elements import validate_symbols

        elements = validate_symbols([s.strip() for s in args.elements.split(",")], "--elements")
    else:
        elements = infer_elements(args.directory)
    return elements, float(args.pressure), args.symprec or 0.1


def run(args) -> int:
    if not args.comm.is_root:  # light post-processing: the root does it alone
        return 0
    from pathlib import Path

    from ..campaign.catalog import FORMATS as SUFFIXES, campaign_records, write_catalog
    from ..errors import UserError

    if args.symprec is not None and args.symprec <= 0:
        raise UserError(f"--symprec = {args.symprec} Å must be positive")
    elements, pressure, symprec = _settings(args)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    output = Path(args.output) if args.output else Path(args.directory) / f"structures{SUFFIXES[args.format]}"
    records = campaign_records(args.directory, elements, pressure, kinds=kinds,
                               symprec=None if args.no_space_groups else symprec)
    count = write_catalog(records, output, args.format)
    print(f"wrote {count} structures ({', '.join(kinds)}; {'-'.join(elements)} at {pressure:g} GPa) "
          f"to {output}")
    return 0
