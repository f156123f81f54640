"""Unit conversions, in one place.

Energies are eV, lengths Å, pressures GPa at every user-facing interface and eV/Å³ inside.
"""

#: 1 eV/Å³ expressed in GPa (CODATA 2018 e and Å).
EV_PER_A3_IN_GPA = 160.21766208


def gpa_to_ev_per_a3(pressure_gpa: float) -> float:
    """Convert a pressure from GPa to eV/Å³."""
    return pressure_gpa / EV_PER_A3_IN_GPA


def ev_per_a3_to_gpa(pressure: float) -> float:
    """Convert a pressure (or stress component) from eV/Å³ to GPa."""
    return pressure * EV_PER_A3_IN_GPA
