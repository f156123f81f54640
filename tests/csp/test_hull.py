"""Convex hull at a pressure: hand-built binary and ternary hulls, the PV term, pymatgen
agreement of the vectorized E_hull, and the ``hull`` command."""

import numpy as np
import pytest
from ase import Atoms
from ase.io import write

from acnn_mpi.csp.hull import convex_hull, e_hull_of_rows, enthalpy, reduced_formula
from acnn_mpi.errors import UserError
from acnn_mpi.units import gpa_to_ev_per_a3

MU = {"Mg": -1.5, "Ca": -2.0, "H": -3.0}  # elemental enthalpies, eV/atom


def build(rows, elements):
    """rows: (counts, formation enthalpy eV/atom) -> (counts, total enthalpy eV)."""
    counts = np.array([c for c, _ in rows])
    n = counts.sum(1)
    mu = np.array([MU[s] for s in elements])
    h = (counts / n[:, None]) @ mu + np.array([hf for _, hf in rows])
    return counts, h * n


BINARY = [((1, 0), 0.0), ((2, 0), 0.05),            # Mg, and a polymorph 50 meV/atom higher
          ((0, 2), 0.0),                             # H2
          ((1, 2), -0.30), ((2, 4), -0.29),          # MgH2, a 10 meV/atom worse copy
          ((1, 4), -0.20),                           # MgH4: below the MgH2-H line (-0.18)
          ((1, 1), -0.10),                           # MgH: hull -0.225 -> 0.125 above
          ((3, 1), -0.05)]                           # Mg3H: hull -0.1125 -> 0.0625 above


def test_binary_hull_by_hand():
    counts, h = build(BINARY, ["Mg", "H"])
    result = convex_hull(counts, h, ["Mg", "H"], pressure=0.0)
    assert [result.formula(r) for r in result.stable] == ["Mg", "MgH2", "MgH4", "H"]
    assert result.stable.tolist() == [0, 3, 5, 2]
    np.testing.assert_allclose(result.e_hull, [0, 0.05, 0, 0, 0.01, 0, 0.125, 0.0625], atol=1e-12)
    np.testing.assert_allclose(result.formation_enthalpy, [hf for _, hf in BINARY], atol=1e-12)
    np.testing.assert_allclose(result.references, [-1.5, -3.0])
    assert result.reference_index.tolist() == [0, 2]
    assert result.best[result.composition_index[4]] == 3  # MgH2 and Mg2H4: one composition
    assert len(result.compositions) == 6 and len(result.facets) == 3
    np.testing.assert_allclose(result.hull_enthalpy([[0.5, 0.5], [0.2, 0.8]]), [-0.225, -0.2])
    assert result.is_stable.sum() == 4


TERNARY = [((1, 0, 0), 0.0), ((0, 1, 0), 0.0), ((0, 0, 2), 0.0),
           ((1, 0, 2), -0.30), ((0, 1, 2), -0.40), ((1, 1, 4), -0.38),
           ((1, 1, 2), -0.25),    # hull = 3/4 × CaH2 + 1/4 Mg = -0.30 -> 0.05 above
           ((3, 1, 8), -0.33),    # on the MgH2-CaH2 line, between MgCaH4 and MgH2: hull -0.34
           ((2, 2, 8), -0.36)]    # a polymorph of MgCaH4, 20 meV/atom higher


def test_ternary_hull_by_hand():
    elements = ["Mg", "Ca", "H"]
    counts, h = build(TERNARY, elements)
    result = convex_hull(counts, h, elements)
    assert sorted(result.formula(r) for r in result.stable) == sorted(
        ["Mg", "Ca", "H", "MgH2", "CaH2", "MgCaH4"])
    np.testing.assert_allclose(result.e_hull, [0, 0, 0, 0, 0, 0, 0.05, 0.01, 0.02], atol=1e-12)
    assert result.facets.shape[1] == 3


def test_a_missing_element_is_named():
    counts, h = build([((1, 0), 0.0), ((1, 2), -0.3)], ["Mg", "H"])
    with pytest.raises(UserError, match="none for H"):
        convex_hull(counts, h, ["Mg", "H"])
    # present but excluded (e.g. unphysical) counts as missing too
    counts, h = build(BINARY, ["Mg", "H"])
    include = np.ones(len(h), bool)
    include[[0, 1]] = False
    with pytest.raises(UserError, match="none for Mg"):
        convex_hull(counts, h, ["Mg", "H"], include=include)


def test_pressure_changes_the_hull_as_the_volumes_say():
    """Mg-α (-1.50 eV/atom, 20 Å³), Mg-β (-1.45, 18 Å³), H (-3.0, 10 Å³), MgH2 (+50 meV/atom
    above the elements at 0 GPa, 10 Å³/atom, 3.33 Å³/atom less than the elements)."""
    counts = np.array([[1, 0], [1, 0], [0, 2], [1, 2]])
    energy = np.array([-1.5, -1.45, -6.0, 3 * (-1.5 / 3 - 2.0 + 0.05)])
    volume = np.array([20.0, 18.0, 20.0, 30.0])
    low = convex_hull(counts, enthalpy(energy, volume, 0.0), ["Mg", "H"], pressure=0.0)
    assert low.stable.tolist() == [0, 2]
    assert low.e_hull[3] == pytest.approx(0.05) and low.e_hull[1] == pytest.approx(0.05)
    p = gpa_to_ev_per_a3(10.0)  # 0.0624 eV/Å³
    high = convex_hull(counts, enthalpy(energy, volume, 10.0), ["Mg", "H"], pressure=10.0)
    assert high.stable.tolist() == [1, 3, 2]  # β-Mg takes over, MgH2 becomes stable
    mu_mg, mu_h = -1.45 + 18 * p, -3.0 + 10 * p
    assert high.references == pytest.approx([mu_mg, mu_h])
    h_mgh2 = (energy[3] + 30 * p) / 3
    assert high.formation_enthalpy[3] == pytest.approx(h_mgh2 - mu_mg / 3 - 2 * mu_h / 3)
    # relative to β-Mg: +33.3 meV/atom at 0 GPa and 2.667 Å³/atom smaller: 0.0333 - 2.667 p
    assert high.formation_enthalpy[3] == pytest.approx(0.05 - 0.05 / 3 - 8 / 3 * p)
    assert high.formation_enthalpy[3] == pytest.approx(-0.1331, abs=1e-4)
    assert high.e_hull[0] == pytest.approx(-1.5 + 20 * p - mu_mg)  # 74.8 meV/atom


@pytest.mark.parametrize("elements", [["Mg", "H"], ["Mg", "Ca", "H"], ["Be", "P", "N", "O"]])
def test_vectorized_e_hull_equals_pymatgen(elements):
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    rng = np.random.default_rng(len(elements))
    n = 400
    counts = rng.integers(0, 5, size=(n, len(elements)))
    counts[counts.sum(1) == 0, 0] = 1
    counts[: len(elements)] = 2 * np.eye(len(elements), dtype=int)
    h_atom = counts @ rng.normal(-2, 1, len(elements)) / counts.sum(1) + rng.normal(-0.1, 0.15, n)
    h = h_atom * counts.sum(1)
    result = convex_hull(counts, h, elements)
    # pymatgen on every structure, independently of the pre-filtered diagram in the result
    entries = [PDEntry(Composition({s: int(c) for s, c in zip(elements, row) if c}), float(e),
                       attribute=k) for k, (row, e) in enumerate(zip(counts, h))]
    diagram = PhaseDiagram(entries)
    expected = [diagram.get_e_above_hull(e, allow_negative=True) for e in entries]
    np.testing.assert_allclose(result.e_hull, expected, atol=1e-10)
    assert (result.e_hull > -1e-10).all()
    stable = {e.attribute for e in diagram.stable_entries}
    assert set(result.stable.tolist()) == stable
    assert {e.attribute for e in result.phase_diagram.stable_entries} == stable
    assert np.abs(result.e_hull[result.stable]).max() < 1e-10


@pytest.mark.parametrize("elements", [["Mg", "H"], ["Mg", "Ca", "H"], ["Be", "P", "N", "O"]])
def test_hull_of_one_row_per_composition_gives_every_rows_e_hull(elements):
    """e_hull_of_rows (what the campaign root uses at 10⁶ structures) equals convex_hull, also for
    rows left out of the hull, NaN enthalpies and compositions with no included row."""
    rng = np.random.default_rng(7 + len(elements))
    n = 600
    counts = rng.integers(0, 5, size=(n, len(elements))).astype(np.int16)
    counts[counts.sum(1) == 0, 0] = 1
    counts[: len(elements)] = 2 * np.eye(len(elements), dtype=np.int16)
    h = (counts @ rng.normal(-2, 1, len(elements)) + rng.normal(-0.1, 0.15, n) * counts.sum(1))
    h[rng.random(n) < 0.05] = np.nan
    include = rng.random(n) < 0.6
    include[: len(elements)] = True
    counts[-2:] = 7  # a composition of its own, not in the hull: one NaN row, one finite
    counts[-2:, 0] = 1
    h[-2:] = np.nan, -3.0 * counts[-1].sum()
    include[-2:] = False
    whole = convex_hull(counts, h, elements, include=include)
    e_hull, stable = e_hull_of_rows(counts, h, elements, include=include)
    np.testing.assert_array_equal(e_hull, whole.e_hull)  # NaN where the enthalpy is NaN
    np.testing.assert_array_equal(stable, whole.stable)
    assert np.isnan(e_hull).any() and (np.isfinite(e_hull) & ~include).any()
    counts[-1, 1] = 6  # and a composition of NaN rows only
    h[-1] = np.nan
    whole = convex_hull(counts, h, elements, include=include)
    codes = np.unique([reduced_formula(row, elements) for row in counts], return_inverse=True)[1].ravel()
    for given in (None, codes):  # the root passes its codes of the reduced formulas
        e_hull, stable = e_hull_of_rows(counts, h, elements, include=include, composition_codes=given)
        np.testing.assert_array_equal(e_hull, whole.e_hull)
        np.testing.assert_array_equal(stable, whole.stable)


def test_enthalpy_and_formula_helpers():
    assert enthalpy(-10.0, 160.21766208, 1.0) == pytest.approx(-9.0)
    assert reduced_formula([2, 6, 46], ["Mg", "Ca", "H"]) == "MgCa3H23"
    assert reduced_formula([0, 4], ["Mg", "H"]) == "H"


def _frames():
    """Mg-H structures as a relaxation would leave them (ideal cells, hand enthalpies)."""
    from ase.build import bulk

    mg = bulk("Mg", "hcp", a=3.2, c=5.2)
    mg.info.update(enthalpy=-3.0, structure_id=10)
    mg_fcc = bulk("Mg", "fcc", a=4.5)
    mg_fcc.info.update(enthalpy=-1.49, structure_id=11)
    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], cell=[3, 3, 3], pbc=True)
    h2.info.update(enthalpy=-6.0, structure_id=12)
    rutile = Atoms("MgH2MgH2", scaled_positions=[[0, 0, 0], [0.3, 0.3, 0], [0.7, 0.7, 0],
                                                  [0.5, 0.5, 0.5], [0.2, 0.8, 0.5], [0.8, 0.2, 0.5]],
                   cell=[4.5, 4.5, 3.0], pbc=True)
    rutile.info.update(enthalpy=6 * (-2.5 - 0.3), structure_id=13)
    copy = rutile.repeat((1, 1, 2))
    copy.info.update(enthalpy=2 * rutile.info["enthalpy"] + 0.001, structure_id=14)
    broken = rutile.copy()
    broken.info.update(enthalpy=-100.0, structure_id=15, status="unphysical", reason="H-H 0.1 Å")
    return [mg, mg_fcc, h2, rutile, copy, broken]


def test_hull_command_prints_stable_phases_and_candidates(acnn, tmp_path):
    write(tmp_path / "results.xyz", _frames(), format="extxyz")
    out = acnn(["hull", tmp_path / "results.xyz", "--ehull-max", "0.02", "--elements", "Mg,H",
                "--export-cif", tmp_path / "cif", "--export-poscar", tmp_path / "poscar",
                "--plot", tmp_path / "hull.png"], timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "6 structures (5 converged and physical), 3 compositions, 3 stable phases" in text
    assert "MgH2     P4_2/mnm (136)" in text and "-300.0" in text
    # fcc Mg is 10 meV/atom above; the doubled rutile cell is a duplicate and not listed
    assert "with E_hull ≤ 20 meV/atom: 1" in text and "Fm-3m (225)" in text and " 14\n" not in text
    assert len(list((tmp_path / "cif").glob("*.cif"))) == 4
    assert (tmp_path / "poscar" / "002_MgH2_sg136_id13.vasp").exists()
    assert (tmp_path / "hull.png").stat().st_size > 20_000


def test_hull_command_errors_are_one_line(acnn, tmp_path):
    frames = [f for f in _frames() if f.info["structure_id"] != 12]
    write(tmp_path / "no_h.xyz", frames, format="extxyz")
    out = acnn(["hull", tmp_path / "no_h.xyz"], timeout=300)
    assert out.returncode == 2 and "none for H" in out.stderr


def test_reader_converts_to_another_pressure(tmp_path):
    from acnn_mpi.csp.export import read_results

    frames = _frames()[:3]
    for f in frames:
        f.info["pressure"] = 0.0
    frames[0].info.pop("enthalpy")
    frames[0].info["energy"] = -3.0
    write(tmp_path / "r.xyz", frames, format="extxyz")
    results = read_results(tmp_path / "r.xyz", pressure=5.0)
    assert results.elements == ["Mg", "H"]
    p = gpa_to_ev_per_a3(5.0)
    expected = np.array([-3.0, -1.49, -6.0]) + p * np.array([f.get_volume() for f in frames])
    np.testing.assert_allclose(results.enthalpy, expected)
    assert results.ids.tolist() == [10, 11, 12] and results.pressure == 5.0
    assert results.counts.tolist() == [[2, 0], [1, 0], [0, 2]]


@pytest.mark.parametrize("elements", [["Mg", "H"], ["Mg", "Ca", "H"]])
def test_per_element_energy_zeros_cancel(elements):
    """DFT codes put each element's zero hundreds of eV/atom away (of either sign): adding a
    constant per atom of each element changes no formation enthalpy, E_hull or stable phase."""
    rows = BINARY if len(elements) == 2 else TERNARY
    counts, h = build(rows, elements)
    shifts = np.array([-1480.25, 362.5, -215.75])[: len(elements)]
    plain = convex_hull(counts, h, elements)
    shifted = convex_hull(counts, h + counts @ shifts, elements)
    assert shifted.stable.tolist() == plain.stable.tolist()
    np.testing.assert_allclose(shifted.formation_enthalpy, plain.formation_enthalpy, atol=1e-9)
    np.testing.assert_allclose(shifted.e_hull, plain.e_hull, atol=1e-9)
    np.testing.assert_allclose(shifted.references - plain.references, shifts, atol=1e-9)
