"""Builders and checks shared by the test modules (plain functions; fixtures live in conftest.py).

Test modules import this as ``helpers`` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

LABELS = ("ecommerce", "logistica", "precios", "servicio_cliente")
MODEL_VERSION = "20250101T000000Z-testlstm"
SMALL_ARCHITECTURE = {"embedding_dim": 64, "hidden_size": 64, "num_layers": 1, "head_sizes": (64,)}


class Killed(RuntimeError):
    """Stands for a process killed at a chosen point (raised by a monkeypatched function)."""


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
            "id": f"id-{i}",
            "timestamp": "2025-01-02T10:00:00",
            "pais": "CO",
            "ciudad": "Cali",
            "canal": "web",
            "plataforma": "ios",
            "medio_contacto": "chat",
            "comentario": texts[cats[i % 4]],
            "categoria": cats[i % 4],
            "severidad": "media",
            "sentimiento": -0.5,
        }
        for i in range(n)
    ]
    frame = pd.DataFrame(rows)
    for column, value in overrides.items():
        frame[column] = value
    return frame


def build_model_store(root: Path, dataset: pd.DataFrame) -> Path:
    """A storage root holding ``models/<MODEL_VERSION>`` and ``models/LATEST``: a small model trained the
    product's way (two epochs on the shared dataset, a few seconds). Built in a staging folder and
    renamed, so a folder with ``LATEST`` in it is always complete."""
    import torch

    from lstm_model.bundle import ModelBundle
    from lstm_model.fit import fit_classifier
    from lstm_model.results import LabelledTexts
    from lstm_model.settings import ArchitectureSettings
    from lstm_model.settings import TrainingSettings
    from tasks.common.freeform import load_freeform
    from tasks.registry.versions import set_latest
    from tasks.registry.versions import write_version
    from tasks.store.layout import LATEST
    from tasks.store.storage import Storage

    if (root / LATEST).exists():
        return root
    val = np.random.default_rng(0).choice(len(dataset), 200, replace=False)
    calibration = load_freeform().dev
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 busy cores: OpenMP spinning makes 2 threads ~100x slower than 1
    try:
        fitted = fit_classifier(
            LabelledTexts(dataset["comentario"].tolist(), dataset["categoria"].tolist()),
            LabelledTexts(dataset["comentario"].iloc[val].tolist(), dataset["categoria"].iloc[val].tolist()),
            LABELS,
            calibration=LabelledTexts(calibration["comentario"].tolist(), calibration["categoria"].tolist()),
            architecture=ArchitectureSettings(**SMALL_ARCHITECTURE),
            # no template masking: these tests need a model that gets the templated rows right
            training=TrainingSettings(
                epochs=2, batch_size=32, device="cpu", seed=0, frame_mask_prob=0.0, token_mask_prob=0.1
            ),
        )
    finally:
        torch.set_num_threads(threads)
    bundle = ModelBundle.from_fitted(fitted, version=MODEL_VERSION, data_fingerprint="test")
    staging = root.with_name(root.name + "-staging")
    shutil.rmtree(staging, ignore_errors=True)
    storage = Storage(str(staging))
    write_version(storage, MODEL_VERSION, bundle.to_files())
    set_latest(storage, MODEL_VERSION)
    staging.rename(root)
    return root


def new_storage_root(model_store: Path, root: Path) -> Path:
    """A fresh storage root with a copy of the session's model."""
    shutil.copytree(model_store / "models", root / "models")
    return root


def write_batch(root: Path, name: str, data: pd.DataFrame | pa.Table | bytes, folder: str = "incoming"):
    """Write one batch file under ``<root>/<folder>/`` and return its :class:`BatchFile`.

    The file's modification time is set a minute back, as if it had landed before the run: runs
    leave files younger than ``--min-file-age`` for the next run.
    """
    from tasks.scoring.discovery import BatchFile
    from tasks.scoring.discovery import content_key

    path = root / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        pq.write_table(table, path)
    landed = time.time() - 60
    os.utime(path, (landed, landed))
    return BatchFile(str(path), name, content_key(fsspec.filesystem("file"), str(path)), path.stat().st_size)


def read_table(root: Path, table: str) -> pd.DataFrame:
    """One output table as pandas (hive partitions included); empty frame when nothing was written."""
    folder = root / table
    if not folder.exists() or not any(folder.rglob("*.parquet")):
        return pd.DataFrame()
    return pd.read_parquet(folder)


def part_files(root: Path, table: str) -> list[Path]:
    folder = root / table
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith((".", "_")))


def dataset_rows(dataset: pd.DataFrame, n: int, prefix: str, start: int = 0) -> pd.DataFrame:
    """``n`` rows of the shared dataset, balanced over the classes, with fresh unique ids."""
    per_class = [dataset[dataset["categoria"] == label].iloc[start:] for label in LABELS]
    rows = pd.concat([frame.iloc[i : i + 1] for i in range(n) for frame in per_class]).iloc[:n]
    rows = rows.reset_index(drop=True).astype(dict.fromkeys(rows.columns, object))
    rows["id"] = [f"{prefix}-{i}" for i in range(n)]
    return rows


def assert_exactly_once(root: Path, batch_key: str, rows_in: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every input row of the batch is in predictions or rejected, once; returns both tables for the batch."""
    preds = read_table(root, "predictions")
    rejected = read_table(root, "errors/rejected")
    preds = preds[preds["batch_key"] == batch_key] if len(preds) else preds
    rejected = rejected[rejected["batch_key"] == batch_key] if len(rejected) else rejected
    pred_rows = list(preds["row_number"]) if len(preds) else []
    rej_rows = list(rejected["row_number"]) if len(rejected) else []
    assert len(pred_rows) == len(set(pred_rows)), "a row is predicted more than once"
    assert len(rej_rows) == len(set(rej_rows)), "a row is rejected more than once"
    assert not set(pred_rows) & set(rej_rows), "a row is both predicted and rejected"
    assert sorted(pred_rows + rej_rows) == list(range(rows_in)), (
        "rows missing (or invented) across predictions + rejected"
    )
    return preds, rejected


def ledger_entry(root: Path, key: str) -> dict | None:
    path = root / "ledger" / f"{key}.json"
    return json.loads(path.read_text()) if path.exists() else None


def predicted_labels(classifier, texts: list[str]) -> list[str]:
    """The class a classifier gives each text."""
    return [classifier.labels[i] for i in classifier.predict_proba(texts).argmax(axis=1)]


def score(storage, batch, **config):
    """Score one batch with :func:`tasks.scoring.score_file` (no Prefect), ``config`` as ScoreConfig fields."""
    from flows.configs import ScoreConfig
    from tasks.scoring.score_file import score_file

    return score_file(storage, batch, MODEL_VERSION, ScoreConfig(**config).scoring_settings())


TINY_ARCHITECTURE = {
    "embedding_dim": 8,
    "hidden_size": 8,
    "num_layers": 2,
    "lstm_dropout": 0.1,
    "head_sizes": (8, 4),
    "head_dropout": 0.1,
}


def tiny_bundle(
    version: str = "20250101T000000Z-abcdef12",
    text=None,
    pooling: str = "mean",
    second_features: str = "char_ngrams",
    **fields,
):
    """A very small model trained for two epochs on :func:`comment_rows`: enough to round-trip
    through files and the registry, and to score. ``fields`` replace bundle fields."""
    from dataclasses import replace

    from lstm_model.bundle import ModelBundle
    from lstm_model.fit import fit_classifier
    from lstm_model.results import LabelledTexts
    from lstm_model.settings import ArchitectureSettings
    from lstm_model.settings import SecondModelSettings
    from lstm_model.settings import TextSettings
    from lstm_model.settings import TrainingSettings

    frame = comment_rows(16)
    texts, categories = frame["comentario"].tolist(), frame["categoria"].tolist()
    fitted = fit_classifier(
        LabelledTexts(texts, categories),
        LabelledTexts(texts, categories),
        LABELS,
        calibration=LabelledTexts(texts[:4], categories[:4]),
        text=text or TextSettings(max_len=16),
        architecture=ArchitectureSettings(**TINY_ARCHITECTURE, pooling=pooling),
        training=TrainingSettings(epochs=2, batch_size=4, device="cpu"),
        second=SecondModelSettings(features=second_features),
    )
    return replace(
        ModelBundle.from_fitted(fitted, version=version, data_fingerprint="ab" * 32), **fields
    ), fitted


# Words the templated dataset never uses (their stems are not in its vocabulary), six per class.
KEYWORDS = {
    "ecommerce": ("contraseña", "sesión", "formulario", "botón", "error", "instalar"),
    "logistica": ("paquete", "courier", "mensajero", "bodega", "almacén", "entregas"),
    "precios": ("caro", "carísimo", "tarifa", "recargo", "costoso", "impagable"),
    "servicio_cliente": ("ticket", "operadora", "queja", "atención", "asesor", "grosero"),
}


def keyword_comments(per_class: int = 20, prefix: str = "kw") -> pd.DataFrame:
    """Distinct comments made of :data:`KEYWORDS` and stop words only: a model trained on the source
    alone never saw their words (a stems LSTM flags them ``no_known_words``; the subword LSTM reads their
    n-grams but cannot tell their class, so it flags them ``low_confidence``); a model that learnt them
    from labels can. ``per_class`` <= 35."""
    rows = []
    for label, words in KEYWORDS.items():
        combos = [*itertools.combinations(words, 2), *itertools.combinations(words, 3)][:per_class]
        for i, combo in enumerate(combos):
            rows.append(
                {
                    "id": f"{prefix}-{label}-{i:02d}",
                    "comentario": "por el " + " y la ".join(combo),
                    "categoria": label,
                }
            )
    return pd.DataFrame(rows)


def put_model(storage, model_store: Path, *, latest: bool = True) -> None:
    """Publish the session's model version onto ``storage`` the way the registry does (files, manifest,
    and ``LATEST`` unless ``latest`` is false)."""
    from tasks.registry.versions import set_latest
    from tasks.registry.versions import write_version

    folder = model_store / "models" / MODEL_VERSION
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "_COMPLETE"}
    write_version(storage, MODEL_VERSION, files)
    if latest:
        set_latest(storage, MODEL_VERSION)


def small_train_config(source: Path | str, storage: Path | str, **overrides):
    """A ``TrainConfig`` for flow tests: one 32-unit LSTM layer, 3 epochs (the default 256/128x2
    network takes minutes on a 2-core runner; the templates are learned as well by the small one)."""
    from flows.configs import TrainConfig

    settings = {"epochs": 3, "embedding_dim": 32, "hidden_size": 32, "num_layers": 1, "head_sizes": [32]}
    settings["min_file_age"] = 0  # label files are written by the test just before
    return TrainConfig(
        source=str(source), storage=str(storage), learning_rate=5e-3, **{**settings, **overrides}
    )
