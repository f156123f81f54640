"""A labeller with a DFT-like energy zero, for tests: ASE's EMT plus a constant per element.

Plane-wave and Gaussian DFT codes report total energies hundreds to thousands of eV per atom below
zero, set by each element's core electrons and pseudopotential. Adding a different constant per
element to EMT gives labels of that kind with known physics: formation enthalpies, forces and
stresses are EMT's exactly, only the energy zero of every element moves. A campaign must find the
same hull with it as with plain EMT.

Use it as ``labeller: {kind: ase, calculator: tests.campaign.shifted_labeller.ShiftedEMT,
parameters: {shifts: {Cu: -1480.25, Pt: 362.5}}}`` (run from the repository root), or write a
campaign file with :func:`shifted_campaign`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from ase.calculators.emt import EMT

#: eV/atom added per element: of both signs, hundreds of eV, different per element
DFT_LIKE_SHIFTS = {"Cu": -1480.25, "Pt": 362.5}

CALCULATOR = "tests.campaign.shifted_labeller.ShiftedEMT"


class ShiftedEMT(EMT):
    """EMT with ``shifts[symbol]`` eV added per atom of each element (0 for unlisted ones).

    ``fail_pure_below``: {symbol: id}: a structure of that element alone whose
    ``info['structure_id']`` is below ``id`` raises, as a DFT code that does not converge (the
    campaign's ids grow with the iteration, so this fails an element's labels up to an iteration).
    """

    def __init__(self, shifts: dict | None = None, fail_pure_below: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.shifts = {str(k): float(v) for k, v in (shifts or {}).items()}
        self.fail_pure_below = {str(k): int(v) for k, v in (fail_pure_below or {}).items()}

    def calculate(self, atoms=None, properties=None, system_changes=None):
        if system_changes is None:
            from ase.calculators.calculator import all_changes

            system_changes = all_changes
        symbols = set((atoms or self.atoms).get_chemical_symbols())
        if len(symbols) == 1:
            (symbol,) = symbols
            structure_id = int((atoms or self.atoms).info.get("structure_id", -1))
            if structure_id < self.fail_pure_below.get(symbol, -1):
                raise RuntimeError(f"SCF did not converge (test labeller: pure {symbol}, "
                                   f"structure {structure_id})")
        super().calculate(atoms, properties or ["energy"], system_changes)
        per_atom = np.array([self.shifts.get(s, 0.0) for s in self.atoms.get_chemical_symbols()])
        self.results["energy"] += float(per_atom.sum())
        self.results["free_energy"] = self.results.get("free_energy", 0.0) + float(per_atom.sum())
        if "energies" in self.results:
            self.results["energies"] = self.results["energies"] + per_atom


def shifted_campaign(source: Path, target: Path, shifts: dict | None = None, **changes) -> Path:
    """Copy the campaign file ``source`` to ``target`` with the labeller replaced by ShiftedEMT
    (``shifts``, default :data:`DFT_LIKE_SHIFTS`) and the top-level ``changes`` applied."""
    data = yaml.safe_load(Path(source).read_text())
    data["labeller"] = {"kind": "ase", "calculator": CALCULATOR,
                        "parameters": {"shifts": dict(DFT_LIKE_SHIFTS if shifts is None else shifts)}}
    data.update(changes)
    Path(target).write_text(yaml.safe_dump(data, sort_keys=False))
    return Path(target)
