"""Trust tests run torch on one thread: the networks are tiny, and on a busy 2-core machine a second
thread mostly waits on the first (measured 10x slower under load)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
