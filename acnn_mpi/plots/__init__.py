"""Figures a person would rather look at than read: hulls, learning curves, counts per iteration.

Headless: figures are ``matplotlib.figure.Figure`` objects drawn with the Agg canvas (pyplot and
its global state are never touched), saved as PNG and/or SVG by :func:`save_figure`.

* :mod:`acnn_mpi.plots.hull`: binary hull, ternary triangle (E_hull as colour), quaternary
  tetrahedron projection and pseudo-ternary sections.
* :mod:`acnn_mpi.plots.learning`: RMSE of energy, force and stress per iteration (paper Figs. 3a-c,
  5a-c) and structures optimized per iteration (Fig. 3d).
* :mod:`acnn_mpi.plots.pressure`: formation enthalpy against pressure (campaigns over several
  pressures).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

#: formats written when a path has no suffix
DEFAULT_FORMATS = ("png", "svg")


def new_figure(width: float, height: float):
    """A ``Figure`` of ``width`` × ``height`` inches on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=150)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path, formats: Optional[Sequence[str]] = None) -> list[Path]:
    """Save ``fig`` to ``path``; with ``formats`` (or a path without suffix) one file per format
    (``hull`` → ``hull.png``, ``hull.svg``). Returns the files written."""
    path = Path(path)
    if formats is None:
        formats = [path.suffix[1:]] if path.suffix else list(DEFAULT_FORMATS)
        stem = path.with_suffix("") if path.suffix else path
    else:
        stem = path.with_suffix("") if path.suffix.lower() in (".png", ".svg", ".pdf") else path
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        out = stem.with_name(f"{stem.name}.{fmt.lower()}")
        fig.savefig(out, format=fmt.lower(), bbox_inches="tight", dpi=150)
        written.append(out)
    return written


def formula_mathtext(formula: str) -> str:
    """'MgCa3H23' → 'MgCa$_{3}$H$_{23}$' (subscripted counts)."""
    import re

    return re.sub(r"(\d+)", r"$_{\1}$", formula)


def space_group_mathtext(symbol: str) -> str:
    """Hermann-Mauguin symbol as mathtext: 'Pm-3n' → '$Pm\\bar{3}n$', 'P6_3/mmc' → '$P6_3/mmc$'."""
    import re

    if not symbol:
        return ""
    text = re.sub(r"-(\d)", r"\\bar{\1}", symbol)
    text = re.sub(r"_(\d)", r"_{\1}", text)
    return f"${text}$"
