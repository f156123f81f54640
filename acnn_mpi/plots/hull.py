"""Convex-hull figures from a :class:`~acnn_mpi.csp.hull.HullResult`.

All energies are shown in meV/atom. Structures up to ``ehull_max`` (eV/atom) above the hull are
drawn, coloured by E_hull (one colour scale, 0 to ``ehull_max``, in every figure); stable phases
are black-edged markers labelled with formula and space group (``space_groups``: structure row
→ Hermann-Mauguin symbol, optional).

* :func:`plot_binary_hull`: formation enthalpy against the fraction of the second element.
* :func:`plot_ternary_hull`: Gibbs triangle with the hull's tie-lines.
* :func:`plot_quaternary_hull`: the composition tetrahedron in an oblique projection.
* :func:`plot_pseudo_ternary`: a section through three end members (e.g. BeO-P2O5-P3N5 or
  MgH2-CaH2-H): structures whose composition lies in it, E_hull from the full hull, tie-lines of
  the hull of the section's own points.
* :func:`plot_hull` picks by the number of elements.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from . import formula_mathtext, new_figure, save_figure, space_group_mathtext

CMAP = "viridis"
SQRT3_2 = np.sqrt(3.0) / 2.0


def _label(result, row: int, space_groups: Optional[Mapping[int, str]]) -> str:
    text = formula_mathtext(result.formula(row))
    if space_groups and space_groups.get(int(row)):
        text += "\n" + space_group_mathtext(space_groups[int(row)])
    return text


def _shown(result, ehull_max: float) -> np.ndarray:
    """Rows drawn: finite, within the window; highest E_hull first so the best lie on top."""
    e = result.e_hull
    rows = np.flatnonzero(np.isfinite(e) & (e <= ehull_max + 1e-12))
    return rows[np.argsort(-e[rows], kind="stable")]


def _title(result, title: Optional[str]) -> str:
    if title is not None:
        return title
    system = "–".join(result.elements)
    pressure = "" if result.pressure is None else f" at {result.pressure:g} GPa"
    return f"{system} convex hull{pressure}"


def _colorbar(fig, ax, mappable, ehull_max: float) -> None:
    bar = fig.colorbar(mappable, ax=ax, shrink=0.8, pad=0.02)
    bar.set_label("E$_{hull}$ (meV/atom)")


def plot_binary_hull(result, path=None, *, space_groups=None, ehull_max: float = 0.2,
                     title: Optional[str] = None, formats=None):
    """Formation enthalpy (meV/atom) against x in A₁₋ₓBₓ; returns (figure, files written)."""
    if len(result.elements) != 2:
        raise ValueError("plot_binary_hull needs a two-element hull")
    fig = new_figure(6.4, 4.6)
    ax = fig.add_subplot()
    x = result.fractions[:, 1]
    y = 1000.0 * result.formation_enthalpy
    rows = _shown(result, ehull_max)
    points = ax.scatter(x[rows], y[rows], c=1000.0 * result.e_hull[rows], cmap=CMAP, vmin=0,
                        vmax=1000.0 * ehull_max, s=22, alpha=0.85, linewidths=0, zorder=2)
    stable = result.stable[np.argsort(x[result.stable], kind="stable")]
    ax.plot(x[stable], y[stable], "-", color="black", lw=1.4, zorder=3)
    ax.scatter(x[stable], y[stable], s=70, facecolor="tab:red", edgecolor="black", lw=1.0, zorder=4)
    low, high = float(np.min(y[rows], initial=0.0)), float(np.max(y[rows], initial=0.0))
    span = max(high - low, 20.0)
    for k, row in enumerate(stable):
        xr, yr = x[row], y[row]
        ha = "left" if xr < 0.02 else "right" if xr > 0.98 else "center"
        drop = 0.06 * span * (1 + (k % 2) * 1.3)
        shift = 0.02 if ha == "left" else -0.02 if ha == "right" else 0.0
        ax.annotate(_label(result, row, space_groups), (xr, yr), xytext=(xr + shift, yr - drop),
                    ha=ha, va="top", fontsize=8, zorder=5,
                    arrowprops=dict(arrowstyle="-", color="0.5", lw=0.6, shrinkA=0, shrinkB=4))
    ax.axhline(0.0, color="0.6", lw=0.8, ls="--", zorder=1)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(low - 0.35 * span, high + 0.08 * span)
    a, b = result.elements
    ax.set_xlabel(f"x in {a}$_{{1-x}}${b}$_x$")
    ax.set_ylabel("formation enthalpy (meV/atom)")
    ax.set_title(_title(result, title))
    _colorbar(fig, ax, points, ehull_max)
    files = save_figure(fig, path, formats) if path is not None else []
    return fig, files


def _triangle_xy(w: np.ndarray) -> np.ndarray:
    """(M, 3) barycentric weights → (M, 2) points in the triangle (0,0), (1,0), (½, √3/2)."""
    return np.stack([w[:, 1] + 0.5 * w[:, 2], SQRT3_2 * w[:, 2]], axis=1)


def _triangle_axes(fig, corner_labels: Sequence[str]):
    ax = fig.add_subplot()
    ax.plot([0, 1, 0.5, 0], [0, 0, SQRT3_2, 0], color="black", lw=1.2, zorder=1)
    for (cx, cy), text, ha, va in zip([(0, 0), (1, 0), (0.5, SQRT3_2)], corner_labels,
                                      ["right", "left", "center"], ["top", "top", "bottom"]):
        ax.text(cx + (-0.02 if ha == "right" else 0.02 if ha == "left" else 0),
                cy + (0.025 if va == "bottom" else -0.02), text, ha=ha, va=va, fontsize=12,
                fontweight="bold")
    ax.set_aspect("equal")
    ax.set_xlim(-0.12, 1.12)
    ax.set_ylim(-0.1, SQRT3_2 + 0.1)
    ax.axis("off")
    return ax


def _annotate_points(ax, xy, labels, centre) -> None:
    """Labels beside their points, pushed outward from ``centre``; each takes the first of 16
    directions (nearest the outward one first) where it overlaps neither a placed label nor a
    labelled point."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_display = ax.transData.transform
    markers = [to_display(p) for p in xy]
    placed = []
    angles = np.radians(np.arange(0, 360, 22.5))
    for k, ((px, py), text) in enumerate(zip(xy, labels)):
        outward = np.array([px, py]) - np.asarray(centre)
        base = np.arctan2(outward[1], outward[0]) if np.linalg.norm(outward) > 1e-9 else -np.pi / 2
        order = sorted(angles, key=lambda a: abs(np.angle(np.exp(1j * (a - base)))))
        annotation = None
        for radius in (13, 22):
            for angle in order:
                direction = np.array([np.cos(angle), np.sin(angle)])
                if annotation is not None:
                    annotation.remove()
                annotation = ax.annotate(
                    text, (px, py), xytext=tuple(radius * direction), textcoords="offset points",
                    ha="left" if direction[0] > 0.3 else "right" if direction[0] < -0.3 else "center",
                    va="bottom" if direction[1] > 0.3 else "top" if direction[1] < -0.3 else "center",
                    fontsize=7.5, zorder=6)
                box = annotation.get_window_extent(renderer).expanded(1.04, 1.08)
                clash = any(box.overlaps(other) for other in placed) or any(
                    box.contains(*m) for j, m in enumerate(markers) if j != k)
                if not clash:
                    break
            else:
                continue
            break
        placed.append(annotation.get_window_extent(renderer))


def plot_ternary_hull(result, path=None, *, space_groups=None, ehull_max: float = 0.2,
                      title: Optional[str] = None, formats=None):
    """Gibbs triangle, structures coloured by E_hull, tie-lines of the hull; (figure, files)."""
    if len(result.elements) != 3:
        raise ValueError("plot_ternary_hull needs a three-element hull")
    fig = new_figure(6.6, 5.6)
    ax = _triangle_axes(fig, result.elements)
    xy = _triangle_xy(result.fractions)
    for facet in result.facets:
        for i, j in ((0, 1), (1, 2), (0, 2)):
            ax.plot(*xy[[facet[i], facet[j]]].T, color="0.35", lw=0.8, zorder=2)
    rows = _shown(result, ehull_max)
    points = ax.scatter(*xy[rows].T, c=1000.0 * result.e_hull[rows], cmap=CMAP, vmin=0,
                        vmax=1000.0 * ehull_max, s=18, linewidths=0, zorder=3)
    stable = result.stable
    ax.scatter(*xy[stable].T, s=60, facecolor="tab:red", edgecolor="black", lw=1.0, zorder=4)
    compounds = [r for r in stable if np.count_nonzero(result.fractions[r] > 0) > 1]
    _annotate_points(ax, xy[compounds], [_label(result, r, space_groups) for r in compounds],
                     centre=(0.5, SQRT3_2 / 3))
    ax.set_title(_title(result, title))
    _colorbar(fig, ax, points, ehull_max)
    files = save_figure(fig, path, formats) if path is not None else []
    return fig, files


_TETRAHEDRON = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, SQRT3_2, 0.0],
                         [0.5, SQRT3_2 / 3.0, np.sqrt(2.0 / 3.0)]])


def _projection(elevation: float, azimuth: float) -> np.ndarray:
    """(3, 2) orthographic projection for a view from ``azimuth``/``elevation`` degrees."""
    a, e = np.radians(azimuth), np.radians(elevation)
    right = np.array([np.cos(a), np.sin(a), 0.0])
    up = np.array([-np.sin(a) * np.sin(e), np.cos(a) * np.sin(e), np.cos(e)])
    return np.stack([right, up], axis=1)


def _hidden_edge(elevation: float, azimuth: float, projection: np.ndarray):
    """The tetrahedron edge behind another one in this view (drawn dashed), or None."""
    a, e = np.radians(azimuth), np.radians(elevation)
    toward_viewer = np.array([np.sin(a) * np.cos(e), -np.cos(a) * np.cos(e), np.sin(e)])
    corners = _TETRAHEDRON @ projection
    for (i, j), (k, l) in (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))):
        # do the projected opposite edges i-j and k-l cross? solve p_i + s d1 = p_k + t d2
        d1, d2 = corners[j] - corners[i], corners[l] - corners[k]
        matrix = np.column_stack([d1, -d2])
        if abs(np.linalg.det(matrix)) < 1e-12:
            continue
        s, t = np.linalg.solve(matrix, corners[k] - corners[i])
        if 0 < s < 1 and 0 < t < 1:
            depth1 = (_TETRAHEDRON[i] + s * (_TETRAHEDRON[j] - _TETRAHEDRON[i])) @ toward_viewer
            depth2 = (_TETRAHEDRON[k] + t * (_TETRAHEDRON[l] - _TETRAHEDRON[k])) @ toward_viewer
            return (i, j) if depth1 < depth2 else (k, l)
    return None


def plot_quaternary_hull(result, path=None, *, space_groups=None, ehull_max: float = 0.2,
                         title: Optional[str] = None, elevation: float = 35.0,
                         azimuth: float = -50.0, formats=None):
    """The composition tetrahedron seen obliquely: structures coloured by E_hull, hull tie-lines
    in grey, stable compounds labelled; (figure, files)."""
    if len(result.elements) != 4:
        raise ValueError("plot_quaternary_hull needs a four-element hull")
    projection = _projection(elevation, azimuth)
    corners = _TETRAHEDRON @ projection
    xy = (result.fractions @ _TETRAHEDRON) @ projection
    fig = new_figure(6.8, 6.0)
    ax = fig.add_subplot()
    edges = {tuple(sorted((int(f[i]), int(f[j])))) for f in result.facets
             for i in range(4) for j in range(i + 1, 4)}
    for i, j in sorted(edges):
        ax.plot(*xy[[i, j]].T, color="0.6", lw=0.5, zorder=1)
    hidden = _hidden_edge(elevation, azimuth, projection)
    for i in range(4):
        for j in range(i + 1, 4):
            ax.plot(*corners[[i, j]].T, color="black", lw=1.2, zorder=2,
                    ls="--" if (i, j) == hidden else "-")
    rows = _shown(result, ehull_max)
    points = ax.scatter(*xy[rows].T, c=1000.0 * result.e_hull[rows], cmap=CMAP, vmin=0,
                        vmax=1000.0 * ehull_max, s=16, linewidths=0, zorder=3)
    stable = result.stable
    ax.scatter(*xy[stable].T, s=55, facecolor="tab:red", edgecolor="black", lw=1.0, zorder=4)
    centre = corners.mean(axis=0)
    for k, symbol in enumerate(result.elements):
        direction = corners[k] - centre
        ax.text(*(corners[k] + 0.07 * direction / np.linalg.norm(direction)), symbol,
                ha="center", va="center", fontsize=12, fontweight="bold")
    ax.set_aspect("equal")
    ax.axis("off")
    low, high = corners.min(axis=0), corners.max(axis=0)
    pad = 0.12 * (high - low).max()
    ax.set_xlim(low[0] - pad, high[0] + pad)
    ax.set_ylim(low[1] - pad, high[1] + pad)
    compounds = [r for r in stable if np.count_nonzero(result.fractions[r] > 0) > 1]
    _annotate_points(ax, xy[compounds], [_label(result, r, space_groups) for r in compounds],
                     centre=centre)
    ax.set_title(_title(result, title))
    _colorbar(fig, ax, points, ehull_max)
    files = save_figure(fig, path, formats) if path is not None else []
    return fig, files


def section_weights(result, end_members: Sequence[Mapping[str, float]],
                    tolerance: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Rows of structures inside the triangle of three end members, and their (M, 3) weights.

    ``end_members`` are counts such as {'Be': 1, 'O': 1}; weights are fractions of atoms
    contributed by each end member (they sum to 1).
    """
    index = {s: k for k, s in enumerate(result.elements)}
    basis = np.zeros((len(result.elements), 3))
    for k, member in enumerate(end_members):
        for symbol, count in member.items():
            if symbol not in index:
                raise ValueError(f"end member {member} names {symbol}, not in {result.elements}")
            basis[index[symbol], k] = count
    basis /= basis.sum(axis=0, keepdims=True)
    system = np.vstack([basis, np.ones((1, 3))])
    target = np.hstack([result.fractions, np.ones((len(result.fractions), 1))])
    weights, *_ = np.linalg.lstsq(system, target.T, rcond=None)
    weights = weights.T
    residual = np.abs(weights @ system.T - target).max(axis=1)
    inside = (residual < tolerance) & (weights > -tolerance).all(axis=1)
    rows = np.flatnonzero(inside)
    return rows, np.clip(weights[rows], 0.0, 1.0)


def _section_facets(points: np.ndarray) -> list[tuple[int, int, int]]:
    """Lower-hull triangles of (M, 3) points (w_B, w_C, H_f); [] when degenerate."""
    from scipy.spatial import ConvexHull, QhullError

    if len(points) < 4:
        return [tuple(range(3))] if len(points) == 3 else []
    try:
        hull = ConvexHull(points)
    except QhullError:
        return []
    return [tuple(s) for s, eq in zip(hull.simplices, hull.equations) if eq[2] < -1e-9]


def plot_pseudo_ternary(result, end_members: Sequence[str], path=None, *, space_groups=None,
                        ehull_max: float = 0.2, title: Optional[str] = None, formats=None):
    """Section through three end-member formulas (e.g. ['BeO', 'P2O5', 'P3N5']); (figure, files).

    Colours are E_hull from the full hull; stable phases of the full hull are red; tie-lines are
    those of the lower hull of the best structure of each composition in the section.
    """
    from ..elements import parse_formula

    if len(end_members) != 3:
        raise ValueError("a pseudo-ternary section needs three end members")
    counts = [parse_formula(f, "end member") for f in end_members]
    rows, weights = section_weights(result, counts)
    if rows.size == 0:
        raise ValueError(f"no structure lies in the section {'-'.join(end_members)}")
    fig = new_figure(6.6, 5.6)
    ax = _triangle_axes(fig, [formula_mathtext(f) for f in end_members])
    xy = _triangle_xy(weights)
    best = np.array([r for r in rows if result.best[result.composition_index[r]] == r])
    position = {int(r): k for k, r in enumerate(rows)}
    best_k = [position[int(r)] for r in best]
    points3 = np.column_stack([weights[best_k, 1], weights[best_k, 2],
                               result.formation_enthalpy[best]])
    vertices = set()
    for tri in _section_facets(points3):
        vertices.update(tri)
        for i, j in ((0, 1), (1, 2), (0, 2)):
            ax.plot(*xy[[best_k[tri[i]], best_k[tri[j]]]].T, color="0.35", lw=0.8, zorder=2)
    e = result.e_hull[rows]
    shown = np.flatnonzero(np.isfinite(e) & (e <= ehull_max + 1e-12))
    shown = shown[np.argsort(-e[shown], kind="stable")]
    points = ax.scatter(*xy[shown].T, c=1000.0 * e[shown], cmap=CMAP, vmin=0,
                        vmax=1000.0 * ehull_max, s=18, linewidths=0, zorder=3)
    stable_in = [k for k, r in enumerate(rows) if r in set(result.stable.tolist())]
    ax.scatter(*xy[stable_in].T, s=60, facecolor="tab:red", edgecolor="black", lw=1.0, zorder=4)
    labelled = sorted({best_k[v] for v in vertices} | set(stable_in))
    labelled = [k for k in labelled if np.count_nonzero(weights[k] > 1e-9) > 1]
    _annotate_points(ax, xy[labelled], [_label(result, rows[k], space_groups) for k in labelled],
                     centre=(0.5, SQRT3_2 / 3))
    ax.set_title(title if title is not None else
                 f"{'–'.join(formula_mathtext(f) for f in end_members)} section"
                 + ("" if result.pressure is None else f" at {result.pressure:g} GPa"))
    _colorbar(fig, ax, points, ehull_max)
    files = save_figure(fig, path, formats) if path is not None else []
    return fig, files


def plot_hull(result, path=None, **kwargs):
    """The natural figure for the number of elements (2, 3 or 4); (figure, files)."""
    n = len(result.elements)
    plotters = {2: plot_binary_hull, 3: plot_ternary_hull, 4: plot_quaternary_hull}
    if n not in plotters:
        raise ValueError(f"hull figures exist for 2 to 4 elements, not {n}")
    return plotters[n](result, path, **kwargs)
