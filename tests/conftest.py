"""Shared test setup: a private Prefect home with telemetry off, the shared dataset, small builders.

Prefect reads its settings when imported, so the environment is set here before any test module
imports it. Tests that need flows use the session-wide ``prefect_test_harness`` (a temporary local
server on a SQLite file), started once.
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

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

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


def comment_rows(n: int = 8, **overrides) -> pd.DataFrame:
    """A tiny valid labelled frame (two comments per class), for unit tests of single functions."""
    texts = {
        "ecommerce": "En la web/app no acepta mi tarjeta al comprar un libro.",
        "logistica": "El pedido de cámara llegó dañado con FedEx en Lima.",
        "precios": "El libro el precio subió de repente; el descuento era de 10% según la página.",
        "servicio_cliente": "El servicio al cliente no responden rápido. El agente Ana tomó el caso.",
    }
    cats = list(texts)
    rows = [
        {
            "id": f"id-{i}", "timestamp": "2025-01-02T10:00:00", "pais": "CO", "ciudad": "Cali", "canal": "web",
            "plataforma": "ios", "medio_contacto": "chat", "comentario": texts[cats[i % 4]],
            "categoria": cats[i % 4], "severidad": "media", "sentimiento": -0.5,
        }
        for i in range(n)
    ]
    frame = pd.DataFrame(rows)
    for column, value in overrides.items():
        frame[column] = value
    return frame
