"""The pressures of a campaign: one view per pressure, and the comparison of their hulls.

Labels (E, F, σ) do not depend on the pressure, so one label store and one model serve every
pressure: the label hull at P is E + PV of the same frames. What does depend on P (relaxations,
selection, hulls, final relaxations) is done per :class:`PressureView`: the configuration at that
pressure (``config.pressure`` a number) and the paths of its ``P<p>`` folders. A campaign of one
pressure has one view, with today's layout (no ``P<p>`` folders) and ids.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from .layout import CampaignPaths
from .state import pressure_key

log = logging.getLogger(__name__)

#: files of the pressure comparison, in ``final/``
SUMMARY_CSV, SUMMARY_PNG = "enthalpy_vs_pressure.csv", "enthalpy_vs_pressure.png"


@dataclass(frozen=True)
class PressureView:
    """One pressure of a campaign: its index j (ids and seeds of pressure j are its own), the
    configuration at it, and its paths."""

    index: int
    pressure_gpa: float
    config: object          # CampaignConfig with ``pressure`` = pressure_gpa
    paths: CampaignPaths

    @property
    def key(self) -> str:
        return pressure_key(self.pressure_gpa)


def pressure_views(config, paths: CampaignPaths) -> list[PressureView]:
    """A view per pressure, in increasing order; one, with the campaign's own paths, for a single one."""
    several = config.several_pressures
    return [PressureView(index=j, pressure_gpa=p, config=config.at_pressure(p),
                         paths=paths.at_pressure(p if several else None))
            for j, p in enumerate(config.pressures_gpa)]


def pressure_series(hulls: dict[float, dict]) -> list[dict]:
    """Rows (formula, pressure_gpa, formation_enthalpy_meV, e_hull_meV, stable, space_group,
    structure_id) of every compound stable at one pressure at least, at every pressure whose
    hull has it (the elements, 0 by definition, are left out). ``hulls``: {pressure GPa: the
    content of that pressure's hull.json}."""
    from ..elements import parse_formula

    stable = {p["formula"] for hull in hulls.values() for p in hull.get("stable", [])
              if len(parse_formula(p["formula"], "hull.json")) > 1}
    rows = []
    for pressure in sorted(hulls):
        hull = hulls[pressure]
        groups = {p["structure_id"]: p.get("space_group", "") for p in hull.get("stable", [])}
        stable_here = {p["formula"] for p in hull.get("stable", [])}
        for entry in hull.get("compositions", []):
            if entry["formula"] in stable:
                rows.append({"formula": entry["formula"], "pressure_gpa": float(pressure),
                             "formation_enthalpy_meV": float(entry["formation_enthalpy_meV"]),
                             "e_hull_meV": float(entry["e_hull_meV"]),
                             "stable": entry["formula"] in stable_here,
                             "space_group": groups.get(entry["structure_id"], ""),
                             "structure_id": int(entry["structure_id"])})
    return rows


def write_pressure_summary(directory: Path, hulls: dict[float, dict], title: str) -> list[dict]:
    """``directory/enthalpy_vs_pressure.csv`` (:func:`pressure_series`) and its plot; the rows."""
    rows = pressure_series(hulls)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (SUMMARY_CSV + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["formula", "pressure_gpa", "formation_enthalpy_meV",
                                                    "e_hull_meV", "stable", "space_group", "structure_id"])
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(directory / SUMMARY_CSV)
    try:
        from ..plots.pressure import plot_enthalpy_vs_pressure

        plot_enthalpy_vs_pressure(rows, directory / SUMMARY_PNG, title=title)
    except Exception as error:  # noqa: BLE001 - a plot must never stop a campaign
        log.warning("enthalpy-pressure plot not written: %s", error)
    return rows
