"""Training speed: the project's LSTM set-up against the reference notebook's, on the same CPU.

What is measured
----------------
Both configurations use the same architecture (Embedding 256 -> 2-layer LSTM 128, dropout 0.2 ->
MLP head 512-256 -> 4 classes), the same vocabulary and the same training rows, fp32 on CPU:

* OURS: ``lstm_model.training.train_classifier`` with the project's defaults (``flows.configs.TrainConfig``:
  batch 64, template-token masking 0.9, word dropout 0.3, AdamW 2e-3, patience 3, at most 20 epochs).
  Each batch is padded only to its own longest comment (~15-30 tokens) and the model reads the output
  at each row's last real token. Seconds per epoch come from the returned history (they include the
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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow running the script without installing the project
    sys.path.insert(0, str(ROOT))

from flows.configs import TrainConfig  # noqa: E402  (the project's default hyper-parameters)
from lstm_model.batching import EncodedTexts, encode_tokens  # noqa: E402
from lstm_model.evaluation import evaluate  # noqa: E402
from lstm_model.frames import find_frame_tokens, frame_id_mask  # noqa: E402
from lstm_model.model import LSTMClassifier, ModelConfig  # noqa: E402
from lstm_model.splits import stratified_split  # noqa: E402
from lstm_model.tokenizer import tokenize_arrow  # noqa: E402
from lstm_model.training import TrainingResult, predict_logits, seed_everything, train_classifier  # noqa: E402
from lstm_model.vocab import PAD_ID, Vocabulary  # noqa: E402
from tasks.schema import CATEGORIES  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "comentarios_train.json"

REF_BATCH = 4
REF_WIDTH = 512
REF_WARMUP_STEPS = 2
TARGET_RATIO = 15.0  # reference s/epoch divided by ours
TARGET_TOTAL_S = 10.0  # our full training run, compute seconds


@dataclass(frozen=True)
class Prepared:
    vocab: Vocabulary
    frame_mask: np.ndarray
    frame_tokens: list[str]
    encoded: dict[str, EncodedTexts]  # train/val/test, cut to the project's max_len
    reference_train: EncodedTexts  # train, cut to 512 tokens like the notebook
    labels: dict[str, np.ndarray]


@dataclass(frozen=True)
class OursResult:
    epoch_seconds: list[float]
    best_epoch: int
    test_macro_f1: float
    test_accuracy: float
    max_epochs: int


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
    """Split, build the vocabulary and template-token mask on train (as tasks/modeling.py does), encode."""
    parts = stratified_split(
        categories, val_fraction=settings.val_fraction, test_fraction=settings.test_fraction, seed=settings.seed
    )
    index = {label: i for i, label in enumerate(CATEGORIES)}
    tokens = {name: tokenize_arrow(pa.array([texts[i] for i in rows], pa.string())) for name, rows in parts.items()}
    labels = {name: np.array([index[categories[i]] for i in rows], dtype=np.int64) for name, rows in parts.items()}
    train_lists = tokens["train"].to_pylist()
    vocab = Vocabulary.build(
        train_lists, min_freq=settings.min_freq, max_size=settings.max_vocab, prefix_chars=settings.prefix_chars
    )
    frames = find_frame_tokens(
        [vocab.normalise(t) for t in train_lists],
        [categories[i] for i in parts["train"]],
        min_class_coverage=settings.frame_coverage,
    )
    encoded = {name: encode_tokens(tok, vocab, settings.max_len) for name, tok in tokens.items()}
    reference_train = encode_tokens(tokens["train"], vocab, REF_WIDTH)
    return Prepared(vocab, frame_id_mask(vocab, frames), frames, encoded, reference_train, labels)


# --------------------------------------------------------------------------------------------- ours


def run_ours(data: Prepared, settings: TrainConfig, epochs: int) -> OursResult:
    """Full project training run (early stopping included), then test macro-F1."""
    config = replace(settings.training_settings(), epochs=epochs, device="cpu")
    seed_everything(config.seed)
    model = LSTMClassifier(ModelConfig(len(data.vocab), len(CATEGORIES), **settings.model_settings()))

    def progress(m) -> None:
        print(f"  ours epoch {m.epoch:2d}: {m.seconds:6.2f} s  val_macro_f1 {m.val_macro_f1:.4f}  val_loss {m.val_loss:.4f}")

    result: TrainingResult = train_classifier(
        model,
        data.encoded["train"], data.labels["train"],
        data.encoded["val"], data.labels["val"],
        config, frame_mask=data.frame_mask, on_epoch=progress,
    )
    logits = predict_logits(result.model, data.encoded["test"], device=torch.device("cpu"))
    metrics = evaluate(data.labels["test"], logits.argmax(axis=1), list(CATEGORIES))
    return OursResult([h.seconds for h in result.history], result.best_epoch, metrics.macro_f1, metrics.accuracy, epochs)


# ---------------------------------------------------------------------------------------- reference


def pad_fixed(encoded: EncodedTexts, rows: np.ndarray, width: int) -> torch.Tensor:
    """Right-pad (and cut) the given rows to exactly ``width`` ids with PAD=0, as the notebook did."""
    lengths = np.minimum(encoded.lengths[rows], width)
    steps = np.arange(width)
    real = steps[None, :] < lengths[:, None]
    positions = np.where(real, encoded.starts[rows][:, None] + steps[None, :], 0)
    return torch.from_numpy(np.where(real, encoded.ids[positions], PAD_ID))


def reference_step(model: LSTMClassifier, optimiser: torch.optim.Optimizer, ids: torch.Tensor, labels: torch.Tensor) -> None:
    """One notebook training step: the forward reads outputs[:, -1] (lengths = full width)."""
    last_position = torch.full((ids.shape[0],), ids.shape[1], dtype=torch.int64)
    optimiser.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(ids, last_position), labels)
    loss.backward()
    optimiser.step()


def run_reference(data: Prepared, settings: TrainConfig, steps: int) -> ReferenceResult:
    """Time ``steps`` reference steps after REF_WARMUP_STEPS warm-up steps; extrapolate to one epoch."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model = LSTMClassifier(ModelConfig(len(data.vocab), len(CATEGORIES), **settings.model_settings()))
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    train, labels = data.reference_train, torch.from_numpy(data.labels["train"])
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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_environment() -> None:
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU: {cpu_model()} "
          f"({os.cpu_count()} logical cores), Python {platform.python_version()}")
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


def print_report(data: Prepared, settings: TrainConfig, ours: OursResult, ref: ReferenceResult, n_train: int) -> None:
    ours_mean = statistics.fmean(ours.epoch_seconds)
    ours_median = statistics.median(ours.epoch_seconds)
    ours_total = sum(ours.epoch_seconds)
    widths = data.encoded["train"].lengths
    print()
    print(f"{'configuration':<44} {'batch':>5}  {'padding':<34} {'s/epoch':>9} {'(median)':>9}")
    print("-" * 107)
    print(f"{'OURS (train_classifier, project defaults)':<44} {settings.batch_size:>5}  "
          f"{f'to longest in batch (max {int(widths.max())} tokens)':<34} {ours_mean:>9.2f} {ours_median:>9.2f}")
    print(f"{'REFERENCE (notebook loop, outputs[:, -1])':<44} {REF_BATCH:>5}  "
          f"{f'fixed {REF_WIDTH} tokens':<34} {ref.epoch_seconds:>9.2f} {ref.epoch_seconds_median:>9.2f}  *")
    print(f"  * EXTRAPOLATED from {len(ref.step_seconds)} timed steps (after {REF_WARMUP_STEPS} warm-up): "
          f"{statistics.fmean(ref.step_seconds):.3f} s/step mean, {statistics.median(ref.step_seconds):.3f} median, "
          f"x {ref.steps_per_epoch} steps = one epoch of {n_train} rows; no validation pass counted")
    print(f"  ours: over {len(ours.epoch_seconds)} measured epochs (min {min(ours.epoch_seconds):.2f} s, "
          f"max {max(ours.epoch_seconds):.2f} s), each including its validation pass")
    print()
    print(f"speed-up, reference s/epoch / ours s/epoch: {ref.epoch_seconds / ours_mean:.1f}x from means, "
          f"{ref.epoch_seconds_median / ours_median:.1f}x from medians   (target >= {TARGET_RATIO:.0f}x)")
    print(f"ours full training: {ours_total:.2f} s of compute over {len(ours.epoch_seconds)} epochs "
          f"(of at most {ours.max_epochs}, early stopping), best epoch {ours.best_epoch}   (target < {TARGET_TOTAL_S:.0f} s)")
    print(f"ours test: macro-F1 {ours.test_macro_f1:.4f}, accuracy {ours.test_accuracy:.4f} "
          f"({len(data.labels['test'])} rows)")
    print(f"vocabulary {len(data.vocab)} entries, {len(data.frame_tokens)} template tokens, "
          f"train tokens per comment: mean {widths.mean():.1f}, max {int(widths.max())}")
    print_load("at end")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"JSON array of records (default: {DEFAULT_DATA})")
    parser.add_argument("--epochs-ours", type=int, default=defaults.epochs,
                        help=f"maximum epochs for OURS, early stopping applies (default: {defaults.epochs})")
    parser.add_argument("--ref-steps", type=int, default=25, help="timed reference steps to extrapolate from (default: 25)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
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
    n_train = len(data.encoded["train"])
    print(f"data: {args.data} ({len(texts)} rows; train {n_train}, val {len(data.encoded['val'])}, "
          f"test {len(data.encoded['test'])})")
    print(f"\nOURS: batch {settings.batch_size}, frame_mask_prob {settings.frame_mask_prob}, token_mask_prob "
          f"{settings.token_mask_prob}, lr {settings.learning_rate}, up to {args.epochs_ours} epochs, patience {settings.patience}")
    ours = run_ours(data, settings, args.epochs_ours)
    print(f"\nREFERENCE: batch {REF_BATCH}, padded to {REF_WIDTH}, {REF_WARMUP_STEPS} warm-up + {args.ref_steps} timed steps ...")
    ref = run_reference(data, settings, args.ref_steps)
    print_report(data, settings, ours, ref, n_train)


if __name__ == "__main__":
    main()
