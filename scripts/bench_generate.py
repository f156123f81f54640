"""Random structure generation speed for Mg-Ca-H cells up to 80 atoms (paper Eqs. 17-18), one core.

    python scripts/bench_generate.py [--per-bin 6] [--structures 5] [--seed 0] [--compare-pyxtal]

Compositions: the paper's Mg-Ca-H space (Mg ≤ 3, Ca ≤ 3 per formula, H/metal ≤ 16, cells ≤ 80 atoms,
subsystems included), as cells (composition × formula units) binned by atoms per cell. For each bin
a random sample of cells; for each cell:
  * cold: the first structure after the space-group compatibility cache was cleared (what a worker
    pays for a composition it has not seen yet);
  * warm: the next ``--structures`` structures (cache filled).
Process-cold cost (importing pyxtal, building each Group's Wyckoff arrays once per process) is
reported separately. ``--compare-pyxtal`` times pyxtal's own ``random_crystal`` on small cells with
the same volume and distance matrix.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from benchlib import machine_line  # noqa: E402  (scripts/ is on sys.path)

D_MGCAH = {"Mg-Mg": 1.9, "Mg-Ca": 1.9, "Mg-H": 1.4, "Ca-Ca": 1.9, "Ca-H": 1.6, "H-H": 0.8}  # Å, Eq. 17
V_MGCAH = {"Mg": 7.1, "Ca": 8.8, "H": 1.4}  # Å³, Eq. 18
BINS = [(1, 10), (11, 20), (21, 30), (31, 40), (41, 50), (51, 60), (61, 70), (71, 80)]


def machine() -> str:
    import ase
    import pyxtal

    return machine_line(f"numpy {np.__version__}", f"pyxtal {pyxtal.__version__}", f"ase {ase.__version__}",
                        "1 thread")


def cells_by_bin(space, rng, per_bin):
    out = {}
    cells = [(c, k) for c in space for k in c.formula_units]
    for low, high in BINS:
        chosen = [cell for cell in cells if low <= cell[0].natoms * cell[1] <= high]
        picks = rng.choice(len(chosen), size=min(per_bin, len(chosen)), replace=False)
        out[(low, high)] = [chosen[i] for i in sorted(picks)]
    return out


def bench(args) -> None:
    t0 = time.perf_counter()
    from acnn_mpi.csp import spacegroups
    from acnn_mpi.csp.compositions import enumerate_compositions
    from acnn_mpi.csp.generation import StructureGenerator
    from acnn_mpi.csp.wyckoff import group_table

    import_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    for number in range(1, 231):
        group_table(number)
    tables_time = time.perf_counter() - t0

    space = enumerate_compositions(["Mg", "Ca", "H"], max_atoms_per_formula=102, max_atoms_per_cell=80,
                                   per_element_bounds={"Mg": (0, 3), "Ca": (0, 3)},
                                   ratio_bounds=[(["H"], ["Mg", "Ca"], 16)])
    print(f"machine: {machine()}")
    print(f"space: {len(space)} compositions, {space.n_cells} cells of ≤ 80 atoms")
    print(f"process-cold, once per rank: import {import_time:.2f} s, Wyckoff arrays of all 230 groups "
          f"{tables_time:.2f} s")
    rng = np.random.default_rng(args.seed)
    rows = []
    print(f"\n{'atoms/cell':>10} {'cells':>5} {'groups':>6} {'cold ms':>8} {'warm ms/str':>11} "
          f"{'str/s/core':>10} {'attempts/str':>12} {'missing':>7}")
    for (low, high), cells in cells_by_bin(space, rng, args.per_bin).items():
        cold, warm, attempts, made, missing, groups, atoms = [], [], 0, 0, 0, [], []
        for composition, units in cells:
            counts = composition.cell_counts(units)
            spacegroups.clear_caches()
            t0 = time.perf_counter()
            generator = StructureGenerator(counts, min_distances=D_MGCAH, atomic_volumes=V_MGCAH,
                                           seed=int(rng.integers(2**31)))
            first = generator.next_structure()
            cold.append(time.perf_counter() - t0)
            groups.append(len(generator.space_groups))
            t0 = time.perf_counter()
            batch = list(generator.stream(args.structures))
            warm.append((time.perf_counter() - t0) / max(1, args.structures))
            attempts += generator.stats.attempts
            made += generator.stats.successes
            missing += generator.stats.missing
            atoms.append(sum(counts.values()))
            assert first is None or len(first) == atoms[-1]
            del batch
        mean_warm = statistics.mean(warm)
        rows.append((low, high, statistics.mean(atoms), mean_warm))
        print(f"{low:>4}-{high:<5} {len(cells):>5} {statistics.mean(groups):>6.0f} "
              f"{1000 * statistics.mean(cold):>8.1f} {1000 * mean_warm:>11.1f} {1 / mean_warm:>10.1f} "
              f"{attempts / max(1, made):>12.2f} {missing:>7}")
    overall = statistics.mean(r[3] for r in rows)
    print(f"\nmean over bins: {1000 * overall:.1f} ms per structure ({1 / overall:.1f} structures/s/core); "
          "paper's CSP throughput 474 relaxed structures per core-hour = 7.6 s per structure, "
          f"so generation is {100 * overall / 7.6:.1f} % of that budget")
    if args.compare_pyxtal:
        compare_pyxtal(args)


def compare_pyxtal(args) -> None:
    """pyxtal's random_crystal (its own placement) at the same volume and distances."""
    import warnings

    from pyxtal.crystal import random_crystal
    from pyxtal.tolerance import Tol_matrix

    from acnn_mpi.csp.generation import generate_structures

    tm = Tol_matrix(prototype="atomic")
    for key, d in D_MGCAH.items():
        tm.set_tol(*key.split("-"), d)
    rng = np.random.default_rng(args.seed)
    print("\npyxtal random_crystal vs acnn_mpi, same group draw, volume and d_min (s per structure):")
    for counts in ({"Mg": 1, "H": 2}, {"Ca": 1, "H": 6}, {"Mg": 1, "Ca": 1, "H": 12}):
        from acnn_mpi.csp.spacegroups import compatible_space_groups

        groups = compatible_space_groups(list(counts.values()))
        base = sum(n * V_MGCAH[s] for s, n in counts.items())
        species, numbers = list(counts), list(counts.values())

        class FixedVolume(random_crystal):
            def set_volume(self):
                self.volume = self._target

        made, tries, t0 = 0, 0, time.perf_counter()
        while made < args.pyxtal_structures and time.perf_counter() - t0 < args.pyxtal_budget:
            tries += 1
            FixedVolume._target = rng.uniform(0.8, 1.2) * base
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    crystal = FixedVolume(dim=3, group=int(rng.choice(groups)), species=species,
                                          numIons=numbers, tm=tm, random_state=int(rng.integers(2**31)))
                    made += bool(crystal.valid)
                except (RuntimeError, ValueError):
                    pass
        pyxtal_time = (time.perf_counter() - t0) / max(1, made)
        t0 = time.perf_counter()
        generate_structures(counts, 10, min_distances=D_MGCAH, atomic_volumes=V_MGCAH, seed=1)
        ours = (time.perf_counter() - t0) / 10
        formula = "".join(s if n == 1 else f"{s}{n}" for s, n in counts.items())
        print(f"  {formula:10s} pyxtal {pyxtal_time:8.3f} ({made} made in {tries} tries)   "
              f"acnn_mpi {ours:8.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-bin", type=int, default=6, help="cells sampled per atoms-per-cell bin")
    parser.add_argument("--structures", type=int, default=5, help="warm structures per cell")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare-pyxtal", action="store_true")
    parser.add_argument("--pyxtal-structures", type=int, default=3)
    parser.add_argument("--pyxtal-budget", type=float, default=60.0, help="seconds per composition")
    bench(parser.parse_args())


if __name__ == "__main__":
    main()
