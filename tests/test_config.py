"""The campaign configuration: paper defaults, shipped inputs, and one clear error per bad input."""

from pathlib import Path

import pytest

from acnn_mpi.config import CampaignConfig, config_from_dict, load_config
from acnn_mpi.errors import UserError

INPUTS = Path(__file__).resolve().parents[1] / "inputs"


def test_paper_defaults():
    config = CampaignConfig(elements=["Mg", "Ca", "H"])
    m, t, s = config.model, config.training, config.search
    assert (m.r_cut_radial, m.r_cut_angular, m.n_radial, m.n_angular, m.l_max) == (5.0, 4.0, 16, 14, 4)
    assert m.embedding == [64, 64] and m.fitting == [256, 256] and m.attention_layers == 0
    assert (t.steps, t.decay_steps, t.lr_decay) == (100_000, 10_000, 0.97)
    assert (t.p_energy, t.p_force_start, t.p_force_end, t.p_virial) == (0.1, 10.0, 0.1, 0.1)
    assert t.lr_schedule == "staircase" and t.p_energy_end is None and t.ema_decay == 0.999
    for name in ("mgcah_300gpa.yaml", "bepno.yaml"):  # the paper's inputs keep the paper's recipe
        paper = load_config(INPUTS / name).training
        assert paper.lr_schedule == "staircase" and paper.ema_decay is None
    assert (s.initial_structures, s.c_max, s.l_max) == (500, 300, 3)
    assert config.relax.fmax_ev_per_a == 1e-3 and config.relax.dh_tol_ev_per_atom == 1e-6


@pytest.mark.parametrize("name", ["demo.yaml", "demo_pressures.yaml", "mgcah_300gpa.yaml", "bepno.yaml"])
def test_shipped_inputs_are_valid(name):
    config = load_config(INPUTS / name)
    table = config.min_distance_table()
    for a in config.elements:
        for b in config.elements:
            assert table[(a, b)] == table[(b, a)] > 0
    assert Path(config.output_dir).is_absolute()


def test_paper_matrices_and_schedule():
    mgcah = load_config(INPUTS / "mgcah_300gpa.yaml")
    assert mgcah.pressure == 300.0
    assert mgcah.min_distance_table()[("H", "Ca")] == 1.6
    assert mgcah.atomic_volume_table() == {"Mg": 7.1, "Ca": 8.8, "H": 1.4}
    bepno = load_config(INPUTS / "bepno.yaml")
    assert bepno.min_distance_table()[("O", "Be")] == 1.3
    assert bepno.selection_at(0) == (270, 2) and bepno.selection_at(4) == (270, 2)
    assert bepno.selection_at(5) == (95, 4) and bepno.selection_at(28) == (95, 4)


@pytest.mark.parametrize("data, expected", [
    ({"elements": ["Cu", "Xx"]}, "unknown element symbol 'Xx'"),
    ({"elements": ["Cu"], "model": {"r_cut_radial": -1.0}}, "model.r_cut_radial = -1.0"),
    ({"elements": ["Cu"], "model": {"r_cut_radial": 4.0, "r_cut_angular": 5.0}},
     "r_cut_angular = 5.0 Å is larger than r_cut_radial = 4.0 Å"),
    ({"elements": ["Cu", "Au"], "generation": {"min_distances": [[2.0, 2.1], [2.2, 2.3]]}},
     "generation.min_distances: the matrix is not symmetric"),
    ({"elements": ["Cu", "Au"], "generation": {"min_distances": {"Cu-Cu": 2.0, "Au-Au": 2.3}}},
     "generation.min_distances: no value for the pair(s) Cu-Au"),
    ({"elements": ["Cu"], "modle": {}}, "modle: unknown key"),
    ({"elements": ["Cu"], "relax": {"max_steps": "many"}}, "relax.max_steps = 'many'"),
    ({"elements": "Cu"}, "elements = 'Cu': Input should be a valid list"),
    ({"elements": ["Cu"], "labeller": {"kind": "command"}}, "kind 'command' needs `command`"),
    ({"elements": ["Cu"], "labeller": {"kind": "ase", "calculater": "x"}}, "labeller.calculater: unknown key"),
    ({"elements": ["Mg", "O"], "compositions": {"charge_neutral": True}}, "oxidation_states is empty"),
    ({"elements": ["Cu"], "pressure": []}, "pressure = []: an empty list"),
    ({"elements": ["Cu"], "pressure": [100, "high"]}, "give a number (GPa) or a list of numbers"),
    ({"elements": ["Cu"], "pressure": [100, 100.0]}, "lists a pressure twice"),
    ({"elements": ["Cu"], "pressure": list(range(11))}, "11 pressures: a campaign searches at most 10"),
])
def test_bad_input_names_the_field(data, expected):
    with pytest.raises(UserError) as error:
        config_from_dict(data, source="t.yaml")
    message = str(error.value)
    assert expected in message, message
    assert "\n" not in message and "Traceback" not in message


def test_pressure_lists():
    """A list is several pressures (increasing order), a one-element list or a number is one."""
    from acnn_mpi.config import resolved_yaml

    config = config_from_dict({"elements": ["Cu"], "pressure": [300, 100, 200]})
    assert config.pressures_gpa == [100.0, 200.0, 300.0] and config.several_pressures
    at = config.at_pressure(200)
    assert at.pressure == 200.0 and at.pressures_gpa == [200.0] and config.pressure == [100.0, 200.0, 300.0]
    with pytest.raises(ValueError, match="not a pressure of the campaign"):
        config.at_pressure(150)
    for value in ([150], 150, 150.0):
        one = config_from_dict({"elements": ["Cu"], "pressure": value})
        assert one.pressure == 150.0 and one.pressures_gpa == [150.0] and not one.several_pressures
    import yaml

    again = config_from_dict(yaml.safe_load(resolved_yaml(config)))
    assert again.pressures_gpa == config.pressures_gpa
    assert load_config(INPUTS / "demo_pressures.yaml").pressures_gpa == [0.0, 20.0, 40.0]


def test_default_labeller_is_emt():
    labeller = CampaignConfig(elements=["Cu"]).labeller
    assert (labeller.kind, labeller.calculator) == ("ase", "ase.calculators.emt.EMT")


def test_missing_file_says_what_to_create(tmp_path):
    with pytest.raises(UserError, match="not found: create it"):
        load_config(tmp_path / "campaign.yaml")


def test_old_relax_key_names_the_new_one(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("elements: [Cu]\nrelax: {fmax: 0.01}\n")
    with pytest.raises(UserError, match=r"relax.fmax: renamed to relax.fmax_ev_per_a"):
        load_config(path)


def test_removed_parallel_keys_say_what_to_do(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("elements: [Cu]\nparallel: {threads_per_rank: 4}\n")
    with pytest.raises(UserError, match=r"parallel.threads_per_rank: no longer a campaign setting.*--threads N"):
        load_config(path)
