"""A fake VASP for tests: labels the POSCAR with EMT and writes an OUTCAR that ASE reads.

``python fake_vasp.py ok|unconverged``: one SCF (``unconverged``: NELM electronic steps);
``python fake_vasp.py relax``: reads NSW, EDIFFG and PSTRESS from the INCAR (IBRION=2, ISIF=3
required), relaxes ions and cell with ASE's BFGS at that pressure and writes one block per step.
"""

import re
import sys

import numpy as np
from ase.calculators.emt import EMT
from ase.io import read
from ase.units import GPa

NELM = 40


def header(atoms) -> list:
    species = list(dict.fromkeys(atoms.get_chemical_symbols()))
    counts = [atoms.get_chemical_symbols().count(x) for x in species]
    lines = [f" POTCAR:    PAW_PBE {sp} 22Jun2005" for sp in species + species]
    lines.append(f"   NELM   =     {NELM};   NELMIN=  2; NELMDL= -5     # of ELM steps")
    lines.append("   ions per type =  " + "  ".join(map(str, counts)))
    return lines


def ionic_step(atoms, electronic_steps: int) -> list:
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)
    lines = [f"----------------------------------------- Iteration      1({it:4d})  ------------------"
             for it in range(1, electronic_steps + 1)]
    lines.append(" direct lattice vectors                 reciprocal lattice vectors")
    for row, rec in zip(atoms.cell.array, np.linalg.inv(atoms.cell.array).T):
        lines.append("  " + " ".join(f"{x:13.9f}" for x in row) + "  " + " ".join(f"{x:13.9f}" for x in rec))
    kb = -s / GPa * 10.0
    lines.append("  in kB  " + " ".join(f"{x:12.5f}" for x in
                                         (kb[0, 0], kb[1, 1], kb[2, 2], kb[0, 1], kb[1, 2], kb[2, 0])))
    lines.append(" POSITION                                       TOTAL-FORCE (eV/Angst)")
    lines.append(" " + "-" * 83)
    for p, ff in zip(atoms.positions, f):
        lines.append("  " + " ".join(f"{x:12.6f}" for x in p) + "    " + " ".join(f"{x:13.6f}" for x in ff))
    lines.append(" " + "-" * 83)
    lines += ["", "  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)", "  " + "-" * 51,
              f"  free  energy   TOTEN  =      {e:14.8f} eV", "",
              f"  energy  without entropy=     {e:14.8f}  energy(sigma->0) =     {e:14.8f}"]
    return lines


def relax(atoms, lines: list) -> None:
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    incar = open("INCAR").read()

    def value(key):
        return float(re.search(key + r"\s*=\s*(\S+)", incar).group(1))

    assert value("IBRION") == 2 and value("ISIF") == 3
    nsw, fmax, pstress_gpa = int(value("NSW")), -value("EDIFFG"), value("PSTRESS") / 10
    optimizer = BFGS(FrechetCellFilter(atoms, scalar_pressure=pstress_gpa * GPa), logfile=None)
    optimizer.attach(lambda: lines.extend(ionic_step(atoms, 5)))
    if optimizer.run(fmax=fmax, steps=nsw - 1):
        lines.append(" reached required accuracy - stopping structural energy minimisation")


def main(mode: str) -> None:
    atoms = read("POSCAR", format="vasp")
    atoms.calc = EMT()
    lines = header(atoms)
    if mode == "relax":
        relax(atoms, lines)
    else:
        lines += ionic_step(atoms, NELM if mode == "unconverged" else 11)
    lines.append(" General timing and accounting informations for this job:")
    open("OUTCAR", "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
