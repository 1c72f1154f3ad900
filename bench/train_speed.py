"""Training speed: the project's LSTM set-up against the reference notebook's, on the same CPU.

What is measured
----------------
Both configurations use the same architecture (Embedding 256 -> 2-layer LSTM 128, dropout 0.2 ->
MLP head 512-256 -> 4 classes), the same vocabulary and the same training rows, fp32 on CPU:

* OURS: ``lstm_model.training.train_classifier`` with the project's defaults (``flows.configs.TrainConfig``:
  batch 64, template-token masking 0.9, word dropout 0.3, AdamW 2e-3, patience 3, at most 20 epochs).
  Each batch is padded only to its own longest comment (~15-30 tokens) and the model pools the LSTM
  outputs of each row's real tokens (mean pooling, the default); the second model (bag of stems) is
  trained too, as the flow does. Seconds per epoch come from the returned history (they include the
  validation pass); the full run goes until early stopping.
* REFERENCE: the reference notebook's loop: batch 4, every comment right-padded to 512 tokens, the
  LSTM output read at position 511 (a padding position for every comment), AdamW. A full epoch is
  400 steps over 512 timesteps and takes far too long to run in a benchmark, so a fixed number of
  steps is timed after two warm-up steps and extrapolated to one epoch of the training split (its
  validation pass is not counted, which flatters the reference).

Why: the notebook spent almost all of its compute on padding (512 steps for ~20-token comments) and in
tiny batches; this script shows how much the project's batching saves, with both figures taken in the
same process on the same machine. It prints figures only; timings are never asserted.

Run:  .venv/bin/python bench/train_speed.py [--ref-steps 25] [--epochs-ours 20] [--threads N] [--data PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow running the script without installing the project
    sys.path.insert(0, str(ROOT))

from bench._common import cpu_name
from flows.configs import TrainConfig
from lstm_model.batching import EncodedTexts
from lstm_model.batching import encode_tokens
from lstm_model.fit import fit_classifier
from lstm_model.model import LSTMClassifier
from lstm_model.model import ModelConfig
from lstm_model.predict import Classifier
from lstm_model.results import FittedModel
from lstm_model.results import LabelledTexts
from lstm_model.splits import stratified_split
from lstm_model.tokenizer import tokenize_arrow
from lstm_model.vocab import PAD_ID
from lstm_model.vocab import Vocabulary
from tasks.common.schema import CATEGORIES
from tasks.training.modeling import evaluate_classifier

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "comentarios_train.json"

REF_BATCH = 4
REF_WIDTH = 512
REF_WARMUP_STEPS = 2
TARGET_RATIO = 15.0  # reference s/epoch divided by ours
TARGET_TOTAL_S = 10.0  # our full training run, compute seconds


@dataclass(frozen=True)
class Prepared:
    texts: dict[str, list[str]]  # train/val/test comment texts
    categories: dict[str, list[str]]


@dataclass(frozen=True)
class OursResult:
    epoch_seconds: list[float]
    best_epoch: int
    test_macro_f1: float
    test_accuracy: float
    max_epochs: int
    fit_seconds: float  # the whole fit: vocabulary, template tokens, LSTM, second model, review threshold


@dataclass(frozen=True)
class ReferenceResult:
    step_seconds: list[float]
    steps_per_epoch: int

    @property
    def epoch_seconds(self) -> float:
        """Mean step time x steps in one epoch."""
        return statistics.fmean(self.step_seconds) * self.steps_per_epoch

    @property
    def epoch_seconds_median(self) -> float:
        """Median step time x steps in one epoch (robust to other processes' bursts)."""
        return statistics.median(self.step_seconds) * self.steps_per_epoch


# --------------------------------------------------------------------------------------------- data


def load_rows(path: Path) -> tuple[list[str], list[str]]:
    """Comment texts and categories from a JSON array of records."""
    records = json.loads(path.read_text(encoding="utf-8"))
    return [r["comentario"] for r in records], [r["categoria"] for r in records]


def prepare(texts: list[str], categories: list[str], settings: TrainConfig) -> Prepared:
    """The flow's stratified split."""
    parts = stratified_split(
        categories,
        val_fraction=settings.val_fraction,
        test_fraction=settings.test_fraction,
        seed=settings.seed,
    )
    return Prepared(
        {name: [texts[i] for i in rows] for name, rows in parts.items()},
        {name: [categories[i] for i in rows] for name, rows in parts.items()},
    )


# --------------------------------------------------------------------------------------------- ours


def run_ours(data: Prepared, settings: TrainConfig, epochs: int) -> tuple[OursResult, FittedModel]:
    """Full project training run (early stopping included), then test macro-F1."""
    training = replace(settings.training_settings(), epochs=epochs, device="cpu")

    def progress(m) -> None:
        print(
            f"  ours epoch {m.epoch:2d}: {m.seconds:6.2f} s  val_macro_f1 {m.val_macro_f1:.4f}  val_loss {m.val_loss:.4f}"
        )

    started = time.perf_counter()
    fitted = fit_classifier(
        LabelledTexts(data.texts["train"], data.categories["train"]),
        LabelledTexts(data.texts["val"], data.categories["val"]),
        CATEGORIES,
        text=settings.text_settings(),
        architecture=settings.architecture(),
        training=training,
        on_epoch=progress,
    )
    fit_seconds = time.perf_counter() - started
    metrics = evaluate_classifier(
        Classifier.from_fitted(fitted),
        pd.DataFrame({"comentario": data.texts["test"], "categoria": data.categories["test"]}),
    )
    history = fitted.report.history
    result = OursResult(
        [h.seconds for h in history],
        fitted.report.best_epoch,
        metrics.macro_f1,
        metrics.accuracy,
        epochs,
        fit_seconds,
    )
    return result, fitted


# ---------------------------------------------------------------------------------------- reference


def pad_fixed(encoded: EncodedTexts, rows: np.ndarray, width: int) -> torch.Tensor:
    """Right-pad (and cut) the given rows to exactly ``width`` ids with PAD=0, as the notebook did."""
    lengths = np.minimum(encoded.lengths[rows], width)
    steps = np.arange(width)
    real = steps[None, :] < lengths[:, None]
    positions = np.where(real, encoded.starts[rows][:, None] + steps[None, :], 0)
    return torch.from_numpy(np.where(real, encoded.ids[positions], PAD_ID))


def reference_step(
    model: LSTMClassifier, optimiser: torch.optim.Optimizer, ids: torch.Tensor, labels: torch.Tensor
) -> None:
    """One notebook training step: the forward reads outputs[:, -1] (lengths = full width)."""
    last_position = torch.full((ids.shape[0],), ids.shape[1], dtype=torch.int64)
    optimiser.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(ids, last_position), labels)
    loss.backward()
    optimiser.step()


def run_reference(data: Prepared, vocab: Vocabulary, settings: TrainConfig, steps: int) -> ReferenceResult:
    """Time ``steps`` reference steps after REF_WARMUP_STEPS warm-up steps; extrapolate to one epoch."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model = LSTMClassifier(
        ModelConfig.for_data(
            replace(settings.architecture(), pooling="last"),
            vocab_size=len(vocab),
            num_classes=len(CATEGORIES),
        )
    )
    model.train()
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    train = encode_tokens(tokenize_arrow(pa.array(data.texts["train"], pa.string())), vocab, REF_WIDTH)
    labels = torch.tensor([CATEGORIES.index(c) for c in data.categories["train"]])
    order = rng.permutation(len(train))
    needed = (REF_WARMUP_STEPS + steps) * REF_BATCH
    order = np.resize(order, max(needed, len(order)))  # wrap around if more steps than one epoch
    timings: list[float] = []
    for step in range(REF_WARMUP_STEPS + steps):
        rows = order[step * REF_BATCH : (step + 1) * REF_BATCH]
        started = time.perf_counter()
        reference_step(model, optimiser, pad_fixed(train, rows, REF_WIDTH), labels[rows])
        if step >= REF_WARMUP_STEPS:
            timings.append(time.perf_counter() - started)
    return ReferenceResult(timings, math.ceil(len(train) / REF_BATCH))


# ------------------------------------------------------------------------------------------- report


def print_environment() -> None:
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU: {cpu_name()} "
        f"({os.cpu_count()} logical cores), Python {platform.python_version()}"
    )
    print_load("at start")


def print_load(when: str) -> None:
    """Other processes on the machine skew every figure here; say so when they are visible."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    cores = os.cpu_count() or 1
    note = "  (busy machine: timings are inflated and noisy; compare medians)" if load > 0.75 * cores else ""
    print(f"load average (1 min) {when}: {load:.2f} on {cores} cores{note}")


def print_report(
    data: Prepared, fitted: FittedModel, settings: TrainConfig, ours: OursResult, ref: ReferenceResult
) -> None:
    ours_mean = statistics.fmean(ours.epoch_seconds)
    ours_median = statistics.median(ours.epoch_seconds)
    ours_total = sum(ours.epoch_seconds)
    n_train = len(data.texts["train"])
    tokens = tokenize_arrow(pa.array(data.texts["train"], pa.string()))
    widths = np.minimum(pc.list_value_length(tokens).to_numpy(), settings.max_len)
    print()
    print(f"{'configuration':<44} {'batch':>5}  {'padding':<34} {'s/epoch':>9} {'(median)':>9}")
    print("-" * 107)
    print(
        f"{'OURS (train_classifier, project defaults)':<44} {settings.batch_size:>5}  "
        f"{f'to longest in batch (max {int(widths.max())} tokens)':<34} {ours_mean:>9.2f} {ours_median:>9.2f}"
    )
    print(
        f"{'REFERENCE (notebook loop, outputs[:, -1])':<44} {REF_BATCH:>5}  "
        f"{f'fixed {REF_WIDTH} tokens':<34} {ref.epoch_seconds:>9.2f} {ref.epoch_seconds_median:>9.2f}  *"
    )
    print(
        f"  * EXTRAPOLATED from {len(ref.step_seconds)} timed steps (after {REF_WARMUP_STEPS} warm-up): "
        f"{statistics.fmean(ref.step_seconds):.3f} s/step mean, {statistics.median(ref.step_seconds):.3f} median, "
        f"x {ref.steps_per_epoch} steps = one epoch of {n_train} rows; no validation pass counted"
    )
    print(
        f"  ours: over {len(ours.epoch_seconds)} measured epochs (min {min(ours.epoch_seconds):.2f} s, "
        f"max {max(ours.epoch_seconds):.2f} s), each including its validation pass"
    )
    print()
    print(
        f"speed-up, reference s/epoch / ours s/epoch: {ref.epoch_seconds / ours_mean:.1f}x from means, "
        f"{ref.epoch_seconds_median / ours_median:.1f}x from medians   (target >= {TARGET_RATIO:.0f}x)"
    )
    print(
        f"ours full training: {ours_total:.2f} s of compute over {len(ours.epoch_seconds)} epochs "
        f"(of at most {ours.max_epochs}, early stopping), best epoch {ours.best_epoch}   (target < {TARGET_TOTAL_S:.0f} s)"
    )
    print(
        f"ours whole fit (vocabulary, template tokens, LSTM, second model, review threshold): "
        f"{ours.fit_seconds:.2f} s"
    )
    print(
        f"ours test: macro-F1 {ours.test_macro_f1:.4f}, accuracy {ours.test_accuracy:.4f} "
        f"({len(data.texts['test'])} rows)"
    )
    print(
        f"vocabulary {len(fitted.vocab)} entries, {len(fitted.frame_tokens)} template tokens, "
        f"train tokens per comment: mean {widths.mean():.1f}, max {int(widths.max())}"
    )
    print_load("at end")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help=f"JSON array of records (default: {DEFAULT_DATA})"
    )
    parser.add_argument(
        "--epochs-ours",
        type=int,
        default=defaults.epochs,
        help=f"maximum epochs for OURS, early stopping applies (default: {defaults.epochs})",
    )
    parser.add_argument(
        "--ref-steps", type=int, default=25, help="timed reference steps to extrapolate from (default: 25)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)"
    )
    args = parser.parse_args(argv)
    if args.ref_steps < 1 or args.epochs_ours < 1:
        parser.error("--ref-steps and --epochs-ours must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = TrainConfig()
    print_environment()
    texts, categories = load_rows(args.data)
    data = prepare(texts, categories, settings)
    print(
        f"data: {args.data} ({len(texts)} rows; train {len(data.texts['train'])}, val {len(data.texts['val'])}, "
        f"test {len(data.texts['test'])})"
    )
    print(
        f"\nOURS: batch {settings.batch_size}, frame_mask_prob {settings.frame_mask_prob}, token_mask_prob "
        f"{settings.token_mask_prob}, lr {settings.learning_rate}, up to {args.epochs_ours} epochs, patience {settings.patience}"
    )
    ours, fitted = run_ours(data, settings, args.epochs_ours)
    print(
        f"\nREFERENCE: batch {REF_BATCH}, padded to {REF_WIDTH}, {REF_WARMUP_STEPS} warm-up + {args.ref_steps} timed steps ..."
    )
    ref = run_reference(data, fitted.vocab, settings, args.ref_steps)
    print_report(data, fitted, settings, ours, ref)


if __name__ == "__main__":
    main()
