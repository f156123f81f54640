"""Benchmark: dedup of 10⁵ and 10⁶ relaxed structures (synthetic, realistic clusters).

The synthetic campaign: ``--compositions`` compositions (the paper's Mg-Ca-H search had 827);
one distinct minimum per ``--visits`` structures, spread over the compositions; each minimum has
an enthalpy above its composition's ground state drawn from an exponential (mean 0.3 eV/atom)
and is found a Zipf number of times (low minima more often, as in random searches). Fingerprints
are unit vectors of dimension ``--dim`` (360 = a ternary with the default 6 Å / 0.1 Å bins);
minima of one composition lie 0.05-0.3 apart in cosine distance, like real polymorphs; a
duplicate differs from its minimum by ~10⁻⁶ (converged relaxations) or, for 10 % of them,
by ~3·10⁻⁴ (loosely converged: these go to the structure matcher). Enthalpies carry 0.5 meV/atom
of noise. The matcher is replaced by the ground truth and counted; its real cost per call is
measured separately on two 24-atom cells with pymatgen's StructureMatcher.

Prints, per size: seconds, structures per second, fingerprint comparisons per structure, matcher
calls, errors against the ground truth; then the log-log slope of time against size.

    python scripts/bench_dedup.py                 # 10⁵ and 10⁶
    python scripts/bench_dedup.py --sizes 1e4 1e5  # quicker
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from acnn_mpi.csp.dedup import deduplicate


def synthetic(n: int, n_comp: int, dim: int, visits: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_min = max(n_comp, int(n / visits))
    comp_of_min = rng.integers(0, n_comp, n_min)
    centre = rng.normal(size=(n_comp, dim))
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    spread = rng.uniform(0.35, 0.9, n_min)[:, None]
    base = rng.normal(size=(n_min, dim))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    base = centre[comp_of_min] + spread * base
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    base = base.astype(np.float32)
    excess = rng.exponential(0.3, n_min)  # eV/atom above the composition's ground state
    h_min = rng.normal(-2.0, 0.5, n_comp)[comp_of_min] + excess
    # visits: Zipf in the rank of the excess enthalpy (low minima are found more often)
    rank = np.argsort(np.argsort(excess))
    weight = 1.0 / (1.0 + rank) ** 0.8
    minimum = rng.choice(n_min, size=n, p=weight / weight.sum())
    minimum[:n_min] = np.arange(n_min)  # every minimum found at least once
    rng.shuffle(minimum)
    fp = np.empty((n, dim), np.float32)
    chunk = 1 << 16
    for s in range(0, n, chunk):
        m = minimum[s:s + chunk]
        loose = rng.random(len(m)) < 0.1
        # a perturbation of norm ε moves the cosine distance by ε²/2
        scale = np.where(loose, 0.025, 1.4e-3)[:, None]
        block = base[m] + (scale * rng.normal(size=(len(m), dim)) / np.sqrt(dim)).astype(np.float32)
        fp[s:s + chunk] = block / np.linalg.norm(block, axis=1, keepdims=True)
    h = h_min[minimum] + rng.normal(0, 5e-4, n)
    return comp_of_min[minimum], h, fp, minimum


class TruthMatcher:
    """Stands in for StructureMatcher: the 'structures' are minimum labels."""

    def __init__(self):
        self.calls = 0

    def fit(self, a, b):
        self.calls += 1
        return a == b


def matcher_cost(repeats: int = 20) -> float:
    """Seconds per StructureMatcher.fit on two 24-atom cells of the same crystal."""
    from ase.build import bulk, make_supercell

    from acnn_mpi.csp.dedup import _to_pymatgen, default_matcher

    a = bulk("MgO", "rocksalt", a=4.2, cubic=True).repeat((3, 1, 1))
    b = make_supercell(bulk("MgO", "rocksalt", a=4.2), [[1, 1, 0], [0, 1, 1], [3, 0, 3]])
    b.positions += 0.3
    s1, s2 = _to_pymatgen(a), _to_pymatgen(b)
    matcher = default_matcher()
    assert matcher.fit(s1, s2)
    start = time.perf_counter()
    for _ in range(repeats):
        matcher.fit(s1, s2)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6])
    parser.add_argument("--compositions", type=int, default=827)
    parser.add_argument("--dim", type=int, default=360)
    parser.add_argument("--visits", type=float, default=5.0, help="structures per distinct minimum")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
          f"Python {platform.python_version()}, numpy {np.__version__}")
    print(f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (wall > CPU time when "
          "other processes share the cores)")
    print(f"synthetic: {args.compositions} compositions, D = {args.dim}, one minimum per "
          f"{args.visits:g} structures; window 5 meV/atom, tolerance 0.01, certain 1e-4")
    sizes, times = [], []
    for size in args.sizes:
        n = int(size)
        keys, h, fp, minimum = synthetic(n, args.compositions, args.dim, args.visits)
        matcher = TruthMatcher()
        start, cpu = time.perf_counter(), time.process_time()
        result = deduplicate(keys, h, fp, load_structure=lambda i: int(minimum[i]), matcher=matcher)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        truth = len(np.unique(minimum))
        wrong = int((minimum[result.representative] != minimum).sum())
        print(f"n = {n:>9,}: {seconds:7.2f} s wall, {cpu:6.2f} s CPU  {n / cpu:>9,.0f} structures/CPU s  "
              f"{result.fingerprint_comparisons / n:5.2f} comparisons/structure  "
              f"{result.matcher_calls:>8,} matcher calls  distinct {result.n_unique:,} "
              f"(truth {truth:,}), {wrong} merged wrongly")
        sizes.append(n)
        times.append(cpu)
        del keys, h, fp, minimum
    if len(sizes) > 1:
        slope = np.polyfit(np.log(sizes), np.log(times), 1)[0]
        print(f"scaling exponent (log-log slope of CPU time against n): {slope:.2f}")
    cost = matcher_cost()
    print(f"StructureMatcher.fit, 24-atom cells: {1000 * cost:.1f} ms per call, so the matcher "
          f"calls above add about {cost * result.matcher_calls / 3600:.2f} h of CPU for the largest "
          f"n (compositions are independent: shard them over ranks)")


if __name__ == "__main__":
    main()
