"""Bonding and distortion of the surface frames of labelled splits, sorted by their DFT cost.

    python scripts/surface_geometry.py ../shared/data/mlearn/Ge_training.xyz \
        ../shared/data/mlearn/Ge_test.xyz [--group Surface] [--bond-cutoff 2.9]

For every frame of ``--group`` (extxyz ``info['group']``) in each file, prints the label energy
above the lowest-energy frame per atom of ``--bulk-group`` (the first file's), divided by the
missing bonds (Σ over atoms of 4 − coordination; eV per missing bond, for four-fold elements such
as Si and Ge), the three-fold neighbours of a three-fold atom on average (dangling bonds that
pair, as in dimers and π-bonded chains), the std of the bond lengths (Å) and the RMS deviation
of the four-fold atoms' bond angles from the tetrahedral 109.47° (degrees): what round 13 of
docs/training.md compares the Ge test surface with.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TETRAHEDRAL_DEG = 109.4712


@dataclass(frozen=True)
class SurfaceGeometry:
    source: str
    n_atoms: int
    n_threefold: int
    ev_per_missing_bond: float
    threefold_neighbours: float
    bond_length_std_a: float
    angle_rms_deg: float
    mev_per_atom_above_bulk: float


def surface_geometry(atoms, e_bulk_ev_per_atom: float, cutoff_a: float, source: str) -> SurfaceGeometry:
    """One frame's bonding within ``cutoff_a`` Å and its label energy above ``e_bulk_ev_per_atom``."""
    from ase.neighborlist import neighbor_list

    i, j, d, vec = neighbor_list("ijdD", atoms, cutoff_a)
    coordination = np.bincount(i, minlength=len(atoms))
    threefold = coordination == 3
    pair_bonds = np.count_nonzero(threefold[i] & threefold[j]) / 2
    missing = int((4 - coordination).sum())
    excess_ev = (atoms.get_potential_energy() / len(atoms) - e_bulk_ev_per_atom) * len(atoms)
    deviations = []
    for k in np.flatnonzero(coordination == 4):
        u = vec[i == k] / d[i == k, None]
        cos = np.clip((u @ u.T)[np.triu_indices(4, 1)], -1.0, 1.0)
        deviations.append(np.degrees(np.arccos(cos)) - TETRAHEDRAL_DEG)
    angles = np.concatenate(deviations) if deviations else np.zeros(1)
    return SurfaceGeometry(
        source=source, n_atoms=len(atoms), n_threefold=int(threefold.sum()),
        ev_per_missing_bond=excess_ev / missing if missing > 0 else float("nan"),
        threefold_neighbours=2 * pair_bonds / threefold.sum() if threefold.any() else 0.0,
        bond_length_std_a=float(d.std()), angle_rms_deg=float(np.sqrt(np.mean(angles**2))),
        mev_per_atom_above_bulk=1000 * excess_ev / len(atoms))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="labelled extxyz files (the first is the training split)")
    parser.add_argument("--group", default="Surface", help="group of the frames to describe")
    parser.add_argument("--bulk-group", default="Elastic", help="group whose lowest energy per atom "
                        "(in the first file) is the zero")
    parser.add_argument("--bond-cutoff", type=float, default=2.9, help="bond length cutoff, Å")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from ase.io import read

    for name in args.files:
        if not Path(name).is_file():
            print(f"error: {name} not found: give labelled extxyz files", file=sys.stderr)
            return 2
    splits = {name: read(name, ":") for name in args.files}
    bulk = [a for a in splits[args.files[0]] if a.info.get("group") == args.bulk_group]
    if not bulk:
        print(f"error: --bulk-group {args.bulk_group}: no such frames in {args.files[0]}", file=sys.stderr)
        return 2
    e_bulk = min(a.get_potential_energy() / len(a) for a in bulk)
    rows = [surface_geometry(a, e_bulk, args.bond_cutoff, Path(name).stem)
            for name, frames in splits.items() for a in frames if a.info.get("group") == args.group]
    print("source           atoms  3-fold  eV/missing bond  3-fold nbrs of 3-fold  bond std (Å)  "
          "angle RMS (°)  meV/atom above bulk")
    for r in sorted(rows, key=lambda r: r.ev_per_missing_bond):
        print(f"{r.source:16s} {r.n_atoms:5d} {r.n_threefold:7d} {r.ev_per_missing_bond:16.3f} "
              f"{r.threefold_neighbours:22.2f} {r.bond_length_std_a:13.3f} {r.angle_rms_deg:14.1f} "
              f"{r.mev_per_atom_above_bulk:20.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
