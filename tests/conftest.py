"""Shared fixtures. Tests run on 2 CPU threads with small arrays and tiny networks."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass


@pytest.fixture
def shared_data():
    """Return a function ``name -> Path`` into ``../shared/data``; skips the test when absent.

    A user's fresh clone has no ``../shared``: tests that need real third-party data skip with the
    reason instead of failing.
    """
    from fluorecon.datasets import shared_data as find

    def get(name: str):
        p = find(name)
        if p is None:
            pytest.skip(f"third-party data '{name}' not found (expected ../shared/data/{name} or $FLUORECON_SHARED_DATA)")
        return p

    return get


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (small tensors: thread hand-offs cost more than they save)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
