"""Formation enthalpy against pressure: the phases of a campaign over several pressures.

One line per composition stable at one pressure at least (the rows of
:func:`acnn_mpi.campaign.pressures.pressure_series`): its best structure's formation enthalpy
(meV/atom, against the elements' best structures at the same pressure) at every pressure; filled
markers where it is on the hull, open ones where it is above (its E_hull written beside them).
"""

from __future__ import annotations

from typing import Optional, Sequence

from . import formula_mathtext, new_figure, save_figure


def plot_enthalpy_vs_pressure(rows: Sequence[dict], path=None, *, title: Optional[str] = None,
                              formats=None):
    """Draw ``rows`` (formula, pressure_gpa, formation_enthalpy_meV, e_hull_meV, stable);
    returns (figure, files written)."""
    fig = new_figure(6.4, 4.6)
    ax = fig.add_subplot()
    formulas = list(dict.fromkeys(r["formula"] for r in rows))
    colours = [f"C{k % 10}" for k in range(len(formulas))]
    for formula, colour in zip(formulas, colours):
        mine = sorted((r for r in rows if r["formula"] == formula), key=lambda r: r["pressure_gpa"])
        p = [r["pressure_gpa"] for r in mine]
        h = [r["formation_enthalpy_meV"] for r in mine]
        ax.plot(p, h, "-", color=colour, lw=1.2, label=formula_mathtext(formula))
        for r in mine:
            ax.scatter([r["pressure_gpa"]], [r["formation_enthalpy_meV"]], s=46, color=colour,
                       facecolor=colour if r["stable"] else "white", edgecolor=colour, lw=1.2, zorder=3)
            if not r["stable"]:
                ax.annotate(f"+{r['e_hull_meV']:.0f}", (r["pressure_gpa"], r["formation_enthalpy_meV"]),
                            xytext=(4, 4), textcoords="offset points", fontsize=7, color=colour)
    ax.axhline(0.0, color="0.6", lw=0.8, zorder=0)
    ax.set_xlabel("pressure (GPa)")
    ax.set_ylabel("formation enthalpy (meV/atom)")
    ax.set_title(title or "phases stable at some pressure (filled: on the hull)")
    if formulas:
        ax.legend(fontsize=8, loc="best")
    files = save_figure(fig, path, formats) if path is not None else []
    return fig, files
