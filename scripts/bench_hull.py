"""Benchmark: E_hull of 10⁷ structures (vectorized) against pymatgen's per-entry call.

Synthetic quaternary campaign: ``--compositions`` distinct compositions (irreducible formulas of
up to 20 atoms over four elements, plus the pure elements), each structure a cell of 1-4 formula
units of one of them, with a random formation enthalpy (-0.3 ± 0.15 eV/atom) and a spread of
polymorphs. Times :func:`acnn_mpi.csp.hull.convex_hull` on all of them (best structure per
composition, pymatgen PhaseDiagram, facet planes, E_hull of every structure), checks a sample
against ``PhaseDiagram.get_e_above_hull`` and extrapolates pymatgen's per-entry time to the same n.

    python scripts/bench_hull.py                  # 10⁷ structures
    python scripts/bench_hull.py --structures 1e6
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from acnn_mpi.csp.hull import convex_hull

ELEMENTS = ["Be", "P", "N", "O"]


def synthetic(n: int, n_comp: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    formulas = set()
    while len(formulas) < n_comp - 4:
        counts = rng.integers(0, 8, 4)
        if (counts > 0).sum() < 2 or counts.sum() > 20 or np.gcd.reduce(counts) != 1:
            continue
        formulas.add(tuple(int(c) for c in counts))
    formulas = np.array(sorted(formulas) + [tuple(r) for r in np.eye(4, dtype=int)])
    mu = np.array([-3.7, -5.4, -8.3, -4.9])
    formation = rng.normal(-0.3, 0.15, len(formulas))
    formation[-4:] = 0.0
    which = rng.integers(0, len(formulas), n)
    which[: len(formulas)] = np.arange(len(formulas))
    units = rng.integers(1, 5, n)
    counts = (formulas[which] * units[:, None]).astype(np.int64)
    natoms = counts.sum(1)
    h_atom = (counts / natoms[:, None]) @ mu + formation[which] + rng.exponential(0.1, n)
    return counts, h_atom * natoms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=float, default=1e7)
    parser.add_argument("--compositions", type=int, default=3000)
    parser.add_argument("--check", type=int, default=2000, help="structures checked with pymatgen")
    args = parser.parse_args()
    n = int(args.structures)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
          f"Python {platform.python_version()}, numpy {np.__version__}")
    counts, h = synthetic(n, args.compositions)
    print(f"{n:,} structures, {args.compositions:,} compositions of {'-'.join(ELEMENTS)}")
    print(f"load average before: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"(wall time exceeds CPU time when other processes share the cores)")
    for k in range(2):  # the first run pays the imports (pymatgen, pandas)
        start, cpu = time.perf_counter(), time.process_time()
        result = convex_hull(counts, h, ELEMENTS, pressure=0.0)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(f"  convex_hull, {'cold' if k == 0 else 'warm'}: {seconds:.2f} s wall, {cpu:.2f} s CPU "
              f"({n / cpu:,.0f} structures per CPU second); {len(result.stable)} stable phases, "
              f"{len(result.facets)} facets")
    e_again = result.e_hull  # the part that scales with n, timed alone below
    t0 = time.perf_counter()
    hull_at = result.hull_enthalpy(result.compositions / result.compositions.sum(1, keepdims=True))
    e_only = result.formation_enthalpy - hull_at[result.composition_index]
    print(f"  of which E_hull from the facet planes (per composition, then broadcast): "
          f"{time.perf_counter() - t0:.3f} s")
    assert np.allclose(e_only, e_again)

    from pymatgen.analysis.phase_diagram import PDEntry
    from pymatgen.core import Composition

    rows = np.random.default_rng(1).choice(n, args.check, replace=False)
    entries = [PDEntry(Composition(dict(zip(ELEMENTS, map(int, counts[r])))), float(h[r])) for r in rows]
    start = time.perf_counter()
    reference = np.array([result.phase_diagram.get_e_above_hull(e, allow_negative=True) for e in entries])
    per_entry = (time.perf_counter() - start) / len(rows)
    error = np.abs(reference - result.e_hull[rows]).max()
    print(f"  pymatgen get_e_above_hull: {1000 * per_entry:.2f} ms per structure -> "
          f"{per_entry * n / 3600:.1f} h for {n:,}; max |difference| on {len(rows)} structures: "
          f"{error:.1e} eV/atom")


if __name__ == "__main__":
    main()
