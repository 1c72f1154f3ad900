"""Helpers shared by the benchmark scripts: the shared dataset's path, synthetic batches, a quick model."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "comentarios_train.json"


def cpu_name() -> str:
    """The CPU's model name (every figure is quoted with it: these machines differ day to day)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` of the values that are numbers (NaN: a figure a run did not have); "-" if none."""
    values = [v for v in values if v == v]
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


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


def distinct_comments(texts: list[str], n: int, *, seed: int = 0) -> list[str]:
    """``n`` comments that are nearly all different to the model: each is a dataset comment with three
    of its words replaced by words drawn from the whole dataset (so most stay in the vocabulary).

    Batches sampled from the dataset repeat its ~1,150 distinct texts, and scoring runs each distinct
    token sequence once; real comment streams repeat little, and these batches measure that case.
    """
    rng = np.random.default_rng(seed)
    pool = sorted({word for text in texts for word in text.split()})
    out = []
    for pick in rng.integers(0, len(texts), n):
        words = texts[pick].split()
        for position, word in zip(rng.integers(0, len(words), 3), rng.integers(0, len(pool), 3), strict=True):
            words[position] = pool[word]
        out.append(" ".join(words))
    return out


@dataclass(frozen=True)
class Trained:
    fitted: object  # lstm_model.fit.FittedModel
    parts: dict[str, np.ndarray]  # row positions of train/val/test in ``rows``


def domain_phrases(cfg):
    """The phrases ``--domain-phrases`` names (builtin, none or a file), as the training flow reads them."""
    from tasks.training.phrases import BUILTIN
    from tasks.training.phrases import NONE
    from tasks.training.phrases import builtin_data
    from tasks.training.phrases import read_phrases

    if cfg.domain_phrases == NONE:
        return None
    if cfg.domain_phrases == BUILTIN:
        data = builtin_data()
    else:
        data = Path(cfg.domain_phrases).read_bytes()
    return read_phrases(data, cfg.domain_phrases, cfg.categories)[0]


def fit_on_rows(rows: list[dict], cfg, calibration=None) -> Trained:
    """Split ``rows`` as the training flow does and train with :func:`lstm_model.fit.fit_classifier`
    (``calibration``: a labelled frame that fits the needs_review threshold, as the flow's dev half)."""
    from lstm_model.fit import fit_classifier
    from lstm_model.results import LabelledTexts
    from lstm_model.splits import stratified_split

    categories = [r["categoria"] for r in rows]
    parts = stratified_split(
        categories, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed
    )
    texts = [r["comentario"] for r in rows]
    train, val = parts["train"], parts["val"]
    fitted = fit_classifier(
        LabelledTexts([texts[i] for i in train], [categories[i] for i in train]),
        LabelledTexts([texts[i] for i in val], [categories[i] for i in val]),
        sorted(set(categories)),
        calibration=LabelledTexts(calibration["comentario"].tolist(), calibration["categoria"].tolist())
        if calibration is not None
        else None,
        text=cfg.text_settings(),
        architecture=cfg.architecture(),
        training=cfg.training_settings(),
        second=cfg.second_model_settings(),
        review=cfg.review_settings(),
        phrases=domain_phrases(cfg),
    )
    return Trained(fitted, parts)


def quick_bundle(rows: list[dict], epochs: int = 4, seed: int = 42, **config):
    """A model trained the project's way (defaults of TrainConfig, ``config`` replacing some), a few
    epochs: enough to bench scoring."""
    from flows.configs import TrainConfig
    from lstm_model.bundle import ModelBundle

    trained = fit_on_rows(rows, TrainConfig(epochs=epochs, seed=seed, **config))
    return ModelBundle.from_fitted(trained.fitted, version="bench", data_fingerprint="bench")


def run_python(code: str, args: list[str], prefect_home: Path, marker: str) -> str:
    """Run ``code`` in a fresh interpreter (its own ephemeral Prefect server, telemetry off) and return
    what it printed after ``marker`` on a line of its own; exit with its stderr if it failed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(
        {
            "PREFECT_HOME": str(prefect_home),
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith(marker + " ")), None)
    if done.returncode or line is None:
        raise SystemExit(f"the measured run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return line[len(marker) + 1 :]
