"""Random symmetric structures: distances, volumes, symmetry, seeds, failures and bad input."""

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from acnn_mpi.csp import spacegroups
from acnn_mpi.csp.generation import (GenerationStats, StructureGenerator, generate_structures,
                                     iter_structures, settings_from_config)
from acnn_mpi.errors import UserError

# paper Eqs. 17-18 (Mg-Ca-H at 300 GPa)
D_MGCAH = {"Mg-Mg": 1.9, "Mg-Ca": 1.9, "Mg-H": 1.4, "Ca-Ca": 1.9, "Ca-H": 1.6, "H-H": 0.8}
V_MGCAH = {"Mg": 7.1, "Ca": 8.8, "H": 1.4}
MGCAH = dict(min_distances=D_MGCAH, atomic_volumes=V_MGCAH)


def closest_pairs(atoms):
    """{(A, B): shortest periodic distance} by ASE's neighbour list (independent of the generator)."""
    i, j, d = neighbor_list("ijd", atoms, 3.0, self_interaction=False)
    symbols = atoms.get_chemical_symbols()
    out = {}
    for a, b, dist in zip(i, j, d):
        key = tuple(sorted((symbols[a], symbols[b])))
        out[key] = min(out.get(key, np.inf), dist)
    return out


def invariant_under_group(atoms, number):
    """Every operation of the group (pyxtal's general position, conventional setting) maps the
    structure, given in the group's primitive cell, onto itself."""
    frac, z = atoms.get_scaled_positions(), atoms.numbers
    basis = np.array(spacegroups.PRIMITIVE_BASIS[spacegroups.centring(number)])  # a_p = M a_conv
    for op in spacegroups.pyxtal_group(number)[0].ops:
        conventional = frac @ basis  # x_conv = x_p M
        image = (conventional @ op.rotation_matrix.T + op.translation_vector) @ np.linalg.inv(basis)
        delta = image[:, None, :] - frac[None, :, :]
        delta -= np.round(delta)
        close = np.linalg.norm(delta @ atoms.cell.array, axis=-1) < 1e-6
        if not (close & (z[:, None] == z[None, :])).any(axis=1).all():
            return False
    return True


@pytest.mark.parametrize("counts", [
    {"Mg": 1, "H": 2}, {"Mg": 2, "H": 4}, {"Ca": 1, "H": 6}, {"Mg": 1, "Ca": 1, "H": 12},
    {"Mg": 2, "Ca": 1, "H": 9}, {"Ca": 2}, {"H": 8}])
def test_every_pair_and_the_volume_window_over_many_seeds(counts):
    base = sum(n * V_MGCAH[s] for s, n in counts.items())
    for seed in range(4):
        result = generate_structures(counts, 5, seed=seed, **MGCAH)
        assert result.complete, result.message
        for atoms in result.structures:
            assert atoms.get_chemical_symbols().count("H") == counts.get("H", 0)
            assert len(atoms) == sum(counts.values()) and atoms.pbc.all()
            assert 0.8 - 1e-9 <= atoms.get_volume() / base <= 1.2 + 1e-9
            for (a, b), d in closest_pairs(atoms).items():
                assert d >= D_MGCAH.get(f"{a}-{b}", D_MGCAH.get(f"{b}-{a}")) - 1e-9, (a, b, d)
            assert invariant_under_group(atoms, atoms.info["generated_space_group"])


def test_same_seed_same_structures_and_stream_equals_batch():
    counts = {"Mg": 1, "Ca": 1, "H": 12}
    first = generate_structures(counts, 4, seed=11, **MGCAH).structures
    again = generate_structures(counts, 4, seed=11, **MGCAH).structures
    other = generate_structures(counts, 4, seed=12, **MGCAH).structures
    streamed = list(iter_structures(counts, 4, seed=11, **MGCAH))
    for a, b, c in zip(first, again, streamed):
        assert np.array_equal(a.cell.array, b.cell.array) and np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.positions, c.positions) and a.info == c.info
    assert not any(np.allclose(a.cell.array, b.cell.array) for a, b in zip(first, other))
    # a worker's seed can be a tuple (campaign seed, iteration, task)
    one = next(iter_structures(counts, seed=(7, 2, 5), **MGCAH))
    two = next(iter_structures(counts, seed=(7, 2, 5), **MGCAH))
    assert np.array_equal(one.positions, two.positions)


@pytest.mark.parametrize("symmetry, allowed", [("noncentrosymmetric", spacegroups.NONCENTROSYMMETRIC),
                                               ("polar", spacegroups.POLAR)])
def test_symmetry_classes_restrict_the_groups(symmetry, allowed):
    result = generate_structures({"Mg": 2, "H": 4}, 12, seed=3, symmetry=symmetry, **MGCAH)
    assert result.complete
    assert {a.info["generated_space_group"] for a in result.structures} <= allowed
    result = generate_structures({"Mg": 2, "H": 4}, 6, seed=3, space_groups=[1, 2, 14, 225], **MGCAH)
    assert {a.info["generated_space_group"] for a in result.structures} <= {1, 2, 14}  # 225: 4·k atoms


def test_space_group_classes_match_spglib():
    import spglib

    first_hall = {}
    for hall in range(1, 531):
        first_hall.setdefault(spglib.get_spacegroup_type(hall).number, hall)
    inversion, polar = set(), set()
    for number, hall in first_hall.items():
        rotations = spglib.get_symmetry_from_database(hall)["rotations"]
        if any((r == -np.eye(3)).all() for r in rotations):
            inversion.add(number)
        if np.linalg.matrix_rank(np.concatenate([r - np.eye(3) for r in rotations])) < 3:
            polar.add(number)  # a direction left fixed by every rotation
    assert inversion == spacegroups.CENTROSYMMETRIC and len(spacegroups.NONCENTROSYMMETRIC) == 138
    assert polar == spacegroups.POLAR and len(polar) == 68


def test_compatibility_agrees_with_pyxtal():
    from pyxtal.symmetry import Group

    for number in range(1, 231, 7):
        group = Group(number)
        for counts in ([1], [2], [3], [1, 2], [2, 2, 12], [4, 4], [6, 2, 8], [3, 5], [1, 1, 1]):
            assert spacegroups.check_compatible(number, counts)[0] == group.check_compatible(counts)[0]
    assert len(spacegroups.compatible_space_groups([3, 3, 74])) == 37  # pyxtal: 37, in 20 s


def test_shipped_wyckoff_table_matches_pyxtal():
    from acnn_mpi.csp._wyckoff_table import WYCKOFF_CLASSES

    assert sorted(WYCKOFF_CLASSES) == list(range(1, 231))
    for number in (1, 2, 12, 47, 62, 141, 166, 191, 194, 221, 225, 227, 229, 230):
        assert WYCKOFF_CLASSES[number] == spacegroups.wyckoff_classes_from_pyxtal(number)


def test_failures_are_counted_not_hidden():
    # 40 H with d_min 1.5 Å at 2.95 Å³/atom: a 60 % sphere packing, beyond random placement
    stats = GenerationStats()
    stream = iter_structures({"H": 40}, 2, min_distances={"H-H": 1.5}, atomic_volumes={"H": 2.95},
                             volume_factor_range=(1.0, 1.0), max_attempts=2, seed=0, stats=stats)
    assert list(stream) == []
    assert stats.attempts == 4 and stats.missing == 2 and sum(stats.failures_per_group.values()) == 4
    result = generate_structures({"H": 40}, 3, min_distances={"H-H": 1.5}, atomic_volumes={"H": 2.95},
                                 volume_factor_range=(1.0, 1.0), max_attempts=1, give_up_after=2, seed=0)
    assert not result.complete and result.stats.gave_up and result.attempts == 2
    assert "0 of 3 structures" in result.message and "gave up" in result.message
    assert sum(result.attempts_per_group.values()) == result.attempts


def test_defaults_and_config(tmp_path):
    from acnn_mpi.config import load_config

    atoms = generate_structures({"Cu": 2, "Pt": 2}, 1, seed=0).structures[0]  # covalent defaults
    assert len(atoms) == 4
    path = tmp_path / "campaign.yaml"
    path.write_text("elements: [Mg, Ca, H]\ngeneration:\n  min_distances: [[1.9, 1.9, 1.4], "
                    "[1.9, 1.9, 1.6], [1.4, 1.6, 0.8]]\n  atomic_volumes: {Mg: 7.1, Ca: 8.8, H: 1.4}\n"
                    "  symmetry: polar\n")
    settings = settings_from_config(load_config(path), seed=5)
    result = generate_structures({"Mg": 1, "H": 2}, 2, **settings)
    assert result.complete and {a.info["generated_space_group"] for a in result.structures} <= spacegroups.POLAR


@pytest.mark.parametrize("counts, kwargs, message", [
    ({"Mg": 1, "Qq": 2}, {}, "unknown element symbol(s) 'Qq'"),
    ({"Mg": 0}, {}, "Mg count 0"),
    ({}, {}, "empty composition"),
    ({"Mg": 1, "H": 2}, dict(min_distances={"Mg-Mg": 2.0, "H-H": 0.8}), "no value for Mg-H"),
    ({"Mg": 1, "H": 2}, dict(atomic_volumes={"Mg": 7.1}), "atomic_volumes has no value for H"),
    ({"Mg": 1, "H": 2}, dict(atomic_volumes={"Mg": 7.1, "H": -1}), "atomic_volumes.H = -1.0"),
    ({"Mg": 1, "H": 2}, dict(volume_factor_range=(1.2, 0.8)), "volume_factor = [1.2, 0.8]"),
    ({"Mg": 1, "H": 2}, dict(symmetry="chiral"), "generation.symmetry = 'chiral'"),
    ({"Mg": 1, "H": 2}, dict(space_groups=[231]), "231 is not a space-group number"),
    ({"Mg": 1, "H": 1}, dict(space_groups=[229, 230]), "no allowed space group"),
    ({"H": 8}, dict(min_distances={"H-H": 2.0}, atomic_volumes={"H": 1.4}), "cannot be packed"),
    ({"Mg": 1, "H": 2}, dict(max_attempts=0), "max_attempts = 0"),
])
def test_bad_input_raises_before_work(counts, kwargs, message):
    settings = dict(MGCAH)
    settings.update(kwargs)
    with pytest.raises(UserError) as error:
        iter_structures(counts, 1, **settings)
    assert message in str(error.value)


def test_generator_reports_its_formula_and_groups():
    generator = StructureGenerator({"Mg": 1, "Ca": 1, "H": 12}, seed=0, **MGCAH)
    assert generator.formula == "MgCaH12" and 1 in generator.space_groups
    assert generator.space_groups == spacegroups.compatible_space_groups([1, 1, 12], primitive=True)


def test_centring_table_matches_pyxtal():
    """Letter of every group from pyxtal's symbol; its centring translations are lattice vectors of
    the primitive basis, which has 1/c of the conventional volume."""
    for number in range(1, 231):
        group = spacegroups.pyxtal_group(number)
        letter = spacegroups.centring(number)
        assert group.symbol[0] == letter, (number, group.symbol)
        translations = [op.translation_vector for op in group[0].ops
                        if np.allclose(op.rotation_matrix, np.eye(3))]
        assert len(translations) == spacegroups.centring_multiplicity(number)
        basis = np.array(spacegroups.PRIMITIVE_BASIS[letter])
        assert np.isclose(abs(np.linalg.det(basis)), 1 / len(translations))
        in_primitive = np.array(translations) @ np.linalg.inv(basis)
        assert np.allclose(in_primitive, np.round(in_primitive), atol=1e-9)


@pytest.mark.parametrize("number, counts", [
    (229, {"H": 1}),                 # Im-3m, I: bcc in one atom
    (139, {"Ca": 1, "H": 4}),        # I4/mmm, I
    (12, {"Mg": 1, "H": 6}),         # C2/m, C
    (63, {"Mg": 2, "Ca": 2, "H": 8}),  # Cmcm, C
    (38, {"Mg": 1, "H": 4}),         # Amm2, A
    (225, {"Ca": 1, "H": 2}),        # Fm-3m, F: fluorite in three atoms
    (227, {"Mg": 2, "H": 4}),        # Fd-3m, F
    (166, {"Ca": 1, "H": 6}),        # R-3m, R
    (148, {"Mg": 1, "Ca": 1, "H": 12}),  # R-3, R
])
def test_centred_groups_are_built_in_the_primitive_cell(number, counts):
    import spglib

    multiplicity = spacegroups.centring_multiplicity(number)
    assert multiplicity > 1
    base = sum(n * V_MGCAH[s] for s, n in counts.items())
    result = generate_structures(counts, 3, seed=number, space_groups=[number], **MGCAH)
    assert result.complete, result.message
    for atoms in result.structures:
        assert len(atoms) == sum(counts.values())  # = conventional atoms / centring multiplicity
        assert 0.8 - 1e-9 <= atoms.get_volume() / base <= 1.2 + 1e-9
        for (a, b), d in closest_pairs(atoms).items():
            assert d >= D_MGCAH.get(f"{a}-{b}", D_MGCAH.get(f"{b}-{a}")) - 1e-9, (a, b, d)
        assert invariant_under_group(atoms, number)
        cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
        found = spglib.get_symmetry_dataset(cell, symprec=1e-4)
        if found.number == number:  # the cell generated is spglib's primitive cell
            assert len(spglib.find_primitive(cell, symprec=1e-4)[2]) == len(atoms)
        else:  # atoms on special positions: a supergroup, at least the drawn point group
            assert len(found.rotations) >= len(spacegroups.pyxtal_group(number)[0].ops) // multiplicity
    primitive = [a for a in result.structures
                 if spglib.get_symmetry_dataset((a.cell.array, a.get_scaled_positions(), a.numbers),
                                                symprec=1e-4).number == number]
    assert primitive, "no structure kept the drawn group"


def test_atom_limits_count_primitive_atoms():
    """A 1-atom cell of H admits the centred cubic groups; conventional counting allowed none."""
    groups = spacegroups.compatible_space_groups([1], primitive=True)
    assert {225, 229, 166} <= set(groups)
    assert not {225, 229, 166} & set(spacegroups.compatible_space_groups([1]))
    generator = StructureGenerator({"Mg": 1, "H": 2}, seed=0, **MGCAH)
    assert 225 in generator.space_groups  # fluorite MgH2 in 3 atoms
