"""Shared test setup: a private Prefect home with telemetry off, the shared dataset, the fixtures every
module uses (a Prefect test server, one small trained model, a storage root holding it).

Prefect reads its settings when imported, so the environment is set here before any test module
imports it. Plain helper functions live in ``helpers.py``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_PREFECT_HOME = tempfile.mkdtemp(prefix="comentarios-prefect-")
os.environ.update(
    {
        "PREFECT_HOME": _PREFECT_HOME,
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
)
os.environ.pop("PREFECT_API_URL", None)

import pandas as pd
import pytest

from helpers import build_model_store
from helpers import new_storage_root

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "comentarios_train.json"


@pytest.fixture(scope="session")
def shared_dataset_path() -> Path:
    """The 2,000-row dataset at ../shared/data; a missing copy is a failure, never a silent skip."""
    if not SHARED_DATA.exists():
        pytest.fail(f"shared dataset not found at {SHARED_DATA} (CI lays ../shared beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_dataset(shared_dataset_path: Path) -> pd.DataFrame:
    return pd.read_json(shared_dataset_path, dtype=False)


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server (SQLite) for every test that runs a flow."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """Train with one intra-op thread while a module runs, then restore the previous setting.

    On a 2-core runner torch's default of one thread per core competes with the Prefect test server
    (and anything else running), and its threads then spin-wait: tiny models train 20-60x slower.
    The results do not depend on it (the tests compare outputs, not timings). Modules that train
    ask for it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def model_store(tmp_path_factory, shared_dataset) -> Path:
    """A storage root with one small model (``helpers.MODEL_VERSION``, promoted), trained once per session."""
    return build_model_store(tmp_path_factory.getbasetemp() / "comentarios-model-store", shared_dataset)


@pytest.fixture
def root(model_store, tmp_path) -> Path:
    """A fresh local storage root of the test's own, holding a copy of the session's model."""
    return new_storage_root(model_store, tmp_path / "storage")


@pytest.fixture
def storage(root):
    from tasks.store.storage import Storage

    return Storage(str(root))
