"""Composition space: the paper's counts, bounds, ratios, charge neutrality, joins, cells, errors."""

import itertools
import math
from functools import reduce

import pytest

from acnn_mpi.csp.compositions import Composition, enumerate_compositions
from acnn_mpi.errors import UserError

BEPNO = ["Be", "P", "N", "O"]
MGCAH = dict(max_atoms_per_formula=102, per_element_bounds={"Mg": (0, 3), "Ca": (0, 3)},
             ratio_bounds=[(["H"], ["Mg", "Ca"], 16)])


def formulas(space):
    return {c.formula for c in space}


def brute_force(k, max_total):
    """Ordered k-tuples of positive counts, sum ≤ max_total, gcd 1."""
    return sum(1 for t in itertools.product(range(1, max_total + 1), repeat=k)
               if sum(t) <= max_total and reduce(math.gcd, t) == 1)


@pytest.mark.parametrize("elements, expected", [
    (["Mg", "H"], 269), (["Mg", "Ca", "H"], 3196), (["Be", "P", "N", "O"], 22619)])
def test_paper_counts_fewer_than_30_atoms_per_formula(elements, expected):
    # paper §II.C: "a maximum of 30 atoms" -> 269 / 3,196 / 22,619; the reading that gives exactly
    # these: fewer than 30 atoms in the irreducible formula, every element present
    space = enumerate_compositions(elements, max_atoms_per_formula=29, max_atoms_per_cell=29,
                                   include_subsystems=False)
    assert len(space) == expected
    assert all(len(c.counts) == len(elements) and reduce(math.gcd, c.as_dict().values()) == 1
               and c.natoms <= 29 for c in space)


def test_binary_count_is_coprime_pairs_and_30_atoms_would_differ():
    assert brute_force(2, 29) == 269 and brute_force(3, 29) == 3196
    space = enumerate_compositions(["Mg", "H"], max_atoms_per_formula=30, max_atoms_per_cell=30,
                                   include_subsystems=False)
    assert len(space) == brute_force(2, 30) == 277  # "≤ 30 atoms" is not the paper's reading


def test_mgcah_readings():
    # paper: Mg < 4, Ca < 4, H/metal ≤ 16 -> "827 irreducible compositions"; what each reading gives
    all_present = enumerate_compositions(["Mg", "Ca", "H"], max_atoms_per_cell=10**4,
                                         include_subsystems=False, **MGCAH)
    assert len(all_present) == 512
    with_subsystems = enumerate_compositions(["Mg", "Ca", "H"], max_atoms_per_cell=10**4, **MGCAH)
    assert with_subsystems.by_order() == {1: 3, 2: 135, 3: 512}  # Mg-H 64, Ca-H 64, Mg-Ca 7
    in_80_atom_cells = enumerate_compositions(["Mg", "Ca", "H"], max_atoms_per_cell=80, **MGCAH)
    assert len(in_80_atom_cells) == 626 and in_80_atom_cells.by_order()[3] == 488
    for c in with_subsystems:
        if c.is_subsystem and len(c.counts) == 1:
            continue
        assert c.count("Mg") <= 3 and c.count("Ca") <= 3
        assert c.count("H") <= 16 * (c.count("Mg") + c.count("Ca"))
    assert {"MgCaH32", "Mg3Ca3H94"} <= formulas(all_present)  # the ratio edge is included
    assert "MgCaH33" not in formulas(with_subsystems) and "H" in formulas(with_subsystems)


def test_bepno_readings_and_the_shipped_input():
    # paper: joins of known compounds + "all charge neutral compositions with fewer than 32 atoms"
    # -> 373. Be2+ P5+ N3- O2-, <= 31 atoms per formula:
    ox = {"Be": [2], "P": [5], "N": [-3], "O": [-2]}
    common = dict(max_atoms_per_formula=31, max_atoms_per_cell=59, oxidation_states=ox)
    assert enumerate_compositions(BEPNO, **common).by_order() == {1: 4, 2: 4, 3: 101, 4: 308}
    assert len(enumerate_compositions(BEPNO, include_subsystems=False, **common)) == 308
    from pathlib import Path

    from acnn_mpi.config import load_config
    from acnn_mpi.csp.compositions import compositions_from_config

    shipped = compositions_from_config(load_config(Path(__file__).parents[2] / "inputs" / "bepno.yaml"))
    assert len(shipped) == 366 and shipped.by_order() == {1: 4, 2: 4, 3: 44, 4: 314}
    assert shipped.notes == []  # every join composition fits a 59-atom cell
    # the paper's three stable phases and its pseudo-ternary corners are in the space
    assert {"BePNO2", "BeP3NO7", "BeP3N5O", "BeO", "P2O5", "P3N5", "Be", "N"} <= formulas(shipped)
    for c in shipped:  # every composition is charge neutral with these states
        assert 2 * c.count("Be") + 5 * c.count("P") - 3 * c.count("N") - 2 * c.count("O") == 0 \
            or len(c.counts) == 1


def test_charge_neutral_mg_o_is_mgo_up_to_scaling():
    space = enumerate_compositions(["Mg", "O"], max_atoms_per_formula=20, max_atoms_per_cell=8,
                                   oxidation_states={"Mg": [2], "O": [-2]})
    assert [(c.formula, c.formula_units, c.is_subsystem) for c in space] == [
        ("Mg", tuple(range(1, 9)), True), ("O", tuple(range(1, 9)), True), ("MgO", (1, 2, 3, 4), False)]


def test_mixed_valence_admits_fe3o4():
    common = dict(max_atoms_per_formula=7, max_atoms_per_cell=28, include_subsystems=False,
                  oxidation_states={"Fe": [2, 3], "O": [-2]})
    assert formulas(enumerate_compositions(["Fe", "O"], **common)) == {"FeO", "Fe2O3"}
    assert formulas(enumerate_compositions(["Fe", "O"], mixed_valence=True, **common)) == {
        "FeO", "Fe2O3", "Fe3O4"}


def test_per_element_bounds_and_ratio_bounds():
    space = enumerate_compositions(["Mg", "H"], max_atoms_per_formula=10, max_atoms_per_cell=10,
                                   per_element_bounds={"Mg": (1, 1), "H": (2, 4)})
    assert formulas(space) == {"Mg", "H", "MgH2", "MgH3", "MgH4"}
    space = enumerate_compositions(["Mg", "H"], max_atoms_per_formula=5, max_atoms_per_cell=5,
                                   ratio_bounds=[{"numerator": ["H"], "denominator": ["Mg"], "max": 1.5}],
                                   include_subsystems=False)
    expected = {f"{'Mg' if m == 1 else f'Mg{m}'}{'H' if h == 1 else f'H{h}'}"
                for m, h in itertools.product(range(1, 5), repeat=2)
                if m + h <= 5 and math.gcd(m, h) == 1 and h <= 1.5 * m}
    assert formulas(space) == expected == {"MgH", "Mg2H", "Mg3H", "Mg4H", "Mg2H3", "Mg3H2"}


def test_joins_pseudo_binary_and_ternary():
    # a grid that is empty (3 elements need ≥ 3 atoms), so only the join compositions remain
    space = enumerate_compositions(["Be", "P", "O"], max_atoms_per_formula=2, max_atoms_per_cell=40,
                                   joins=["BeO-P2O5"], join_max_coefficient=2, include_subsystems=False)
    assert formulas(space) == {"BeO", "P2O5", "BeP2O6", "BeP4O11", "Be2P2O7"}
    assert {c.formula: c.is_subsystem for c in space}["BeO"] is True
    assert all(c.origin == "join" for c in space)
    flat = enumerate_compositions(["Be", "P", "N", "O"], max_atoms_per_formula=3, max_atoms_per_cell=60,
                                  joins=["BeO", "P2O5", "P3N5"], join_max_coefficient=1,
                                  include_subsystems=False)
    assert formulas(flat) == {"BeO", "P2O5", "P3N5", "BeP2O6", "BeP3N5O", "PNO"}  # P2O5 + P3N5 = P5N5O5 = PNO
    ternary = enumerate_compositions(["Be", "P", "N", "O"], max_atoms_per_formula=3, max_atoms_per_cell=60,
                                     joins=[["BeO", "P2O5", "P3N5"]], join_max_coefficient=1,
                                     include_subsystems=False)
    assert formulas(ternary) == formulas(flat) | {"BeP5N5O6"}


def test_join_compositions_that_do_not_fit_the_cell_are_noted():
    space = enumerate_compositions(["Be", "P", "O"], max_atoms_per_formula=2, max_atoms_per_cell=14,
                                   joins=["BeO-P2O5"], join_max_coefficient=2, include_subsystems=False)
    assert formulas(space) == {"BeO", "P2O5", "BeP2O6", "Be2P2O7"}  # BeP4O11 (16 atoms) > 14
    assert any("join" in note for note in space.notes)


def test_formula_units_fit_the_cell_limits():
    space = enumerate_compositions(["Mg", "H"], max_atoms_per_formula=5, min_atoms_per_cell=6,
                                   max_atoms_per_cell=12, formulas=["Mg2H8"])
    by_formula = {c.formula: c for c in space}
    assert by_formula["MgH2"].formula_units == (2, 3, 4) and by_formula["MgH2"].cell_sizes == (6, 9, 12)
    assert by_formula["MgH4"].formula_units == (2,)  # 5 atoms: only 10 fits 6..12
    assert "Mg2H8" not in by_formula  # reduced to MgH4
    assert by_formula["MgH"].cell_counts(3) == {"Mg": 3, "H": 3}
    assert all(c.formula_units and all(6 <= n <= 12 for n in c.cell_sizes) for c in space)
    assert isinstance(space[0], Composition) and hash(space[0])
    capped = enumerate_compositions(["Mg", "H"], max_atoms_per_formula=5, max_atoms_per_cell=80,
                                    max_formula_units=4)
    assert {c.formula: c.formula_units for c in capped}["Mg"] == (1, 2, 3, 4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(elements=["Mg", "Qq"]), "unknown element symbol(s) 'Qq'"),
    (dict(elements=["Mg", "Mg"]), "more than once"),
    (dict(per_element_bounds={"Ca": (0, 3)}), "per_element_bounds names 'Ca'"),
    (dict(per_element_bounds={"H": (3, 1)}), "per_element_bounds.H = [3, 1]"),
    (dict(ratio_bounds=[(["H"], ["Ca"], 2)]), "ratio_bounds names 'Ca'"),
    (dict(oxidation_states={"Mg": [2]}), "oxidation_states misses ['H']"),
    (dict(formulas=["CaH2"]), "not in elements"),
    (dict(formulas=["MgH40"]), "does not fit a cell"),
    (dict(joins=["MgH2-MgH30"]), "end member MgH30 does not fit"),
    (dict(joins=["MgH2"]), "alone makes no join"),
    (dict(min_atoms_per_cell=30), "min_atoms_per_cell = 30 exceeds"),
    (dict(max_atoms_per_formula=0), "max_atoms_per_formula = 0"),
    (dict(oxidation_states={"Mg": [2], "H": [1]}, include_subsystems=False), "composition space is empty"),
])
def test_bad_input_names_the_setting(kwargs, message):
    settings = dict(elements=["Mg", "H"], max_atoms_per_formula=6, max_atoms_per_cell=20)
    settings.update(kwargs)
    with pytest.raises(UserError) as error:
        enumerate_compositions(settings.pop("elements"), **settings)
    assert message in str(error.value)


def test_cli_prints_count_and_table(acnn, tmp_path):
    path = tmp_path / "campaign.yaml"
    path.write_text("elements: [Mg, O]\ncompositions:\n  max_atoms_per_formula: 8\n"
                    "  max_atoms_per_cell: 8\n  oxidation_states: {Mg: [2], O: [-2]}\n"
                    "  charge_neutral: true\n")
    result = acnn(["compositions", str(path)])
    assert result.returncode == 0, result.stderr
    assert "3 irreducible compositions of Mg-O (2 elements, 1 binary; 2 in subsystems)" in result.stdout
    assert "MgO" in result.stdout and "1-4" in result.stdout


def test_cli_bad_campaign_exits_2(acnn, tmp_path):
    path = tmp_path / "campaign.yaml"
    path.write_text("elements: [Mg, H]\ncompositions:\n  max_atoms_per_formula: 50\n"
                    "  max_atoms_per_cell: 60\n  formulas: [MgH70]\n")
    result = acnn(["compositions", str(path)])
    assert result.returncode == 2
    assert "compositions.formulas: MgH70" in result.stderr
