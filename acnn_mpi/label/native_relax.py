"""Relaxations by the DFT code's own optimizer: VASP ``IBRION=2, ISIF=3``, Quantum ESPRESSO
``vc-relax``, CP2K ``CELL_OPT``; positions and cell at a target pressure in one run of the code.

For each code: the input settings that turn a single point into a variable-cell relaxation at
``pressure_gpa`` to ``fmax`` (eV/Å) in at most ``steps`` ionic steps, a reader of every ionic
step (structure, energy eV, forces eV/Å, stress eV/Å³ in ASE's sign: usable as labels), and the
code's own verdict on convergence.

The cell criterion matches ASE's ``FrechetCellFilter`` (what the ASE driver uses): a cell "force"
of V·|σ + p|/N, so the stress tolerance is fmax·N/V.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

#: 1 GPa in kbar (VASP PSTRESS, QE press) and in bar (CP2K)
KBAR_PER_GPA = 10.0
BAR_PER_GPA = 1.0e4


@dataclass(frozen=True)
class RelaxRequest:
    pressure_gpa: float
    fmax: float          # eV/Å
    steps: int

    def stress_tolerance_gpa(self, natoms: int, volume: float) -> float:
        """|σ + p| at which ASE's FrechetCellFilter calls the cell converged (GPa)."""
        from ..units import ev_per_a3_to_gpa

        return float(ev_per_a3_to_gpa(self.fmax * natoms / volume))


# -- VASP ------------------------------------------------------------------------------------------

def vasp_relax_parameters(parameters: dict, request: RelaxRequest) -> dict:
    """ASE ``Vasp`` keywords for a relaxation of ions and cell (conjugate gradient, ISIF=3) at the
    pressure; the stopping rule EDIFFG < 0 is VASP's max-force criterion."""
    params = dict(parameters)
    params.update(ibrion=2, isif=3, nsw=int(request.steps), ediffg=-abs(request.fmax),
                  pstress=request.pressure_gpa * KBAR_PER_GPA)
    return params


def vasp_relax_converged(text: str) -> bool:
    return "reached required accuracy" in text


# -- Quantum ESPRESSO ------------------------------------------------------------------------------

def espresso_relax_input(input_data: dict, request: RelaxRequest, natoms: int, volume: float) -> dict:
    """pw.x ``input_data`` for ``vc-relax`` (BFGS of ions and cell) at ``press``; forces in Ry/Bohr."""
    from ase.units import Bohr, Rydberg

    data = {key: dict(value or {}) for key, value in input_data.items()}
    control = data.setdefault("control", {})
    control.update(calculation="vc-relax", nstep=int(request.steps),
                   forc_conv_thr=request.fmax / (Rydberg / Bohr))
    data.setdefault("ions", {}).setdefault("ion_dynamics", "bfgs")
    cell = data.setdefault("cell", {})
    cell.setdefault("cell_dynamics", "bfgs")
    cell.setdefault("cell_dofree", "all")
    cell["press"] = request.pressure_gpa * KBAR_PER_GPA
    cell["press_conv_thr"] = request.stress_tolerance_gpa(natoms, volume) * KBAR_PER_GPA
    return data


def espresso_relax_converged(text: str) -> bool:
    return "End final coordinates" in text or "bfgs converged" in text


# -- CP2K ------------------------------------------------------------------------------------------

def cp2k_relax_keywords(request: RelaxRequest, natoms: int, volume: float) -> list[tuple[str, str]]:
    """(section path, keyword) pairs for CELL_OPT at the pressure (BFGS on positions and cell)."""
    from ase.units import Bohr, Hartree

    force_au = request.fmax / (Hartree / Bohr)
    tolerance_bar = request.stress_tolerance_gpa(natoms, volume) * BAR_PER_GPA
    return [
        ("GLOBAL", "RUN_TYPE CELL_OPT"),
        ("MOTION/CELL_OPT", "TYPE DIRECT_CELL_OPT"),
        ("MOTION/CELL_OPT", "OPTIMIZER BFGS"),
        ("MOTION/CELL_OPT", f"EXTERNAL_PRESSURE [GPa] {request.pressure_gpa:.10g}"),
        ("MOTION/CELL_OPT", f"PRESSURE_TOLERANCE [bar] {tolerance_bar:.6g}"),
        ("MOTION/CELL_OPT", f"MAX_FORCE {force_au:.6g}"),
        ("MOTION/CELL_OPT", f"RMS_FORCE {force_au:.6g}"),
        ("MOTION/CELL_OPT", f"MAX_ITER {int(request.steps)}"),
        ("MOTION/CELL_OPT", "KEEP_SYMMETRY F"),
        ("MOTION/PRINT/CELL", "_SECTION_PARAMETERS_ ON"),
        ("MOTION/PRINT/RESTART_HISTORY", "_SECTION_PARAMETERS_ OFF"),
    ]


def cp2k_relax_converged(text: str) -> bool:
    return "GEOMETRY OPTIMIZATION COMPLETED" in text


def cp2k_standard_cell(atoms):
    """``atoms`` rotated to CP2K's cell orientation (a along x, b in the xy plane), which CELL_OPT
    would otherwise impose silently: every step then comes back in the frame of the input."""
    standard, _ = atoms.cell.standard_form()
    rotated = atoms.copy()
    rotated.set_cell(standard, scale_atoms=True)
    return rotated


def read_cp2k_relaxation(directory: str, text: str, start, project: str = "cp2k"):
    """Every ionic step of a CELL_OPT as Atoms with energy, forces and stress.

    ``text``: cp2k.out (one energy/forces/stress block per force evaluation); ``start``: the input
    structure (step 0, in CP2K's cell orientation); ``<project>-pos-1.xyz`` and
    ``<project>-1.cell``: the geometry of steps 1.. with their energies, matched to the evaluations
    by energy (an evaluation without a printed geometry, e.g. inside a line search, is dropped).
    Returns (frames, evaluations).
    """
    from ase.units import Hartree

    from .cp2k import parse_cp2k_evaluations

    evaluations = parse_cp2k_evaluations(text, len(start))
    geometries = [(None, start.positions.copy(), start.cell.array.copy())]
    pos_path = os.path.join(directory, f"{project}-pos-1.xyz")
    cell_path = os.path.join(directory, f"{project}-1.cell")
    if os.path.exists(pos_path) and os.path.exists(cell_path):
        cells = np.loadtxt(cell_path, ndmin=2)[:, 2:11].reshape(-1, 3, 3)
        for (energy, positions), cell in zip(_read_xyz_frames(pos_path), cells):
            geometries.append((energy, positions, cell))
    frames, used = [], 0
    for energy_au, positions, cell in geometries:
        # the evaluation belonging to this geometry: the first one not yet used with its energy
        for index in range(used, len(evaluations)):
            if energy_au is None or abs(evaluations[index][0] / Hartree - energy_au) < 2e-9:
                used = index + 1
                frames.append(steps_frame(start, positions, cell, *evaluations[index]))
                break
    return frames, len(evaluations)


def _read_xyz_frames(path: str):
    """(energy Hartree, positions (N,3) Å) of each frame of a CP2K trajectory (.xyz)."""
    with open(path) as f:
        lines = f.read().splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        natoms = int(lines[i].split()[0])
        match = re.search(r"E\s*=\s*(\S+)", lines[i + 1])
        energy = float(match.group(1)) if match else None
        rows = [line.split()[1:4] for line in lines[i + 2:i + 2 + natoms]]
        yield energy, np.array(rows, dtype=float)
        i += 2 + natoms


def steps_frame(template, positions, cell, energy, forces, stress):
    """A copy of ``template`` at ``positions``/``cell`` carrying one step's labels (stress 3×3)."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.stress import full_3x3_to_voigt_6_stress

    atoms = template.copy()
    atoms.set_cell(cell)
    atoms.positions = positions
    results = dict(energy=energy, free_energy=energy, forces=forces)
    if stress is not None:
        results["stress"] = full_3x3_to_voigt_6_stress(stress)
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms
