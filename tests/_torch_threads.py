"""Autouse fixture for the test modules that train models: one torch thread (import it to use it)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Train with one intra-op thread while the module runs, then restore the previous setting.

    On a 2-core runner torch's default of one thread per core competes with the Prefect test server
    (and anything else running), and its threads then spin-wait: tiny models train 20-60x slower.
    The results do not depend on it (the tests compare outputs, not timings).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
