"""``hull``: convex hull, stable phases and near-hull candidates of relaxation results.

    python -m acnn_mpi hull RESULTS [--pressure GPa] [--ehull-max 0.05] [--plot FILE]
                                    [--export-cif DIR] [--export-poscar DIR]

RESULTS is an extended XYZ file (one frame per relaxed structure with ``info['enthalpy']`` in
eV, or an energy and a pressure), or the output directory of ``python -m acnn_mpi relax`` (its HDF5
shards; see ``acnn_mpi.csp.export.READERS``). Prints the stable phases (formula, space group,
formation enthalpy, atoms per cell) and the distinct metastable structures within ``--ehull-max``.

The exported files are symmetrised at ``--symprec`` (``acnn_mpi.csp.export.export_symmetrized``):
``DIR/NAME.cif|.vasp`` the conventional cell, ``DIR/primitive/NAME.cif|.vasp`` the primitive cell,
``DIR/NAME.json`` space group, Wyckoff sites, tolerance, enthalpy and E_hull, ``DIR/index.json``
all of them; ``--as-relaxed`` writes the structures as relaxed (P1) instead.
"""

from __future__ import annotations

HELP = "convex hull, stable phases and candidates of results"


def add_arguments(parser) -> None:
    from .arguments import finite_float, non_negative_float, non_negative_int, positive_float

    parser.add_argument("results", metavar="RESULTS",
                        help="relaxation results: extended XYZ (info['enthalpy'] eV per frame) or "
                        "the output directory of `relax`")
    parser.add_argument("--pressure", type=finite_float, default=None, metavar="GPa",
                        help="recompute H = E + PV at this pressure (default: the results' own)")
    parser.add_argument("--elements", default=None, metavar="A,B,...",
                        help="element order, e.g. Mg,Ca,H (default: by electronegativity)")
    parser.add_argument("--ehull-max", type=non_negative_float, default=0.05, metavar="eV/atom",
                        help="list and export candidates up to this E_hull (default 0.05 eV/atom)")
    parser.add_argument("--symprec", type=positive_float, default=0.1, metavar="Å",
                        help="spglib tolerance for space groups and symmetrised files (default 0.1 Å)")
    parser.add_argument("--keep-duplicates", action="store_true",
                        help="list every structure, not one per distinct crystal")
    parser.add_argument("--max-rows", type=non_negative_int, default=50, metavar="N",
                        help="at most this many candidates in the table (default 50)")
    parser.add_argument("--export-cif", default=None, metavar="DIR",
                        help="write stable phases and candidates as CIF files here")
    parser.add_argument("--export-poscar", default=None, metavar="DIR",
                        help="write stable phases and candidates as POSCAR (.vasp) files here")
    parser.add_argument("--as-relaxed", action="store_true",
                        help="export the structures as relaxed (P1), not symmetrised")
    parser.add_argument("--plot", default=None, metavar="FILE",
                        help="hull figure (.png, .svg or .pdf; no suffix: PNG and SVG)")
    parser.add_argument("--plot-max", type=non_negative_float, default=0.2, metavar="eV/atom",
                        help="structures drawn up to this E_hull (default 0.2 eV/atom)")
    parser.add_argument("--section", default=None, metavar="A,B,C",
                        help="plot the pseudo-ternary section through three formulas, "
                        "e.g. BeO,P2O5,P3N5")


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    lines = []
    for row in [header, *rows]:
        cells = [str(x).rjust(w) if k in right else str(x).ljust(w)
                 for k, (x, w) in enumerate(zip(row, widths))]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def _check_outputs(args) -> None:
    """Refuse unusable --export-cif/--export-poscar/--plot places before the hull is computed."""
    from pathlib import Path

    from ..errors import UserError
    from .preflight import directory_problem

    for flag, directory in (("--export-cif", args.export_cif), ("--export-poscar", args.export_poscar)):
        problem = directory and directory_problem(directory, flag)
        if problem:
            raise UserError(problem)
    if args.plot:
        if Path(args.plot).is_dir():
            raise UserError(f"--plot {args.plot} is a directory: give a file name such as hull.png")
        problem = directory_problem(Path(args.plot).absolute().parent, "--plot", what="folder of the figure")
        if problem:
            raise UserError(problem)


def run(args) -> int:
    from .arguments import root_only

    return root_only(args.comm, lambda: _run(args))


def _run(args) -> int:
    if not args.comm.is_root:  # light post-processing: the root does it alone
        return 0
    import numpy as np

    from ..csp.dedup import deduplicate
    from ..csp.export import export_structures, export_symmetrized, read_results, structure_name
    from ..csp.fingerprints import fingerprints
    from ..csp.hull import convex_hull
    from ..csp.symmetry import space_group
    from ..errors import UserError

    if args.ehull_max < 0:
        raise UserError(f"--ehull-max = {args.ehull_max} eV/atom must be ≥ 0")
    _check_outputs(args)
    elements = [s.strip() for s in args.elements.split(",")] if args.elements else None
    if elements is not None:
        from ..elements import validate_symbols

        validate_symbols(elements, "--elements")
    results = read_results(args.results, args.pressure, elements)
    usable = results.converged & results.physical & np.isfinite(results.enthalpy)
    if not usable.any():
        raise UserError(f"{results.source}: no converged, physical structure to build a hull from")
    hull = convex_hull(results.counts, results.enthalpy, results.elements,
                       pressure=results.pressure, include=usable)

    window = np.flatnonzero(usable & (hull.e_hull <= args.ehull_max + 1e-12))
    distinct = np.ones(len(results), dtype=bool)
    if not args.keep_duplicates and window.size > 1:
        fps = (results.fingerprints[window] if results.fingerprints is not None else
               fingerprints([results.load(int(r)) for r in window], results.elements))
        dedup = deduplicate(hull.composition_index[window], hull.enthalpy_per_atom[window], fps,
                            load_structure=lambda k: results.load(int(window[k])))
        distinct[window] = dedup.is_unique
    stable = [int(r) for r in hull.stable]
    stable_set = set(stable)
    candidates = [int(r) for r in window[np.lexsort((results.ids[window], hull.e_hull[window]))]
                  if distinct[r] and int(r) not in stable_set]

    listed = stable + candidates[:args.max_rows]
    groups = {r: space_group(results.load(r), args.symprec) for r in listed}

    def row_text(r: int) -> list[str]:
        symbol, number = groups[r]
        return [hull.formula(r), f"{symbol} ({number})", f"{1000 * hull.formation_enthalpy[r]:.1f}",
                str(int(hull.n_atoms[r])), str(int(results.ids[r]))]

    pressure = "" if results.pressure is None else f" at {results.pressure:g} GPa"
    print(f"{'-'.join(results.elements)}{pressure}: {len(results)} structures "
          f"({int(usable.sum())} converged and physical), {len(hull.compositions)} compositions, "
          f"{len(stable)} stable phases")
    print("\nStable phases:")
    print(_table(["formula", "space group", "H_f (meV/atom)", "atoms/cell", "id"],
                 [row_text(r) for r in stable], {2, 3, 4}))
    kind = "structures" if args.keep_duplicates else "distinct structures"
    print(f"\nMetastable {kind} with E_hull ≤ {1000 * args.ehull_max:g} meV/atom: {len(candidates)}"
          + (f" (first {args.max_rows} shown)" if len(candidates) > args.max_rows else ""))
    if candidates:
        rows = []
        for rank, r in enumerate(candidates[:args.max_rows], start=1):
            text = row_text(r)
            rows.append([str(rank), text[0], text[1], f"{1000 * hull.e_hull[r]:.1f}", *text[2:]])
        print(_table(["rank", "formula", "space group", "E_hull (meV/atom)", "H_f (meV/atom)",
                      "atoms/cell", "id"], rows, {0, 3, 4, 5, 6}))

    names = [structure_name(k, hull.formula(r), groups[r][1], int(results.ids[r]))
             for k, r in enumerate(listed, start=1)]
    for directory, fmt in ((args.export_cif, "cif"), (args.export_poscar, "poscar")):
        if not directory:
            continue
        structures = [results.load(r) for r in listed]
        if args.as_relaxed:
            paths = export_structures(structures, names, directory, fmt)
            print(f"\nwrote {len(paths)} {fmt.upper()} files (as relaxed) to {directory}")
            continue
        extras = [{"formula": hull.formula(r), "structure_id": int(results.ids[r]),
                   "stable": r in stable_set, "pressure_gpa": results.pressure,
                   "enthalpy_eV": float(results.enthalpy[r]),
                   "formation_enthalpy_meV_per_atom": round(1000 * float(hull.formation_enthalpy[r]), 3),
                   "e_hull_meV_per_atom": round(1000 * float(hull.e_hull[r]), 3)} for r in listed]
        export_symmetrized(structures, names, directory, args.symprec, formats=(fmt,), extras=extras)
        print(f"\nwrote {len(listed)} symmetrised structures (symprec {args.symprec:g} Å; conventional "
              f"and primitive/ cells, {fmt.upper()} + JSON) to {directory}")
    if args.plot:
        from ..plots.hull import plot_hull, plot_pseudo_ternary

        labels = {r: groups[r][0] for r in stable}
        try:
            if args.section:
                _, files = plot_pseudo_ternary(hull, [s.strip() for s in args.section.split(",")],
                                               args.plot, space_groups=labels, ehull_max=args.plot_max)
            else:
                _, files = plot_hull(hull, args.plot, space_groups=labels, ehull_max=args.plot_max)
        except ValueError as error:
            raise UserError(f"--plot: {error}") from None
        print(f"\nwrote {', '.join(map(str, files))}")
    return 0
