"""Hold out whole trajectories: a validation split for accuracy screens that a random split of MD
snapshots does not give.

Frames with the same cell and atom count whose minimum-image RMSD of the positions is below
``--link`` Å (default 1.0) are linked; a connected component is one trajectory (or one isolated
frame). Components are drawn in a seeded random order and held out until ``--fraction`` of the
frames are. Writes OUT_train.xyz and OUT_valid.xyz and prints the held-out frames per ``group``.

    python scripts/split_by_trajectory.py ../shared/data/mlearn/Si_training.xyz --out build/Si_traj
    python scripts/bench_accuracy.py --train build/Si_traj_train.xyz --test build/Si_traj_valid.xyz \\
        --name Si_traj --steps 15000 --set training.validate_every=2500

On mlearn Si (seed 0) this holds out 11 of the 36 liquid-like AIMD frames, 10 Vacancy and 22
Elastic frames; docs/training.md (round 8) compares it with the random split. ``--hold-group
Surface=3`` also holds out 3 whole trajectories of that group (mlearn: 3 surface orientations,
one frame each), to screen how a setting extrapolates to unseen surfaces.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

import numpy as np
from ase.io import read, write


def rmsd(a, b) -> float:
    """Minimum-image RMSD (Å) of the positions of two frames with the same cell; inf otherwise."""
    if len(a) != len(b) or not np.allclose(a.cell[:], b.cell[:], atol=1e-3):
        return float("inf")
    d = a.get_scaled_positions() - b.get_scaled_positions()
    d -= np.round(d)
    return float(np.sqrt(((d @ a.cell[:]) ** 2).sum(1).mean()))


def trajectories(frames, link_a: float) -> list[list[int]]:
    """Connected components (ascending frame indices) of the 'RMSD < link_a' graph."""
    parent = list(range(len(frames)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(frames)):
        for j in range(i):
            if rmsd(frames[i], frames[j]) < link_a:
                parent[root(i)] = root(j)
    components: dict[int, list[int]] = {}
    for i in range(len(frames)):
        components.setdefault(root(i), []).append(i)
    return sorted(components.values())


def held_out(components: list[list[int]], n_frames: int, fraction: float, seed: int) -> list[int]:
    """Frame indices of whole components, drawn in a seeded order until ≥ fraction · n_frames."""
    valid: list[int] = []
    for k in np.random.default_rng(seed).permutation(len(components)):
        if len(valid) >= fraction * n_frames:
            break
        valid += components[k]
    return sorted(valid)


def held_out_of_group(components: list[list[int]], groups: list[str], group: str, count: int,
                      seed: int, taken: set[int]) -> list[int]:
    """Frame indices of ``count`` whole components whose frames are all of ``group``, drawn in a
    seeded order among those not in ``taken``; ValueError if there are fewer."""
    pool = [c for c in components if all(groups[i] == group for i in c) and not taken & set(c)]
    if len(pool) < count:
        raise ValueError(f"--hold-group {group}={count}: the data have {len(pool)} trajectories of "
                         f"group {group!r} left to hold out; ask for at most that many")
    order = np.random.default_rng(seed).permutation(len(pool))[:count]
    return sorted(i for k in order for i in pool[k])


def parse_hold_group(text: str) -> tuple[str, int]:
    """'Surface=3' -> ('Surface', 3); ValueError naming the option otherwise."""
    group, _, count = text.partition("=")
    if not group or not count.isdigit() or int(count) < 1:
        raise ValueError(f"--hold-group {text}: write GROUP=N with N ≥ 1, e.g. Surface=3")
    return group, int(count)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("frames", help="labelled extxyz file")
    p.add_argument("--out", required=True, help="prefix of OUT_train.xyz and OUT_valid.xyz")
    p.add_argument("--fraction", type=float, default=0.2)
    p.add_argument("--link", type=float, default=1.0, help="RMSD (Å) below which frames are linked")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hold-group", action="append", default=[], metavar="GROUP=N",
                   help="also hold out N whole trajectories of GROUP (frames' info['group'])")
    args = p.parse_args(argv)
    if not 0 < args.fraction < 1:
        p.exit(2, f"error: --fraction must be between 0 and 1, got {args.fraction}\n")
    try:
        extra = [parse_hold_group(text) for text in args.hold_group]
    except ValueError as error:
        p.exit(2, f"error: {error}\n")
    frames = read(args.frames, ":")
    components = trajectories(frames, args.link)
    chosen = set(held_out(components, len(frames), args.fraction, args.seed))
    groups = [str(f.info.get("group", "-")) for f in frames]
    for group, count in extra:
        try:
            chosen |= set(held_out_of_group(components, groups, group, count, args.seed, chosen))
        except ValueError as error:
            p.exit(2, f"error: {error}\n")
    valid = sorted(chosen)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write(f"{args.out}_train.xyz", [f for i, f in enumerate(frames) if i not in chosen])
    write(f"{args.out}_valid.xyz", [frames[i] for i in valid])
    counts = collections.Counter(groups[i] for i in valid)
    print(f"{len(components)} trajectories in {len(frames)} frames (largest {max(map(len, components))}); "
          f"held out {len(valid)}: " + ", ".join(f"{g} {n}" for g, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
