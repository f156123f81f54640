"""Figures of the self-optimizing loop (paper Figs. 3 and 5).

* :func:`plot_learning_curves`: RMSE of energy (meV/atom), force (meV/Å) and stress (GPa) per
  iteration; in the paper these are model n-1 evaluated on the structures labelled in iteration n.
* :func:`plot_structures_per_iteration`: structures optimized in each iteration, stacked by
  outcome (converged, not converged, unphysical), as in Fig. 3d.
* :func:`plot_iteration_summary`: the four panels a-d in one figure.

Missing values (NaN) are skipped, so an iteration without stress labels leaves a gap.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from . import new_figure, save_figure

PANELS = (("energy", "energy RMSE (meV/atom)", "tab:blue"),
          ("force", "force RMSE (meV/Å)", "tab:orange"),
          ("stress", "stress RMSE (GPa)", "tab:green"))
OUTCOME_COLOURS = {"converged": "tab:blue", "not converged": "tab:orange",
                   "not_converged": "tab:orange", "unphysical": "tab:red"}


def _curve(ax, iterations, values, ylabel: str, colour: str, letter: str) -> None:
    iterations = np.asarray(iterations)
    values = np.asarray(values, dtype=float)
    ok = np.isfinite(values)
    ax.plot(iterations[ok], values[ok], "o-", color=colour, ms=4, lw=1.5)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.9", lw=0.6)
    ax.set_ylim(bottom=0)
    if ok.any():
        last = int(np.flatnonzero(ok)[-1])
        ax.annotate(f"{values[last]:.3g}", (iterations[last], values[last]), xytext=(0, 7),
                    textcoords="offset points", ha="center", fontsize=8)
    ax.text(-0.18, 1.02, letter, transform=ax.transAxes, fontsize=12, fontweight="bold")
    ax.xaxis.get_major_locator().set_params(integer=True)


def plot_learning_curves(iterations: Sequence[int], energy_rmse, force_rmse, stress_rmse,
                         path=None, *, title: Optional[str] = None, formats=None):
    """Three panels side by side; ``energy_rmse`` meV/atom, ``force_rmse`` meV/Å,
    ``stress_rmse`` GPa, one value per iteration; returns (figure, files)."""
    fig = new_figure(11.0, 3.4)
    axes = fig.subplots(1, 3)
    for ax, values, (name, label, colour), letter in zip(axes, (energy_rmse, force_rmse, stress_rmse),
                                                          PANELS, "abc"):
        _curve(ax, iterations, values, label, colour, letter)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    files = save_figure(fig, path, formats) if path is not None else []
    return fig, files


def _bars(ax, iterations, counts: Mapping[str, Sequence[int]], letter: str = "") -> None:
    iterations = np.asarray(iterations)
    bottom = np.zeros(len(iterations))
    for name, values in counts.items():
        values = np.asarray(values, dtype=float)
        ax.bar(iterations, values, bottom=bottom, width=0.75, label=name.replace("_", " "),
               color=OUTCOME_COLOURS.get(name), edgecolor="white", lw=0.4)
        bottom += values
    ax.set_xlabel("iteration")
    ax.set_ylabel("structures optimized")
    ax.grid(True, axis="y", color="0.9", lw=0.6)
    ax.set_axisbelow(True)
    if len(counts) > 1:  # a row above the bars, in headroom made for it
        ax.set_ylim(0, 1.2 * max(float(bottom.max(initial=0)), 1.0))
        ax.legend(frameon=False, fontsize=8, ncol=len(counts), loc="upper center",
                  handlelength=1.2, columnspacing=1.0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    from matplotlib.ticker import EngFormatter

    ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    if letter:
        ax.text(-0.18, 1.02, letter, transform=ax.transAxes, fontsize=12, fontweight="bold")


def plot_structures_per_iteration(iterations: Sequence[int], counts: Mapping[str, Sequence[int]],
                                  path=None, *, title: Optional[str] = None, formats=None):
    """Stacked bars of structures per iteration, ``counts`` outcome → one count per iteration
    (e.g. {'converged': [...], 'not converged': [...], 'unphysical': [...]}); (figure, files)."""
    fig = new_figure(5.2, 3.6)
    ax = fig.add_subplot()
    _bars(ax, iterations, counts)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    files = save_figure(fig, path, formats) if path is not None else []
    return fig, files


def plot_iteration_summary(iterations: Sequence[int], energy_rmse, force_rmse, stress_rmse,
                           counts: Mapping[str, Sequence[int]], path=None, *,
                           title: Optional[str] = None, formats=None):
    """Paper Fig. 3 / 5 in one figure: a-c RMSEs, d structures per iteration; (figure, files)."""
    fig = new_figure(8.8, 6.4)
    axes = fig.subplots(2, 2).ravel()
    for ax, values, (name, label, colour), letter in zip(axes[:3], (energy_rmse, force_rmse, stress_rmse),
                                                          PANELS, "abc"):
        _curve(ax, iterations, values, label, colour, letter)
    _bars(axes[3], iterations, counts, "d")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    files = save_figure(fig, path, formats) if path is not None else []
    return fig, files
