"""Fixtures of the data tests."""

import pytest

from tests.data.helpers import emt_frames


@pytest.fixture
def frames():
    """Eight EMT-labelled frames (Cu, Au, Al, Cu3Au; stress on every other one)."""
    return emt_frames(8, stress_every=2)
