"""Element data in one place: symbol checks, covalent radii, default atomic volumes and distances.

Defaults come from ``ase.data`` (Cordero covalent radii). They are starting points for systems the
user has not characterised; the paper's campaigns give their own values (Eqs. 17-20), which always
take precedence. Lengths in Å, volumes in Å³.
"""

from __future__ import annotations

import math
from typing import Iterable

from .errors import UserError

#: default atomic volume = this factor × the volume of a sphere of the covalent radius (Å³)
VOLUME_PER_COVALENT_SPHERE = 2.5
#: default minimum distance = this factor × (r_cov(A) + r_cov(B)) (Å)
MIN_DISTANCE_PER_COVALENT_SUM = 0.8


def is_element(symbol: object) -> bool:
    """True for a real chemical symbol such as 'Mg' (not 'X', not 'mg')."""
    from ase.data import atomic_numbers

    return isinstance(symbol, str) and symbol in atomic_numbers and symbol != "X"


def validate_symbols(symbols: Iterable[str], setting: str = "elements") -> list[str]:
    """Return ``symbols`` as a list after checking each is a known element, listed once.

    Raises :class:`UserError` naming ``setting`` otherwise.
    """
    symbols = list(symbols)
    unknown = [s for s in symbols if not is_element(s)]
    if unknown:
        raise UserError(f"{setting}: unknown element symbol(s) {', '.join(map(repr, unknown))} "
                        "(use symbols such as 'Mg', 'H', 'O')")
    repeated = sorted({s for s in symbols if symbols.count(s) > 1})
    if repeated:
        raise UserError(f"{setting}: {', '.join(repeated)} listed more than once")
    return symbols


def atomic_number(symbol: str) -> int:
    from ase.data import atomic_numbers

    return int(atomic_numbers[symbol])


def covalent_radius(symbol: str) -> float:
    """Covalent radius in Å (ase.data, Cordero et al. 2008)."""
    from ase.data import covalent_radii

    return float(covalent_radii[atomic_number(symbol)])


def default_atomic_volume(symbol: str) -> float:
    """Å³ per atom: 2.5 × (4/3)π r_cov³, rounded to 0.01 Å³ (a loose ambient-pressure guess)."""
    radius = covalent_radius(symbol)
    return round(VOLUME_PER_COVALENT_SPHERE * 4.0 / 3.0 * math.pi * radius ** 3, 2)


def default_min_distance(a: str, b: str) -> float:
    """Å: 0.8 × (r_cov(a) + r_cov(b)), rounded to 0.001 Å."""
    return round(MIN_DISTANCE_PER_COVALENT_SUM * (covalent_radius(a) + covalent_radius(b)), 3)


def parse_formula(formula: str, setting: str = "formula") -> dict[str, int]:
    """Counts of each element in a formula such as 'P2O5', 'Mg(OH)2' or 'MgCa2H12'.

    Raises :class:`UserError` naming ``setting`` for text that is not a formula of known elements.
    """
    from ase.formula import Formula

    text = str(formula).strip()
    try:
        counts = Formula(text).count()
    except Exception:  # ase raises ValueError or a parser error depending on the text
        counts = None
    if not text or not counts:
        raise UserError(f"{setting}: {formula!r} is not a chemical formula (write e.g. 'P2O5')")
    validate_symbols(counts, f"{setting} {formula!r}")
    if any(n <= 0 for n in counts.values()):
        raise UserError(f"{setting}: {formula!r} has a non-positive count")
    return {symbol: int(n) for symbol, n in counts.items()}


def element_counts(numbers, offsets, elements):
    """(B, n) atoms of each of ``elements`` per structure, from flat atomic ``numbers`` (N,) and
    ``offsets`` (B + 1,) of each structure's first atom (N at the end)."""
    import numpy as np

    numbers = np.asarray(numbers, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    column = np.full(max(int(numbers.max(initial=0)), max(atomic_number(e) for e in elements)) + 1, -1)
    for k, symbol in enumerate(elements):
        column[atomic_number(symbol)] = k
    if len(numbers) and (column[numbers] < 0).any():
        raise ValueError(f"structures hold elements outside {list(elements)}")
    rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    counts = np.zeros((len(offsets) - 1, len(elements)), dtype=np.int64)
    np.add.at(counts, (rows, column[numbers]), 1)
    return counts
