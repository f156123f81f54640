"""``export``: every relaxed and labelled structure of a campaign, for ASE db / pymatgen queries.

    python -m acnn_mpi export DIR --format ase-db|extxyz|pymatgen-json [-o FILE]
                                  [--config CAMPAIGN.yaml | --pressure GPa [--elements A,B]]
                                  [--kinds relaxed,label,final] [--symprec 0.1 | --no-space-groups]

Writes one file (default ``DIR/structures.db``, ``.xyz`` or ``.json``) with, per structure: kind
(relaxed by the model / labelled / relaxed by the labeller), iteration, structure_id, status,
composition, energy, enthalpy, enthalpy_per_atom and e_hull (eV, eV/atom), pressure_gpa,
space_group and space_group_number (see ``acnn_mpi.campaign.catalog``); a campaign over several
pressures gives a labelled structure once per pressure (enthalpy and e_hull at it). The pressures
and elements come from the campaign file (``--config``, else ``DIR/campaign.resolved.yaml``, which
`run` writes, or ``DIR/campaign.yaml``); without one, the pressures recorded in ``DIR/state.json``
or ``--pressure`` (the elements are then read from the label store).
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
                        help="the campaign file (elements, pressure(s), search.symprec; default "
                        "DIR/campaign.resolved.yaml or DIR/campaign.yaml)")
    parser.add_argument("--pressure", type=float, default=None, metavar="GPa",
                        help="campaign pressure, when no campaign file is given (default: the "
                        "pressures in DIR/state.json)")
    parser.add_argument("--elements", default=None, metavar="A,B,...",
                        help="element order, when no campaign file is given (default: from labels.h5)")
    parser.add_argument("--kinds", default=",".join(KINDS), metavar="K1,K2",
                        help=f"which structures (default {','.join(KINDS)})")
    parser.add_argument("--symprec", type=float, default=None, metavar="Å",
                        help="spglib tolerance for the space groups (default: search.symprec or 0.1)")
    parser.add_argument("--no-space-groups", action="store_true",
                        help="leave out the space groups (faster for millions of structures)")


def _settings(args) -> tuple[list[str], list[float], float]:
    """(elements, pressures GPa, symprec Å) from the campaign file, the state or the options."""
    from pathlib import Path

    from ..campaign.catalog import infer_elements
    from ..campaign.layout import RESOLVED_CONFIG
    from ..errors import UserError

    directory = Path(args.directory)
    found = [p for p in (directory / RESOLVED_CONFIG, directory / "campaign.yaml") if p.exists()]
    config_path = args.config or (found[0] if found else None)
    if config_path is not None:
        from ..config import load_config

        config = load_config(config_path)
        return list(config.elements), config.pressures_gpa, args.symprec or config.search.symprec
    pressures = [float(args.pressure)] if args.pressure is not None else _state_pressures(directory)
    if not pressures:
        raise UserError(f"export: give the campaign file with --config (or --pressure GPa): "
                        f"{args.directory} does not record its pressure")
    if args.elements:
        from ..elements import validate_symbols

        elements = validate_symbols([s.strip() for s in args.elements.split(",")], "--elements")
    else:
        elements = infer_elements(args.directory)
    return elements, pressures, args.symprec or 0.1


def _state_pressures(directory) -> list[float]:
    """The pressures a campaign recorded in its state.json (none before they were recorded)."""
    from ..campaign.state import load_state

    return list(load_state(directory).pressures_gpa) if (directory / "state.json").exists() else []


def run(args) -> int:
    if not args.comm.is_root:  # light post-processing: the root does it alone
        return 0
    from pathlib import Path

    from ..campaign.catalog import FORMATS as SUFFIXES, campaign_records, write_catalog
    from ..errors import UserError

    if args.symprec is not None and args.symprec <= 0:
        raise UserError(f"--symprec = {args.symprec} Å must be positive")
    elements, pressures, symprec = _settings(args)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    output = Path(args.output) if args.output else Path(args.directory) / f"structures{SUFFIXES[args.format]}"
    records = campaign_records(args.directory, elements, pressures, kinds=kinds,
                               symprec=None if args.no_space_groups else symprec)
    count = write_catalog(records, output, args.format)
    at = ", ".join(f"{p:g}" for p in pressures)
    print(f"wrote {count} structures ({', '.join(kinds)}; {'-'.join(elements)} at {at} GPa) to {output}")
    return 0
