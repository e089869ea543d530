"""Metric tests run tiny models: one intra-op thread (2 contend: 100 ms vs 1 ms a forward), restored after."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
