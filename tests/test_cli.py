"""The command line: help for every subcommand, `check` on good and bad files, exit codes."""

import os
import sys

import pytest

from acnn_mpi.cli import COMMANDS


def test_every_subcommand_has_help(acnn):
    top = acnn(["--help"])
    assert top.returncode == 0
    for name in COMMANDS:
        assert name in top.stdout
        result = acnn([name, "--help"])
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout


def test_check_shipped_inputs(acnn, tmp_path):
    # The DFT templates run `mpirun -n 64 vasp_std` with VASP's pseudopotentials: check refuses
    # what run would refuse, so a stand-in vasp_std goes on PATH (beside the MPI of this Python)
    # and VASP_PP_PATH names a folder.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vasp_std").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "vasp_std").chmod(0o755)
    (tmp_path / "potpaw_PBE").mkdir()
    path = os.pathsep.join([str(bin_dir), os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    files = ["inputs/demo.yaml", "inputs/mgcah_300gpa.yaml", "inputs/bepno.yaml"]
    result = acnn(["check", *files], env={"PATH": path, "VASP_PP_PATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("valid; resolved settings") == 3
    assert "r_cut_radial: 6.5" in result.stdout  # Be-P-N-O cutoff resolved
    refused = acnn(["check", "inputs/bepno.yaml"], env={"PATH": path, "VASP_PP_PATH": ""})
    assert refused.returncode == 2 and "VASP_PP_PATH" in refused.stderr


@pytest.mark.parametrize("text, field", [
    ("elements: [Cu, Qq]\n", "unknown element symbol 'Qq'"),
    ("elements: [Cu]\nmodel: {r_cut_angular: -2}\n", "model.r_cut_angular = -2"),
    ("elements: [Cu]\nmodel: {r_cut_radial: 4, r_cut_angular: 5}\n", "r_cut_angular"),
    ("elements: [Cu, Au]\ngeneration: {min_distances: [[2, 2.1], [2.0, 2.3]]}\n", "not symmetric"),
    ("elements: [Cu, Au]\ngeneration: {min_distances: {Cu-Cu: 2}}\n", "Au-Au"),
    ("elements: [Cu]\nbogus: 1\n", "bogus: unknown key"),
    ("elements: [Cu]\nsearch: {c_max: lots}\n", "search.c_max = 'lots'"),
])
def test_check_bad_input_one_line_exit_2(acnn, tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = acnn(["check", str(path)])
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and field in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_no_arguments_reads_campaign_yaml_in_cwd(acnn, tmp_path):
    result = acnn([], cwd=tmp_path)
    assert result.returncode == 2
    assert "campaign.yaml not found: create it" in result.stderr


@pytest.mark.parametrize("argv, threads, verbose", [
    (["--threads", "3", "train", "--data", "x", "--out", "y"], 3, False),
    (["train", "--threads", "2", "--data", "x", "--out", "y"], 2, False),
    (["-v", "check", "a.yaml"], None, True),
    (["check", "a.yaml"], None, False),
])
def test_common_options_before_or_after_the_subcommand(argv, threads, verbose):
    from acnn_mpi.cli import build_parser

    args = build_parser().parse_args(argv)
    assert (args.threads, args.verbose) == (threads, verbose)
