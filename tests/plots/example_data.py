"""Small real data sets for hull tests and the example figures: decorated fcc/bcc/hcp alloys
under ASE's EMT potential, volume relaxed (atoms held on their lattice sites).

``python -m tests.plots.example_data docs/images`` redraws the figures of docs/processing.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

#: EMT fcc lattice constants, Å (ase.calculators.emt parameters give these minima)
LATTICE = {"Ni": 3.52, "Cu": 3.60, "Pd": 3.89, "Ag": 4.09, "Pt": 3.92, "Au": 4.08, "Al": 4.05}

#: fcc supercell matrices (primitive cell) with 1 to 8 sites
SUPERCELLS = [np.eye(3, dtype=int), np.diag([1, 1, 2]), np.diag([1, 2, 2]),
              np.array([[1, 1, 0], [0, 1, 1], [0, 0, 3]]), np.diag([2, 2, 2]), np.diag([1, 1, 4]),
              np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]]),  # conventional cubic cell, 4 sites
              np.array([[2, 0, 0], [0, 1, 1], [0, 0, 2]])]


def _relax_volume(atoms):
    """Scale the cell to the minimum of a parabola through three EMT energies; returns eV."""
    cell = atoms.cell.array.copy()

    def energy(scale):
        atoms.set_cell(cell * scale, scale_atoms=True)
        return atoms.get_potential_energy()

    scales = np.array([0.97, 1.0, 1.03])
    c2, c1, _ = np.polyfit(scales, [energy(x) for x in scales], 2)
    best = float(np.clip(-c1 / (2 * c2), 0.9, 1.1)) if c2 > 0 else 1.0
    return float(energy(best))


def ordered_cu_pt():
    """fcc Cu and Pt, L1_2 Cu3Pt and CuPt3, L1_0 CuPt (conventional cubic cells), EMT, P = 0."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    a = float(np.mean([LATTICE["Cu"], LATTICE["Pt"]]))
    out = []
    for symbols in ("CuCuCuCu", "PtPtPtPt", "PtCuCuCu", "CuPtPtPt", "CuCuPtPt"):
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        atoms.symbols = symbols
        atoms.calc = EMT()
        atoms.info.update(enthalpy=_relax_volume(atoms), pressure=0.0, structure_id=len(out))
        atoms.calc = None
        out.append(atoms)
    return out


def alloy_structures(elements, n_per_cell=6, seed=0, lattices=("fcc", "bcc", "hcp")):
    """Decorated lattices of ``elements`` with EMT energies in ``info['enthalpy']`` (P = 0)."""
    from ase.build import bulk, make_supercell
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    a_mean = float(np.mean([LATTICE[s] for s in elements]))
    structures = []
    for lattice in lattices:
        if lattice == "fcc":
            parent = bulk("Cu", "fcc", a=a_mean)
            cells = [make_supercell(parent, m) for m in SUPERCELLS]
        elif lattice == "bcc":
            parent = bulk("Cu", "bcc", a=a_mean / 2 ** (1 / 3) * 1.0)
            cells = [parent.repeat(r) for r in [(1, 1, 1), (1, 1, 2), (2, 2, 1), (2, 2, 2)]]
        else:
            parent = bulk("Cu", "hcp", a=a_mean / np.sqrt(2), c=a_mean / np.sqrt(2) * np.sqrt(8 / 3))
            cells = [parent.repeat(r) for r in [(1, 1, 1), (1, 1, 2), (2, 1, 1), (2, 2, 1)]]
        for cell in cells:
            n = len(cell)
            # pure elements once, then random decorations
            decorations = [[s] * n for s in elements]
            for _ in range(n_per_cell if lattice == "fcc" else max(1, n_per_cell // 3)):
                decorations.append(list(rng.choice(elements, size=n)))
            for symbols in decorations:
                atoms = cell.copy()
                atoms.set_chemical_symbols(symbols)
                atoms.calc = EMT()
                h = _relax_volume(atoms)
                atoms.calc = None
                atoms.info["enthalpy"] = h
                atoms.info["pressure"] = 0.0
                structures.append(atoms)
    for k, atoms in enumerate(structures):
        atoms.info["structure_id"] = k
    return structures


def hull_of(structures, elements):
    from acnn_mpi.csp.hull import convex_hull

    counts = np.array([[a.get_chemical_symbols().count(s) for s in elements] for a in structures])
    h = np.array([a.info["enthalpy"] for a in structures])
    return convex_hull(counts, h, elements, pressure=0.0)


def space_group_labels(result, structures, symprec=0.1):
    from acnn_mpi.csp.symmetry import space_group

    return {int(r): space_group(structures[r], symprec)[0] for r in result.stable}


def draw_examples(directory) -> list[Path]:
    """The figures shown in docs/processing.md."""
    from acnn_mpi.plots.hull import (plot_binary_hull, plot_pseudo_ternary, plot_quaternary_hull,
                                     plot_ternary_hull)
    from acnn_mpi.plots.learning import plot_iteration_summary, plot_learning_curves, \
        plot_structures_per_iteration

    directory = Path(directory)
    files = []
    for elements, plotter, name, kwargs in (
            (["Cu", "Pt"], plot_binary_hull, "hull_binary", {}),
            (["Cu", "Pd", "Pt"], plot_ternary_hull, "hull_ternary", {}),
            (["Ni", "Cu", "Pd", "Pt"], plot_quaternary_hull, "hull_quaternary", {})):
        structures = alloy_structures(elements, n_per_cell=10 if len(elements) == 2 else 16)
        result = hull_of(structures, elements)
        labels = space_group_labels(result, structures)
        files += plotter(result, directory / name, space_groups=labels, ehull_max=0.15, **kwargs)[1]
        if len(elements) == 4:
            files += plot_pseudo_ternary(result, ["CuPt", "Ni", "Pd"], directory / "hull_section",
                                         space_groups=labels, ehull_max=0.15)[1]
    it = np.arange(1, 20)
    rng = np.random.default_rng(3)
    energy = 180 * np.exp(-it / 5) + 40 + rng.normal(0, 4, it.size)
    force = 700 * np.exp(-it / 6) + 280 + rng.normal(0, 12, it.size)
    stress = 45 * np.exp(-it / 5) + 13 + rng.normal(0, 1.5, it.size)
    counts = {"converged": (3e5 * (1 - np.exp(-it / 4))).astype(int),
              "not converged": (6e4 * np.exp(-it / 6)).astype(int) + 2000,
              "unphysical": np.full(it.size, 1000)}
    files += plot_learning_curves(it, energy, force, stress, directory / "learning_curves")[1]
    files += plot_structures_per_iteration(it, counts, directory / "structures_per_iteration")[1]
    files += plot_iteration_summary(it, energy, force, stress, counts,
                                    directory / "iteration_summary")[1]
    return files


if __name__ == "__main__":
    for path in draw_examples(sys.argv[1] if len(sys.argv) > 1 else "docs/images"):
        print(path, path.stat().st_size)
