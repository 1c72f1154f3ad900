"""Helpers shared by the benchmark scripts: the shared dataset's path, synthetic batches, a quick model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "comentarios_train.json"


def load_rows(path: Path = SHARED_DATA) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def write_batch(path: Path, rows: list[dict], n: int, *, seed: int = 0, row_group: int = 131_072) -> Path:
    """A Parquet batch of ``n`` rows sampled from ``rows`` with fresh unique ids, written in row groups."""
    rng = np.random.default_rng(seed)
    table = pa.Table.from_pylist(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, table.schema) as writer:
        for start in range(0, n, row_group):
            size = min(row_group, n - start)
            part = table.take(pa.array(rng.integers(0, len(rows), size)))
            ids = pa.array([f"bench-{seed}-{i}" for i in range(start, start + size)], pa.string())
            writer.write_table(part.set_column(part.schema.get_field_index("id"), "id", ids))
    return path


@dataclass
class Trained:
    model: object
    vocab: object
    labels: tuple[str, ...]
    parts: dict
    encoded: object
    y: np.ndarray
    history: list


def train_project_way(rows: list[dict], cfg) -> Trained:
    """Train as ``tasks/modeling.py`` does (training-split vocabulary, template masking), in memory."""
    from lstm_model.batching import encode_tokens
    from lstm_model.frames import find_frame_tokens, frame_id_mask
    from lstm_model.model import LSTMClassifier, ModelConfig
    from lstm_model.splits import stratified_split
    from lstm_model.tokenizer import tokenize_arrow
    from lstm_model.training import seed_everything, train_classifier
    from lstm_model.vocab import Vocabulary

    labels = tuple(sorted({r["categoria"] for r in rows}))
    y = np.array([labels.index(r["categoria"]) for r in rows])
    parts = stratified_split([r["categoria"] for r in rows], seed=cfg.seed)
    tokens = tokenize_arrow(pa.array([r["comentario"] for r in rows], pa.string()))
    train_tokens = tokens.take(pa.array(parts["train"])).to_pylist()
    vocab = Vocabulary.build(train_tokens, prefix_chars=cfg.prefix_chars)
    frames = find_frame_tokens([vocab.normalise(t) for t in train_tokens], [labels[i] for i in y[parts["train"]]],
                               min_class_coverage=cfg.frame_coverage)
    encoded = encode_tokens(tokens, vocab, cfg.max_len)
    seed_everything(cfg.seed)
    model = LSTMClassifier(ModelConfig(len(vocab), len(labels), **cfg.model_settings()))
    result = train_classifier(model, encoded.take(parts["train"]), y[parts["train"]], encoded.take(parts["val"]),
                              y[parts["val"]], cfg.training_settings(), frame_mask=frame_id_mask(vocab, frames))
    return Trained(model, vocab, labels, parts, encoded, y, result.history)


def quick_bundle(rows: list[dict], epochs: int = 4, seed: int = 42):
    """A model trained the project's way (defaults of TrainConfig), a few epochs: enough to bench scoring."""
    from flows.configs import TrainConfig
    from lstm_model.bundle import ModelBundle

    cfg = TrainConfig(epochs=epochs, seed=seed)
    trained = train_project_way(rows, cfg)
    return ModelBundle.from_model(trained.model, version="bench", vocab=trained.vocab, labels=trained.labels,
                                  max_len=cfg.max_len, data_fingerprint="bench", training={"val_unknown_share": 0.0})
