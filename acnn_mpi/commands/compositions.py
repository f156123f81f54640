"""``compositions``: list the composition space of a campaign (paper §II.C)."""

HELP = "list the composition space of a campaign"


def add_arguments(parser) -> None:
    parser.add_argument("campaign", metavar="CAMPAIGN.yaml", help="campaign file")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="how to print the list (default: an aligned table)")
    parser.add_argument("--summary", action="store_true",
                        help="only the counts (per number of elements, cells), no list")
    parser.add_argument("--output", "-o", metavar="FILE", default=None,
                        help="write the list to FILE instead of standard output")


def run(args) -> int:
    from ..config import load_config
    from ..csp.compositions import compositions_from_config

    comm = args.comm

    def build():
        config = load_config(args.campaign)
        return config.elements, compositions_from_config(config)

    elements, space = comm.root_then_bcast(build)
    if not comm.is_root:
        return 0
    import sys

    # a csv/json list on standard output stays machine-readable: the summary goes to stderr then
    plain = args.format == "table" or args.summary or args.output
    print(summary(elements, space), file=sys.stdout if plain else sys.stderr)
    if args.summary:
        return 0
    text = {"table": table, "csv": csv_text, "json": json_text}[args.format](space)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text)
        print(f"wrote {len(space)} compositions to {args.output}")
    else:
        print(text, end="")
    return 0


_ORDER_NAMES = {1: "elements", 2: "binary", 3: "ternary", 4: "quaternary", 5: "quinary"}


def summary(elements, space) -> str:
    orders = ", ".join(f"{n} {_ORDER_NAMES.get(k, f'{k}-element')}" for k, n in space.by_order().items())
    subsystems = sum(c.is_subsystem for c in space)
    lines = [f"{len(space)} irreducible compositions of {'-'.join(elements)} ({orders}; "
             f"{subsystems} in subsystems); {space.n_cells} cells counting formula units"]
    lines += [f"note: {note}" for note in space.notes]
    return "\n".join(lines)


def _rows(space):
    for index, c in enumerate(space, 1):
        units = c.formula_units
        yield {
            "index": index,
            "formula": c.formula,
            "atoms_per_formula": c.natoms,
            "elements": len(c.counts),
            "formula_units": f"{units[0]}-{units[-1]}" if len(units) > 1 else str(units[0]),
            "atoms_per_cell": (f"{c.cell_sizes[0]}-{c.cell_sizes[-1]}" if len(units) > 1
                               else str(c.cell_sizes[0])),
            "subsystem": "yes" if c.is_subsystem else "no",
            "origin": c.origin,
        }


def table(space) -> str:
    rows = list(_rows(space))
    if not rows:
        return ""
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(str(r[h])) for r in rows)) for h in headers}
    lines = ["  ".join(h.ljust(widths[h]) for h in headers)]
    lines += ["  ".join(str(r[h]).ljust(widths[h]) for h in headers) for r in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def csv_text(space) -> str:
    import csv
    import io

    rows = list(_rows(space))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["index"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def json_text(space) -> str:
    import json

    items = [json.dumps({"formula": c.formula, "counts": c.as_dict(), "formula_units": list(c.formula_units),
                         "is_subsystem": c.is_subsystem, "origin": c.origin}) for c in space]
    return "[\n" + ",\n".join(items) + "\n]\n"
