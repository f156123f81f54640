"""Every bad input is one line on stderr naming the file or setting, exit code 2, no traceback, and
nothing of what was given is changed: a corpus of broken campaign files, flags, damaged campaign
states, damaged HDF5 stores, checkpoints and models, unusable output places and a full disk.

The command line runs in-process (``acnn_mpi.cli.main``); only the MPI cases start processes.
"""

import errno
import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from acnn_mpi.campaign.state import CampaignState, save_state
from acnn_mpi.cli import main
from acnn_mpi.data.store import FrameStore
from tests.conftest import REPO, run_python
from tests.data.helpers import emt_frames

TINY = REPO / "tests" / "campaign" / "tiny.yaml"
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d ")


def cli(capsys, *argv):
    """(exit code, stdout, stderr) of ``python -m acnn_mpi ARGV`` run in this process."""
    capsys.readouterr()
    try:
        argv = [str(a) for a in argv]
        code = main([argv[0], "--threads", "1", *argv[1:]])
    except SystemExit as stop:  # argparse
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(result, *names):
    """Exit 2, no traceback, one ``error:`` line (the rest of stderr only log lines) naming each
    of ``names``; returns the error line."""
    code, out, err = result
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    others = [line for line in err.splitlines() if line.strip() and not line.startswith("error:")
              and not LOG_LINE.match(line)]
    assert code == 2 and len(errors) == 1 and not others, (code, err)
    for name in names:
        assert str(name) in errors[0], (name, errors[0])
    return errors[0]


def snapshot(directory: Path) -> dict:
    """Every file under ``directory`` and its bytes (to show that nothing was changed)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(Path(directory).rglob("*"))
            if p.is_file()}


# -- campaign files ---------------------------------------------------------------------------------

GOOD = TINY.read_text()

CAMPAIGN_FILES = {
    "not UTF-8": (b"elements: [Cu]\nname: caf\xe9\n", "not UTF-8"),
    "binary": (bytes(range(256)) * 8, "binary file"),
    "PNG": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
    "duplicate key": (b"elements: [Cu]\npressure: 10\npressure: 20\n", "'pressure' is given twice"),
    "duplicate nested key": (b"elements: [Cu]\nrelax: {fmax_ev_per_a: 0.1, fmax_ev_per_a: 0.2}\n", "'fmax_ev_per_a' is given twice"),
    "NaN pressure": (b"elements: [Cu]\npressure: .nan\n", "pressure = nan"),
    "infinite pressure": (b"elements: [Cu]\npressure: .inf\n", "pressure = inf"),
    "-inf energy floor": (b"elements: [Cu]\nrelax: {energy_floor_ev_per_atom: -.inf}\n", "relax.energy_floor_ev_per_atom = -inf"),
    "NaN volume window": (b"elements: [Cu]\nrelax: {volume_window_a3_per_atom: [1, .nan]}\n", "relax.volume_window_a3_per_atom[1]"),
    "NaN labeller timeout": (b"elements: [Cu]\nlabeller: {kind: ase, calculator: ase.calculators.emt.EMT, "
                             b"timeout: .nan}\n", "labeller.timeout = nan"),
    "NaN min distance": (b"elements: [Cu]\ngeneration: {min_distances: {Cu-Cu: .nan}}\n",
                         "generation.min_distances.Cu-Cu"),
    "bool count": (b"elements: [Cu]\nsearch: {initial_structures: true}\n", "search.initial_structures"),
    "bool in widths": (b"elements: [Cu]\nmodel: {embedding: [true, 8]}\n", "model.embedding"),
    "bool float": (b"elements: [Cu]\nrelax: {fmax_ev_per_a: false}\n", "relax.fmax_ev_per_a"),
    "missing calculator": (b"elements: [Cu]\nlabeller: {kind: ase, calculator: ase.calculators.nosuch.Calc}\n",
                           "ase.calculators.nosuch"),
    "calculator not in module": (b"elements: [Cu]\nlabeller: {kind: ase, calculator: ase.calculators.emt.Nope}\n",
                                 "labeller.calculator"),
    "isolated missing calculator": (b"elements: [Cu]\nlabeller: {kind: ase, isolate: true, "
                                    b"calculator: nosuch_pkg.Calc}\n", "nosuch_pkg"),
    "program not on PATH": (b"elements: [Cu]\nlabeller: {kind: command, input_format: extxyz, "
                            b"command: 'no_such_code_xyz -in {input} > {output}'}\n", "no_such_code_xyz"),
    "missing copied file": (b"elements: [Cu]\nlabeller: {kind: ase, calculator: ase.calculators.emt.EMT, "
                            b"copy_files: [no_such_POTCAR]}\n", "no_such_POTCAR"),
}


@pytest.mark.parametrize("name", CAMPAIGN_FILES)
def test_bad_campaign_file_is_refused_by_check(capsys, tmp_path, name):
    data, words = CAMPAIGN_FILES[name]
    path = tmp_path / "campaign.yaml"
    path.write_bytes(data)
    assert_refused(cli(capsys, "check", path), path, words)


@pytest.mark.parametrize("name", ["not UTF-8", "duplicate key", "NaN pressure", "bool count",
                                  "missing calculator", "program not on PATH"])
def test_run_refuses_the_same_files_before_any_work(capsys, tmp_path, name):
    data, words = CAMPAIGN_FILES[name]
    path = tmp_path / "campaign.yaml"
    path.write_bytes(data)
    assert_refused(cli(capsys, "run", path, "--output-dir", tmp_path / "out"), words)
    assert not (tmp_path / "out").exists()


def test_a_directory_given_as_the_campaign_file(capsys, tmp_path):
    folder = tmp_path / "campaign.yaml"
    folder.mkdir()
    for command in ("check", "run"):
        line = assert_refused(cli(capsys, command, folder), folder, "is a directory")
        assert "not found" not in line


def test_output_dir_that_is_a_file_is_refused_by_check(capsys, tmp_path):
    (tmp_path / "busy").write_text("a file")
    path = tmp_path / "campaign.yaml"
    path.write_text(GOOD + "output_dir: busy\n")
    assert_refused(cli(capsys, "check", path), "output_dir", tmp_path / "busy", "not a directory")


def test_good_file_still_checks(capsys, tmp_path):
    code, out, err = cli(capsys, "check", TINY)
    assert code == 0 and "valid; resolved settings" in out, err


# -- flags -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, flag", [
    (["relax", "--model", "lj", "--input", "in.xyz", "--out", "o", "--pressure", "nan"], "--pressure"),
    (["relax", "--model", "lj", "--input", "in.xyz", "--out", "o", "--fmax", "inf"], "--fmax"),
    (["relax", "--model", "lj", "--input", "in.xyz", "--out", "o", "--volume-window", "1", "-inf"],
     "--volume-window"),
    (["relax", "--model", "lj", "--input", "in.xyz", "--out", "o", "--min-distances", "Cu-Cu=inf"],
     "--min-distances"),
    (["relax", "--model", "lj:nan,2.5", "--input", "in.xyz", "--out", "o"], "--model"),
    (["hull", "results.xyz", "--pressure", "inf"], "--pressure"),
    (["hull", "results.xyz", "--symprec", "0"], "--symprec"),
    (["run", "campaign.yaml", "--max-iterations", "-1"], "--max-iterations"),
    (["relax", "--model", "lj", "--input", "in.xyz", "--out", "o", "--min-distance-fraction", "2"],
     "--min-distance-fraction"),
    (["relax", "--model", "lj", "--input", "in.xyz", "--out", "o", "--batch-size", "0"], "--batch-size"),
    (["hull", "results.xyz", "--ehull-max", "nan"], "--ehull-max"),
    (["report", "somewhere", "--ehull-window", "nan"], "--ehull-window"),
    (["label", "--input", "in.xyz", "--out", "l.h5", "--calculator", "x.Y", "--pressure", "NaN"], "--pressure"),
    (["data", "import", "in.xyz", "--store", "s.h5", "--min-distance", "inf"], "--min-distance"),
    (["train", "--data", "d.h5", "--out", "o", "--steps", "many"], "--steps"),
])
def test_non_finite_or_malformed_flags(capsys, tmp_path, monkeypatch, argv, flag):
    monkeypatch.chdir(tmp_path)
    if argv[0] == "relax":
        (tmp_path / "in.xyz").write_text("2\nLattice=\"4 0 0 0 4 0 0 0 4\" Properties=species:S:1:pos:R:3\n"
                                         "Cu 0 0 0\nCu 2 2 2\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_refused(cli(capsys, *argv), flag)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# -- a damaged campaign state --------------------------------------------------------------------------

def _state_text():
    state = CampaignState(iteration=1, stage="csp")
    state.record(0).labelled = 16
    from dataclasses import asdict

    return json.dumps(asdict(state), indent=1)


DAMAGED_STATES = {
    "empty": "",
    "truncated": _state_text()[:60],
    "not JSON": "iteration: 1\n",
    "binary": "\x00\x01\x02",
    "a list": "[1, 2, 3]",
    "string iteration": _state_text().replace('"iteration": 1', '"iteration": "one"'),
    "unknown stage": _state_text().replace('"csp"', '"cooking"'),
    "history not a list": json.dumps({**json.loads(_state_text()), "history": {"0": 1}}),
    "history entry wrong type": _state_text().replace('"labelled": 16', '"labelled": "16"'),
    "history entry without iteration": json.dumps({**json.loads(_state_text()), "history": [{"labelled": 3}]}),
}


@pytest.mark.parametrize("name", DAMAGED_STATES)
def test_damaged_state_is_refused_by_run_report_and_check(capsys, tmp_path, name):
    campaign = tmp_path / "c"
    campaign.mkdir()
    (campaign / "state.json").write_text(DAMAGED_STATES[name])
    before = snapshot(campaign)
    state = campaign / "state.json"
    for argv in (["run", TINY, "--output-dir", campaign], ["report", campaign]):
        line = assert_refused(cli(capsys, *argv), state)
        assert "move it away" in line
    config = tmp_path / "campaign.yaml"
    config.write_text(GOOD + f"output_dir: {campaign}\n")
    assert_refused(cli(capsys, "check", config), state)
    assert snapshot(campaign) == before and sorted(p.name for p in campaign.iterdir()) == ["state.json"]


@pytest.mark.parametrize("text", ["", "{\"stable\": [", "[1, 2]", "{\"stable\": 3}"])
def test_damaged_hull_json_is_refused_by_report(capsys, tmp_path, text):
    from acnn_mpi.campaign.state import CampaignState, save_state

    campaign = tmp_path / "c"
    (campaign / "iter_001").mkdir(parents=True)
    save_state(campaign, CampaignState(iteration=2, stage="csp"))
    hull = campaign / "iter_001" / "hull.json"
    hull.write_text(text)
    line = assert_refused(cli(capsys, "report", campaign), hull)
    assert "move it away" in line


# -- damaged HDF5 stores -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "good.h5"
    with FrameStore(path, "w") as store:
        store.append(emt_frames(8))
    return path


def _overwrite(path, offset, data):
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def _damage(path: Path, how: str) -> None:
    """Damage the store at ``path`` in place, in one of the ways of STORE_DAMAGE."""
    with h5py.File(path, "r") as f:
        header = h5py.h5o.get_info(f["frames/energy"].id).addr
        numbers_chunk = f["atoms/numbers"].id.get_chunk_info(0).byte_offset
        energy_chunk = f["frames/energy"].id.get_chunk_info(0).byte_offset
    if how == "truncated":
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size // 2)
    elif how == "superblock overwritten":
        _overwrite(path, 0, b"\xab" * 16)
    elif how == "dataset header overwritten":
        _overwrite(path, header, b"\xab" * 64)
    elif how == "metadata block overwritten":
        _overwrite(path, 2048, b"\xab" * 4096)
    elif how == "atomic numbers overwritten":
        _overwrite(path, numbers_chunk, b"\xff" * 64)
    elif how == "energies overwritten":
        _overwrite(path, energy_chunk, b"\xff" * 64)
    else:
        with h5py.File(path, "a") as f:
            if how == "dataset missing":
                del f["frames/energy"]
            elif how == "group missing":
                del f["atoms"]
            elif how == "commit count not a number":
                f.attrs["n_frames"] = "many"
            elif how == "negative commit count":
                f.attrs["n_frames"] = -3
            elif how == "wrong shape":
                del f["atoms/positions"]
                f["atoms"].create_dataset("positions", data=np.zeros((24, 2)))
            else:
                raise ValueError(how)


STORE_DAMAGE = ["truncated", "superblock overwritten", "dataset header overwritten",
                "metadata block overwritten", "atomic numbers overwritten", "energies overwritten",
                "dataset missing", "group missing", "commit count not a number",
                "negative commit count", "wrong shape"]


@pytest.mark.parametrize("how", STORE_DAMAGE)
def test_damaged_store_under_data_info_export_and_train(capsys, tmp_path, good_store, how):
    store = tmp_path / "labels.h5"
    shutil.copy(good_store, store)
    _damage(store, how)
    before = store.read_bytes()
    for argv in (["data", "info", store], ["data", "export", "--store", store, tmp_path / "out.xyz"]):
        assert "damaged" in assert_refused(cli(capsys, *argv), store) or how in ("truncated", "superblock overwritten")
    if how != "energies overwritten":  # training leaves frames with NaN labels out and says so
        assert_refused(cli(capsys, "train", "--data", store, "--out", tmp_path / "t", "--steps", 1), store)
    assert store.read_bytes() == before
    assert not (tmp_path / "out.xyz").exists()


def test_a_directory_given_as_a_store(capsys, tmp_path):
    assert_refused(cli(capsys, "data", "info", tmp_path), tmp_path, "is a directory")


# -- a campaign resumed on damaged files -----------------------------------------------------------------

def _campaign(tmp_path, good_store, stage, iteration=0):
    campaign = tmp_path / "c"
    campaign.mkdir()
    save_state(campaign, CampaignState(iteration=iteration, stage=stage))
    shutil.copy(good_store, campaign / "labels.h5")
    return campaign


@pytest.mark.parametrize("how", ["metadata block overwritten", "dataset missing", "commit count not a number"])
def test_campaign_resume_on_a_damaged_label_store(capsys, tmp_path, good_store, how):
    campaign = _campaign(tmp_path, good_store, "train")
    _damage(campaign / "labels.h5", how)
    before = snapshot(campaign)
    assert_refused(cli(capsys, "run", TINY, "--output-dir", campaign), campaign / "labels.h5", "mv ")
    assert snapshot(campaign) == before


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x03\x04" + bytes(60), "a list", "no optimizer"])
def test_campaign_resume_on_a_damaged_checkpoint(capsys, tmp_path, good_store, content):
    campaign = _campaign(tmp_path, good_store, "train")
    checkpoint = campaign / "train_000" / "checkpoint.pt"
    checkpoint.parent.mkdir()
    if content == "a list":
        torch.save([1, 2], checkpoint)
    elif content == "no optimizer":
        torch.save({"format": "acnn_mpi.checkpoint", "version": 1, "step": 3}, checkpoint)
    else:
        checkpoint.write_bytes(content)
    before = snapshot(campaign)
    line = assert_refused(cli(capsys, "run", TINY, "--output-dir", campaign), checkpoint)
    assert "start this training over" in line
    assert_refused(cli(capsys, "train", "--data", campaign / "labels.h5", "--out", checkpoint.parent,
                       "--resume", "--steps", 1), checkpoint)
    assert snapshot(campaign) == before


def test_campaign_resume_on_a_damaged_model(capsys, tmp_path, good_store):
    campaign = _campaign(tmp_path, good_store, "csp", iteration=1)
    (campaign / "models").mkdir()
    (campaign / "models" / "model_000.pt").write_bytes(b"PK\x03\x04 torn")
    before = snapshot(campaign)
    assert_refused(cli(capsys, "run", TINY, "--output-dir", campaign), "model_000.pt")
    assert snapshot(campaign) == before


@pytest.mark.parametrize("stage", ["csp", "process"])
def test_campaign_resume_on_a_damaged_shard(capsys, tmp_path, good_store, stage):
    campaign = _campaign(tmp_path, good_store, stage, iteration=1)
    chunk = campaign / "iter_001" / "relax" / "shards" / "rank0003.h5"
    chunk.parent.mkdir(parents=True)
    chunk.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    if stage == "csp":
        from acnn_mpi.config import ModelSettings
        from acnn_mpi.train.models import build_acnn, save_model

        save_model(build_acnn(ModelSettings(embedding=[4], fitting=[4], n_radial=2, n_angular=2),
                              ["Cu", "Pt"]), campaign / "models" / "model_000.pt")
    before = snapshot(campaign)
    line = assert_refused(cli(capsys, "run", TINY, "--output-dir", campaign), chunk, "mv ")
    assert ("relaxed again" in line) == (stage == "csp") and "model_000" not in line
    assert snapshot(campaign) == before


# -- models --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["text", "empty", "HDF5 store", "torch list", "torn archive", "directory"])
def test_train_refine_from_a_file_that_is_not_a_model(capsys, tmp_path, good_store, kind):
    model = tmp_path / "model.pt"
    if kind == "text":
        model.write_text("not a model\n")
    elif kind == "empty":
        model.write_bytes(b"")
    elif kind == "HDF5 store":
        shutil.copy(good_store, model)
    elif kind == "torch list":
        torch.save([1, 2, 3], model)
    elif kind == "torn archive":
        model.write_bytes(b"PK\x03\x04" + bytes(100))
    else:
        model.mkdir()
    assert_refused(cli(capsys, "train", "--data", good_store, "--out", tmp_path / "t", "--steps", 1,
                       "--refine", model), model)
    assert not (tmp_path / "t" / "model.pt").exists()


# -- output places ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def structures(tmp_path_factory):
    import ase.io
    from ase.build import bulk

    folder = tmp_path_factory.mktemp("structures")
    frames = []
    for symbol, a, enthalpy in (("Cu", 3.61, -3.5), ("Pt", 3.92, -5.8)):
        atoms = bulk(symbol, "fcc", a=a)
        atoms.info["enthalpy"] = enthalpy
        frames.append(atoms)
    ase.io.write(folder / "in.xyz", frames, format="extxyz")
    return folder / "in.xyz"


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_output_places_that_cannot_be_directories(capsys, tmp_path, good_store, structures, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    target = blocker if where == "a file" else blocker / "sub"
    report_dir = tmp_path / "campaign"
    report_dir.mkdir()
    save_state(report_dir, CampaignState())
    cases = [
        (["run", TINY, "--output-dir", target], "--output-dir"),
        (["relax", "--model", "lj", "--input", structures, "--out", target], "--out"),
        (["train", "--data", good_store, "--out", target, "--steps", 1], "--out"),
        (["hull", structures, "--export-cif", target], "--export-cif"),
        (["hull", structures, "--export-poscar", target], "--export-poscar"),
        (["report", report_dir, "--out", target], "--out"),
        (["label", "--input", structures, "--out", target / "labels.h5", "--calculator",
          "ase.calculators.emt.EMT"], "--out"),
    ]
    for argv, flag in cases:
        assert_refused(cli(capsys, *argv), flag, blocker)
    assert blocker.read_text() == "a file"


# -- a full disk -------------------------------------------------------------------------------------------

def test_full_disk_while_labelling_is_one_line_and_resumes(capsys, tmp_path, monkeypatch):
    """The second commit to labels.h5 fails with ENOSPC (its rows are written, the commit count is
    not raised): one line naming the store; the same command then finishes the labels, none lost
    or twice."""
    from acnn_mpi.campaign import controller

    config = tmp_path / "campaign.yaml"
    config.write_text(GOOD.replace("initial_structures: 16", "initial_structures: 6"))
    campaign = tmp_path / "c"
    commits = []
    real_commit = FrameStore._commit

    def disk_full_on_second_commit(self):
        commits.append(1)
        if len(commits) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        real_commit(self)

    monkeypatch.setattr(FrameStore, "_commit", disk_full_on_second_commit)
    from acnn_mpi.campaign import stages

    monkeypatch.setattr(stages.Train, "work", lambda self, k, plan: stages.STOPPED)  # stop after labels
    line = assert_refused(cli(capsys, "run", config, "--output-dir", campaign), campaign / "labels.h5")
    assert "no space left" in line and "run the same command again" in line
    assert json.loads((campaign / "state.json").read_text())["stage"] == "label"
    with FrameStore(campaign / "labels.h5", "r") as store:
        assert len(store) == 1
    assert not list(campaign.glob("*.tmp"))

    monkeypatch.setattr(FrameStore, "_commit", real_commit)
    code, _, err = cli(capsys, "run", config, "--output-dir", campaign)
    assert code == controller.EXIT_STOPPED, err
    with FrameStore(campaign / "labels.h5", "r") as store:
        ids = store.column("structure_id")
    assert len(ids) == 6 and len(set(ids.tolist())) == 6
    assert json.loads((campaign / "state.json").read_text())["stage"] == "train"


def test_full_disk_while_writing_a_checkpoint_names_it(tmp_path, monkeypatch):
    from acnn_mpi.parallel.guard import environment_message
    from acnn_mpi.train import checkpoint as checkpoint_module

    path = tmp_path / "checkpoint.pt"
    checkpoint_module.save_checkpoint(path, {"step": 1})
    before = path.read_bytes()

    def full(obj, handle):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", full)
    with pytest.raises(OSError) as raised:
        checkpoint_module.save_checkpoint(path, {"step": 2})
    assert str(path) in environment_message(raised.value)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_full_disk_messages_name_the_file():
    from acnn_mpi.parallel.guard import environment_message

    h5_style = OSError("Can't write data (file write failed: time = Tue, filename = '/scratch/c/labels.h5', "
                       "file descriptor = 5, errno = 28, error message = 'No space left on device')")
    assert "no space left" in environment_message(h5_style) and "/scratch/c/labels.h5" in environment_message(h5_style)
    assert "quota" in environment_message(OSError(errno.EDQUOT, "Disk quota exceeded", "/x/state.json"))
    assert environment_message(OSError(errno.ENOENT, "No such file", "/x")) is None
    assert environment_message(ValueError("errno = 28")) is None


def test_state_write_failure_keeps_the_old_state(tmp_path, monkeypatch):
    from acnn_mpi.campaign import state as state_module

    save_state(tmp_path, CampaignState(iteration=2, stage="csp"))
    before = (tmp_path / "state.json").read_bytes()

    def fails(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(state_module.os, "fsync", fails)
    with pytest.raises(OSError) as raised:
        save_state(tmp_path, CampaignState(iteration=2, stage="process"))
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path / "state.json")
    assert (tmp_path / "state.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


# -- documentation -----------------------------------------------------------------------------------------

def test_readme_names_the_failures_file_that_is_written():
    from acnn_mpi.label.sink import default_failures_path

    readme = (REPO / "README.md").read_text()
    assert "labels.h5.failures.jsonl" not in readme
    assert Path(default_failures_path("labels.h5")).name in readme


# -- MPI ---------------------------------------------------------------------------------------------------

RANK_FAILS = """
import sys
from acnn_mpi.errors import UserError
from acnn_mpi.parallel.comm import get_world
from acnn_mpi.parallel.guard import run_guarded

comm = get_world()

def main():
    if comm.rank == 1:
        raise UserError("/data/labels.h5: the frame store is damaged (test)")
    comm.barrier()  # rank 0 waits in a collective, as a real job would

sys.exit(run_guarded(comm, main))
"""


@pytest.mark.mpi
def test_mpi_one_clear_line_from_the_failing_rank(tmp_path):
    script = tmp_path / "fails_on_rank_1.py"
    script.write_text(RANK_FAILS)
    result = run_python([script], ranks=2, timeout=120, env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert "error: rank 1: /data/labels.h5: the frame store is damaged (test)" in lines, result.stderr
    assert sum("labels.h5" in line for line in lines) == 1
    assert "Traceback" not in result.stderr


@pytest.mark.mpi
def test_mpi_error_seen_by_every_rank_is_printed_once(tmp_path):
    campaign = tmp_path / "c"
    campaign.mkdir()
    (campaign / "state.json").write_text("[1,")
    result = run_python(["-m", "acnn_mpi", "run", TINY, "--output-dir", campaign], ranks=2, timeout=120)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "state.json is damaged" in errors[0], \
        result.stderr
    assert "Abort(" not in result.stderr and "Traceback" not in result.stderr


def test_relax_resume_on_a_damaged_settings_record(capsys, tmp_path, structures):
    out = tmp_path / "relaxed"
    argv = ["relax", "--model", "lj", "--input", structures, "--out", out, "--max-steps", 5]
    code, _, err = cli(capsys, *argv)
    assert code == 0, err
    (out / "relax.json").write_text('{"input": "torn')
    before = snapshot(out)
    assert_refused(cli(capsys, *argv), out / "relax.json", "new --out")
    assert snapshot(out) == before


@pytest.mark.mpi
def test_mpi_bad_flag_and_root_only_command_say_it_once(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    flag = run_python(["-m", "acnn_mpi", "relax", "--model", "lj", "--input", "x.xyz", "--out", "o",
                       "--pressure", "nan"], ranks=2, timeout=120, cwd=tmp_path)
    assert flag.returncode == 2 and flag.stderr.count("error:") == 1 and "--pressure" in flag.stderr, \
        flag.stderr
    results = tmp_path / "results.xyz"
    results.write_text("1\nLattice=\"3 0 0 0 3 0 0 0 3\" Properties=species:S:1:pos:R:3 enthalpy=-1.0\n"
                       "Cu 0 0 0\n")
    hull = run_python(["-m", "acnn_mpi", "hull", results, "--export-cif", blocker], ranks=2, timeout=120)
    assert hull.returncode == 2 and hull.stderr.count("error:") == 1, hull.stderr
    assert "--export-cif" in hull.stderr and "Abort(" not in hull.stderr
