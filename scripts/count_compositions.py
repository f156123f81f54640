"""Count the composition spaces of the paper's two campaigns (§II.C, §III) under candidate readings.

    python scripts/count_compositions.py            # both systems, a few seconds

The paper reports 827 Mg-Ca-H and 373 Be-P-N-O irreducible compositions; docs/compositions.md
gives the tables this prints and which reading the shipped inputs use.
"""

from __future__ import annotations

import itertools
import math
from functools import reduce

from acnn_mpi.csp.compositions import enumerate_compositions

BEPNO = ["Be", "P", "N", "O"]
BINARIES = ["BeO", "Be3N2", "P2O5", "P3N5"]


def mgcah_sweep() -> dict[tuple, int]:
    """Counts of Mg_a Ca_b H_h under 384 readings of 'fewer than 4 Mg and 4 Ca, H/metal ≤ 16,
    ≤ 80 atoms per cell': metal bound 3 or 4; bound on the formula or on a cell (then reduced);
    ratio ≤ or <; H over total metal, over each present metal, or over the larger count; H from 0
    or 1; atom cap none/60/80/100; with or without the subsystems."""
    counts = {}
    for metal_max, where, rel, denom, h_min, cap, sub in itertools.product(
            (3, 4), ("formula", "cell"), ("le", "lt"), ("sum", "each", "max"), (0, 1),
            (None, 60, 80, 100), (True, False)):
        found = set()
        for a, b in itertools.product(range(metal_max + 1), repeat=2):
            for h in range(h_min, 32 * metal_max + 1):
                present = sum(x > 0 for x in (a, b, h))
                if present == 0 or (not sub and present < 3) or (cap and a + b + h > cap):
                    continue
                metal = {"sum": a + b, "each": min([x for x in (a, b) if x] or [0]), "max": max(a, b)}[denom]
                if h and metal == 0 and not (sub and h == 1):
                    continue
                if h and metal and (h > 16 * metal if rel == "le" else h >= 16 * metal):
                    continue
                g = reduce(math.gcd, (a, b, h))
                if where == "formula" and g != 1:
                    continue
                found.add((a // g, b // g, h // g))
        counts[(metal_max, where, rel, denom, h_min, cap, sub)] = len(found)
    return counts


def bepno_readings() -> list[tuple[str, int, dict]]:
    """(reading, count, by number of elements) of Be-P-N-O readings, cells < 60 atoms."""
    rows = []
    for label, p_states, subsystems, joins, extra in (
            ("P5+, all charge-neutral formulas ≤ 31 atoms incl. subsystems", [5], True, [], []),
            ("P5+/P3+, the same (the previous shipped reading, + joins: 906)", [5, 3], True, [], []),
            ("P5+, quaternary ≤ 31 atoms only", [5], False, [], []),
            ("P5+, quaternary ≤ 31 + joins of BeO, Be3N2, P2O5, P3N5 (≤ 4 units) + elements "
             "(shipped)", [5], False, BINARIES, BEPNO),
            ("P5+, all ≤ 31 incl. subsystems + the same joins", [5], True, BINARIES, []),
            ("P5+/P3+, quaternary ≤ 31 + the same joins + elements", [5, 3], False, BINARIES, BEPNO)):
        space = enumerate_compositions(BEPNO, max_atoms_per_formula=31, max_atoms_per_cell=59,
                                       oxidation_states={"Be": [2], "P": p_states, "N": [-3], "O": [-2]},
                                       joins=joins, formulas=extra, include_subsystems=subsystems)
        rows.append((label, len(space), space.by_order()))
    return rows


def main() -> None:
    sweep = mgcah_sweep()
    near = sorted(sweep.items(), key=lambda item: abs(item[1] - 827))[:5]
    print(f"Mg-Ca-H: {len(sweep)} readings, {sum(n == 827 for n in sweep.values())} give 827; nearest:")
    for key, n in near:
        print(f"  {n:5d}  metal≤{key[0]} bound-on-{key[1]} ratio-{key[2]} over-{key[3]} H≥{key[4]} "
              f"cap={key[5]} subsystems={key[6]}")
    shipped = enumerate_compositions(["Mg", "Ca", "H"], max_atoms_per_formula=102, max_atoms_per_cell=80,
                                     per_element_bounds={"Mg": (0, 3), "Ca": (0, 3)},
                                     ratio_bounds=[(["H"], ["Mg", "Ca"], 16)])
    print(f"  shipped (inputs/mgcah_300gpa.yaml): {len(shipped)} {shipped.by_order()}")
    print("Be-P-N-O (paper: 373):")
    for label, n, orders in bepno_readings():
        print(f"  {n:5d}  {orders}  {label}")


if __name__ == "__main__":
    main()
