"""One torch thread for the training tests: the machines running them are often shared, and a
small model gains nothing from a second thread while it loses a lot to oversubscription."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
