"""Slow: the tiny campaign on 8 oversubscribed ranks ends with the hull of the 2-rank run of the
same seed, and so does a run stopped by the walltime and resumed."""

import pytest

from tests.campaign.test_campaign import TINY, final_hull
from tests.campaign.test_walltime_stop import stop_then_resume
from tests.conftest import run_python

pytestmark = [pytest.mark.slow, pytest.mark.mpi]


def campaign(directory, ranks):
    result = run_python(["-m", "acnn_mpi", "run", TINY, "--output-dir", directory], ranks=ranks,
                        timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    directory = tmp_path_factory.mktemp("two_ranks")
    campaign(directory, 2)
    return directory


def test_eight_ranks_give_the_two_rank_hull(two_ranks, tmp_path):
    result = campaign(tmp_path, 8)
    assert "8 rank(s) on 1 node(s), 8 per node" in result.stderr
    hull = final_hull(tmp_path)
    assert {p["formula"] for p in hull["stable"]} >= {"Cu", "Pt"}
    assert hull == final_hull(two_ranks)


def test_walltime_stop_and_resume_give_the_same_hull(two_ranks, tmp_path):
    stopped, state, resumed, out = stop_then_resume(tmp_path)
    assert stopped.returncode == 3 and state and not state["final_done"]
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert final_hull(out) == final_hull(two_ranks)
