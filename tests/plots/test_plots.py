"""Figures are drawn headless and written as non-trivial PNG and SVG files."""

import numpy as np
import pytest

from acnn_mpi.plots import formula_mathtext, save_figure, space_group_mathtext
from acnn_mpi.plots.hull import (plot_binary_hull, plot_hull, plot_pseudo_ternary,
                                 plot_quaternary_hull, plot_ternary_hull, section_weights)
from acnn_mpi.plots.learning import (plot_iteration_summary, plot_learning_curves,
                                     plot_structures_per_iteration)
from tests.plots.example_data import alloy_structures, hull_of, ordered_cu_pt, space_group_labels


@pytest.fixture(scope="module")
def binary():
    structures = ordered_cu_pt() + alloy_structures(["Cu", "Pt"], n_per_cell=1, lattices=("fcc",))
    return hull_of(structures, ["Cu", "Pt"]), structures


def synthetic_hull(elements, n=300, seed=0):
    from acnn_mpi.csp.hull import convex_hull

    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, size=(n, len(elements)))
    counts[counts.sum(1) == 0, 0] = 1
    counts[: len(elements)] = np.eye(len(elements), dtype=int)
    h_atom = rng.normal(-0.05, 0.08, n)
    h_atom[: len(elements)] = 0.0
    return convex_hull(counts, h_atom * counts.sum(1), elements, pressure=100.0)


def assert_files(files, suffixes=(".png", ".svg")):
    assert sorted(p.suffix for p in files) == sorted(suffixes)
    for path in files:
        assert path.stat().st_size > 10_000, path


def test_binary_hull_png_and_svg(binary, tmp_path):
    result, structures = binary
    labels = space_group_labels(result, structures)
    # EMT orders Cu-Pt: L1_2 Cu3Pt, L1_0 CuPt and L1_2 CuPt3 are on the hull
    assert [result.formula(r) for r in result.stable] == ["Cu", "Cu3Pt", "CuPt", "CuPt3", "Pt"]
    assert [labels[r] for r in result.stable[1:4]] == ["Pm-3m", "P4/mmm", "Pm-3m"]
    fig, files = plot_binary_hull(result, tmp_path / "binary", space_groups=labels)
    assert_files(files)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("Cu$_{3}$Pt" in t and r"$Pm\bar{3}m$" in t for t in texts)


def test_ternary_quaternary_and_section(tmp_path):
    ternary = synthetic_hull(["Mg", "Ca", "H"])
    assert_files(plot_ternary_hull(ternary, tmp_path / "ternary")[1])
    quaternary = synthetic_hull(["Be", "P", "N", "O"], n=500)
    assert_files(plot_quaternary_hull(quaternary, tmp_path / "quaternary.png")[1], (".png",))
    rows, weights = section_weights(quaternary, [{"Be": 1, "O": 1}, {"P": 2, "O": 5},
                                                 {"P": 3, "N": 5}])
    assert rows.size > 0 and np.allclose(weights.sum(1), 1)
    assert_files(plot_pseudo_ternary(quaternary, ["BeO", "P2O5", "P3N5"], tmp_path / "section",
                                     formats=["svg"])[1], (".svg",))
    with pytest.raises(ValueError, match="2 to 4"):
        plot_hull(synthetic_hull(["Mg"], n=5), tmp_path / "x.png")


def test_learning_curves_and_counts(tmp_path):
    it = np.arange(1, 8)
    energy = np.array([120, 90, 70, np.nan, 55, 48, 44.0])
    assert_files(plot_learning_curves(it, energy, 300 + 50 * np.exp(-it), 14 + np.exp(-it),
                                      tmp_path / "learning")[1])
    counts = {"converged": 1000 * it, "not converged": 200 + 0 * it, "unphysical": 50 + 0 * it}
    assert_files(plot_structures_per_iteration(it, counts, tmp_path / "counts")[1])
    assert_files(plot_iteration_summary(it, energy, 300 + it, 14 + it, counts,
                                        tmp_path / "summary.svg")[1], (".svg",))


def test_mathtext_helpers_and_save(tmp_path):
    assert formula_mathtext("MgCa3H23") == "MgCa$_{3}$H$_{23}$"
    assert space_group_mathtext("Pm-3n") == r"$Pm\bar{3}n$"
    assert space_group_mathtext("P6_3/mmc") == "$P6_{3}/mmc$"
    from acnn_mpi.plots import new_figure

    fig = new_figure(2, 2)
    fig.add_subplot().plot([0, 1], [0, 1])
    assert [p.name for p in save_figure(fig, tmp_path / "a" / "b.pdf")] == ["b.pdf"]
