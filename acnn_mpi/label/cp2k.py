"""CP2K: input generation (through ASE's CP2K calculator), output parsing and convergence checks.

Used by the ``cp2k`` labeller (ASE's CP2K calculator driving ``cp2k_shell`` in a child process) and
by the ``command`` labeller with ``input_format: cp2k`` (``cp2k -i {input} -o {output}`` under any
launcher). CP2K carries on after an SCF that did not converge (it prints
``*** WARNING ... SCF run NOT converged ***`` and returns numbers), so every output is scanned.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from .kpoints import kpoint_mesh
from .settings import LabellerSettings

#: Where the Debian/Ubuntu packages put basis sets and pseudopotentials.
DEBIAN_DATA_DIR = "/usr/share/cp2k"

NOT_CONVERGED = re.compile(r"SCF run NOT converged", re.IGNORECASE)
ENDED = re.compile(r"PROGRAM ENDED AT")
_ENERGY = re.compile(r"ENERGY\|\s*Total FORCE_EVAL \( \w+ \) energy\s*[\[(]a\.u\.[\])]:\s*(\S+)")
_FLOAT = r"[-+]?\d*\.?\d+(?:[EeDd][-+]?\d+)?"


def _find_section(root, path: str):
    """The subsection at ``path`` (e.g. FORCE_EVAL/DFT/KPOINTS) or None, without creating it."""
    section = root
    for part in path.upper().split("/"):
        matches = [s for s in section.subsections if s.name == part]
        if not matches:
            return None
        section = matches[0]
    return section


def _has_keyword(root, path: str, keyword: str) -> bool:
    section = _find_section(root, path)
    return section is not None and any(k.split()[0].upper() == keyword.upper()
                                       for k in section.keywords)


def cp2k_input_template(settings: LabellerSettings, atoms, *, standalone: bool,
                        relax: Optional[list] = None) -> str:
    """The user's ``inp`` plus k-points, REL_CUTOFF, smearing, (standalone) force printing and
    (``relax``: (section, keyword) pairs of native_relax.cp2k_relax_keywords) a CELL_OPT; the
    user's own keywords win, except RUN_TYPE, which a relaxation sets."""
    from ase.calculators.cp2k import parse_input

    root = parse_input(settings.inp or "")
    for path, keyword in relax or []:
        name = keyword.split()[0]
        section = _find_section(root, path)
        if name == "RUN_TYPE" and section is not None:
            section.keywords = [k for k in section.keywords if k.split()[0].upper() != "RUN_TYPE"]
        elif name == "_SECTION_PARAMETERS_" and section is not None:
            continue
        elif _has_keyword(root, path, name):
            continue
        root.add_keyword(path, keyword)
    if not _has_keyword(root, "FORCE_EVAL/DFT/MGRID", "REL_CUTOFF"):
        root.add_keyword("FORCE_EVAL/DFT/MGRID", f"REL_CUTOFF [Ry] {settings.rel_cutoff:g}")
    mesh = kpoint_mesh(atoms.cell.array, settings.kpoint_spacing, atoms.pbc)
    if settings.gamma_centered:
        # CP2K's MONKHORST-PACK meshes contain Γ only for odd counts; even ones are shifted and
        # break the cell's symmetry (CELL_OPT shears diamond to R-3m on a shifted 2×2×2 mesh)
        mesh = tuple(n + 1 if n > 1 and n % 2 == 0 else n for n in mesh)
    if mesh != (1, 1, 1) and _find_section(root, "FORCE_EVAL/DFT/KPOINTS") is None:
        root.add_keyword("FORCE_EVAL/DFT/KPOINTS", "SCHEME MONKHORST-PACK %d %d %d" % mesh)
    if settings.smearing_temperature is not None and _find_section(root, "FORCE_EVAL/DFT/SCF/SMEAR") is None:
        if not _has_keyword(root, "FORCE_EVAL/DFT/SCF", "ADDED_MOS"):
            root.add_keyword("FORCE_EVAL/DFT/SCF", f"ADDED_MOS {settings.added_mos}")
        root.add_keyword("FORCE_EVAL/DFT/SCF/SMEAR", "_SECTION_PARAMETERS_ ON")
        root.add_keyword("FORCE_EVAL/DFT/SCF/SMEAR", "METHOD FERMI_DIRAC")
        root.add_keyword("FORCE_EVAL/DFT/SCF/SMEAR",
                         f"ELECTRONIC_TEMPERATURE [K] {settings.smearing_temperature:g}")
        if _find_section(root, "FORCE_EVAL/DFT/SCF/MIXING") is None:
            root.add_keyword("FORCE_EVAL/DFT/SCF/MIXING", "METHOD BROYDEN_MIXING")
    if standalone:
        if not _has_keyword(root, "GLOBAL", "RUN_TYPE"):
            root.add_keyword("GLOBAL", "RUN_TYPE ENERGY_FORCE")
        if _find_section(root, "FORCE_EVAL/PRINT/FORCES") is None:
            root.add_keyword("FORCE_EVAL/PRINT/FORCES", "_SECTION_PARAMETERS_ ON")
    return "\n".join(root.write())


def cp2k_calculator_kwargs(settings: LabellerSettings, atoms, *, standalone: bool = False,
                           relax: Optional[list] = None) -> dict:
    """Keyword arguments of :class:`ase.calculators.cp2k.CP2K` for ``atoms`` (cutoffs in eV)."""
    from ase.units import Rydberg

    kwargs = dict(
        xc=settings.functional,
        cutoff=settings.cutoff * Rydberg,
        basis_set=settings.basis_set,
        basis_set_file=settings.basis_set_file,
        potential_file=settings.potential_file,
        pseudo_potential=settings.pseudo_potential,
        max_scf=settings.max_scf,
        stress_tensor=True,
        inp=cp2k_input_template(settings, atoms, standalone=standalone, relax=relax),
    )
    kwargs.update(settings.parameters)
    return kwargs


class _NoShell:
    """Stands in for a running cp2k_shell when ASE only generates the input text."""

    version = 7.0

    def close(self):
        pass


def generate_cp2k_input(atoms, kwargs: dict, project: str = "cp2k") -> str:
    """A complete CP2K input file for ``atoms`` from ASE CP2K keyword arguments (no CP2K needed)."""
    from ase.calculators.calculator import Parameters
    from ase.calculators.cp2k import CP2K

    calc = CP2K.__new__(CP2K)
    calc._debug = False
    calc._force_env_id = None
    calc._shell = _NoShell()
    calc.label = project
    calc.atoms = atoms.copy()
    parameters = Parameters(CP2K.default_parameters.copy())
    parameters.update(kwargs)
    calc.parameters = parameters
    return calc._generate_input() + "\n"


def check_cp2k_output(text: str, *, complete: bool = True) -> Optional[tuple[str, str]]:
    """(failure kind, reason) if the CP2K output shows a problem, else None."""
    count = len(NOT_CONVERGED.findall(text))
    if count:
        return "not_converged", f"CP2K: SCF run NOT converged ({count}×; raise max_scf or add smearing)"
    if complete and not ENDED.search(text):
        return "missing_output", "CP2K output is incomplete (no 'PROGRAM ENDED AT')"
    return None


def parse_cp2k_output(text: str, natoms: int):
    """(energy eV, forces (N,3) eV/Å or None, stress (3,3) eV/Å³ ASE sign or None) of the last
    force evaluation in a CP2K output; raises ValueError when there is no energy."""
    return parse_cp2k_evaluations(text, natoms)[-1]


def parse_cp2k_evaluations(text: str, natoms: int) -> list:
    """(energy, forces, stress) of every force evaluation of a CP2K output, in order (a
    relaxation prints one block per evaluation: energy, then forces, then stress); raises
    ValueError when there is no energy."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _ENERGY.search(line)]
    if not starts:
        raise ValueError("no 'ENERGY| Total FORCE_EVAL' line in the CP2K output")
    ends = starts[1:] + [len(lines)]
    return [_parse_evaluation(lines[a:b], natoms) for a, b in zip(starts, ends)]


def _parse_evaluation(lines: list, natoms: int):
    """One evaluation's block of output lines, from its ENERGY line to the next one."""
    from ase.units import Bohr, GPa, Hartree

    energy = float(_ENERGY.search(lines[0]).group(1)) * Hartree
    forces = None
    starts = [i for i, line in enumerate(lines) if "ATOMIC FORCES in [a.u.]" in line]
    if starts:
        rows = []
        for line in lines[starts[-1] + 1:]:
            tokens = line.split()
            if not tokens or tokens[0] == "#":
                continue
            if tokens[0] == "SUM":
                break
            rows.append([float(x) for x in tokens[3:6]])
        forces = np.array(rows) * Hartree / Bohr
    else:  # CP2K 2024+: "FORCES| Atomic forces [hartree/bohr]" then "FORCES| 1 x y z |f|"
        blocks, current = [], None
        for line in lines:
            if line.startswith(" FORCES|") or line.startswith("FORCES|"):
                tokens = line.split()[1:]
                if "Atomic forces" in line:
                    current = []
                    blocks.append(current)
                elif current is not None and tokens and tokens[0].isdigit():
                    numbers = [float(x) for x in tokens[1:] if re.fullmatch(_FLOAT, x)]
                    current.append(numbers[:3])
        if blocks and blocks[-1]:
            forces = np.array(blocks[-1]) * Hartree / Bohr
    if forces is not None and forces.shape != (natoms, 3):
        raise ValueError(f"CP2K printed forces of shape {forces.shape}, expected ({natoms}, 3)")

    stress = None
    starts = [i for i, line in enumerate(lines) if re.search(r"STRESS\|\s+Analytical stress tensor \[GPa\]", line)]
    if starts:
        rows = []
        for line in lines[starts[-1] + 2:starts[-1] + 5]:
            tokens = line.split()
            rows.append([float(x) for x in tokens[2:5]])
        # CP2K prints the pressure-sign stress in GPa; ASE's sign is the opposite (tensile > 0)
        stress = -np.array(rows) * GPa
    return energy, forces, stress
