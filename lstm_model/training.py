"""Training loop: AdamW, early stopping on validation macro-F1, best weights restored.

The reference notebook wrapped the CPU forward pass in bf16 autocast, which oneDNN's LSTM cannot run
("could not create a primitive descriptor for an LSTM forward propagation primitive"), and stopped on
training loss. Here CPU training is plain fp32; mixed precision is used only on CUDA; and stopping
looks at held-out data.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

import numpy as np
import torch
from torch import nn

from lstm_model.batching import BatchableTexts
from lstm_model.batching import EncodedTexts
from lstm_model.batching import length_sorted_batches
from lstm_model.batching import pad_rows
from lstm_model.evaluation import evaluate
from lstm_model.frames import mask_tokens
from lstm_model.model import LSTMClassifier
from lstm_model.settings import TrainingSettings
from lstm_model.subwords import SubwordBatch
from lstm_model.vocab import UNK_ID


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    val_macro_f1: float
    seconds: float


@dataclass
class TrainingResult:
    model: LSTMClassifier
    history: list[EpochMetrics] = field(default_factory=list)
    best_epoch: int = 0
    device: str = "cpu"
    precision: str = "fp32"


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for ``cuda`` on a machine without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "device 'cuda' was requested but torch sees no CUDA GPU "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --device auto or cpu"
        )
    if name not in {"cpu", "cuda"}:
        raise ValueError(f"device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def autocast_for(device: torch.device) -> tuple[contextlib.AbstractContextManager, str]:
    """Mixed precision on CUDA only (bf16 where the GPU has it, else fp16); fp32 on CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext(), "fp32"
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype), "bf16" if dtype is torch.bfloat16 else "fp16"


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@torch.no_grad()
def predict_logits(
    model: nn.Module, encoded: BatchableTexts, *, batch_size: int = 1024, device: torch.device | None = None
) -> np.ndarray:
    """Logits for every row, in input order (batches are length-sorted internally)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.empty((len(encoded), model.config.num_classes), dtype=np.float32)
    cast, _ = autocast_for(device)
    for rows in length_sorted_batches(encoded, batch_size):
        ids, lengths = pad_rows(encoded, rows)
        with cast:
            logits = model(ids.to(device), lengths)
        out[rows] = logits.float().cpu().numpy()
    model.train(was_training)
    return out


def mask_encoded(encoded: EncodedTexts, frame_mask: np.ndarray) -> EncodedTexts:
    """A copy of ``encoded`` with every frame token replaced by [UNK]."""
    ids = np.where(frame_mask[encoded.ids], UNK_ID, encoded.ids)
    return EncodedTexts(ids, encoded.starts, encoded.lengths)


def _validation(model, encoded, labels, config, device, num_classes) -> tuple[float, float, float]:
    logits = predict_logits(model, encoded, batch_size=config.eval_batch_size, device=device)
    loss = float(nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)))
    metrics = evaluate(labels, logits.argmax(axis=1), [str(i) for i in range(num_classes)])
    return loss, metrics.accuracy, metrics.macro_f1


@dataclass
class EarlyStopping:
    """Keeps the best epoch's weights and says when to stop.

    "Best" is the highest validation macro-F1, ties broken by the lower validation loss: on easy data
    F1 reaches 1.0 early and the loss still tells which epoch generalises best.
    """

    patience: int
    min_delta: float
    best_f1: float = -1.0
    best_loss: float = float("inf")
    best_epoch: int = 0
    best_state: dict | None = None
    stale: int = 0

    def should_stop(self, metrics: EpochMetrics, model: nn.Module) -> bool:
        """Record ``metrics`` (and the weights when the epoch is the best so far); True: stop now."""
        f1, loss = metrics.val_macro_f1, metrics.val_loss
        if f1 > self.best_f1 or (f1 == self.best_f1 and loss < self.best_loss - self.min_delta):
            self.best_f1, self.best_loss, self.best_epoch = f1, loss, metrics.epoch
            self.best_state, self.stale = copy.deepcopy(model.state_dict()), 0
            return False
        self.stale += 1
        return self.stale >= self.patience


class _Optimiser:
    """One weighted optimisation step: AdamW, mixed precision on CUDA only, gradient clipping."""

    def __init__(self, model: nn.Module, config: TrainingSettings, device: torch.device) -> None:
        self.model, self.device, self.grad_clip = model, device, config.grad_clip
        self.cast, self.precision = autocast_for(device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.adamw = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.loss_fn = nn.CrossEntropyLoss(reduction="none")

    def step(
        self, ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
    ) -> float:
        """The batch's loss: the mean of each row's loss weighted by ``weights``. ``labels`` are class
        indices, or class probabilities per row (soft targets: what a teacher model says)."""
        self.adamw.zero_grad(set_to_none=True)
        with self.cast:
            logits = self.model(ids.to(self.device), lengths)
            weights = weights.to(self.device)
            per_row = self.loss_fn(logits.float(), labels.to(self.device))
            loss = (per_row * weights).sum() / weights.sum()
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.adamw)
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.adamw)
        self.scaler.update()
        return float(loss.detach())


def _masked_batch(
    train: BatchableTexts,
    rows: np.ndarray,
    frame_mask: np.ndarray | None,
    config: TrainingSettings,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The padded batch of ``rows``, template and random tokens replaced by [UNK] at the configured rates."""
    ids, lengths = pad_rows(train, rows)
    if isinstance(ids, SubwordBatch):  # it knows its own template words
        return ids.masked(
            lengths, frame_prob=config.frame_mask_prob, token_prob=config.token_mask_prob, rng=rng
        ), lengths
    if config.frame_mask_prob > 0 or config.token_mask_prob > 0:
        real = np.arange(ids.shape[1])[None, :] < lengths.numpy()[:, None]
        masked = mask_tokens(
            ids.numpy(),
            real,
            frame_mask,
            frame_prob=config.frame_mask_prob,
            token_prob=config.token_mask_prob,
            rng=rng,
        )
        ids = torch.from_numpy(masked)
    return ids, lengths


def train_classifier(
    model: nn.Module,
    train: BatchableTexts,
    train_labels: np.ndarray,
    val: BatchableTexts,
    val_labels: np.ndarray,
    config: TrainingSettings,
    *,
    frame_mask: np.ndarray | None = None,
    train_weights: np.ndarray | None = None,
    train_targets: np.ndarray | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> TrainingResult:
    """Train in place and return the model holding the best epoch's weights (see :class:`EarlyStopping`).

    ``train_weights`` (one per training row; None: all 1) weight each row's loss: a batch's loss is
    the weighted mean, so rows an analyst labelled can count more than the templated ones.
    ``train_targets`` ([rows, classes] probabilities; None: ``train_labels`` one-hot) are what the
    loss pulls each row towards: soft targets distil a teacher's reading into the model.
    """
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    if frame_mask is not None and config.frame_mask_prob > 0:
        # Early stopping judges the validation texts with every template token masked: how well the
        # model reads the problem words, which is what carries over to free-form comments.
        val = mask_encoded(val, frame_mask)
    device = resolve_device(config.device)
    model.to(device)
    optimiser = _Optimiser(model, config, device)
    labels_t = torch.from_numpy(
        np.array(train_labels, dtype=np.int64)
        if train_targets is None
        else np.asarray(train_targets, dtype=np.float32)
    )
    weights_t = torch.from_numpy(
        np.ones(len(train), np.float32) if train_weights is None else np.asarray(train_weights, np.float32)
    )
    val_labels = np.array(val_labels, dtype=np.int64)
    result = TrainingResult(model=model, device=str(device), precision=optimiser.precision)
    stopping = EarlyStopping(config.patience, config.min_delta)
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = rng.permutation(len(train))
        total = 0.0
        for begin in range(0, len(order), config.batch_size):
            rows = order[begin : begin + config.batch_size]
            ids, lengths = _masked_batch(train, rows, frame_mask, config, rng)
            total += optimiser.step(ids, lengths, labels_t[rows], weights_t[rows]) * len(rows)
        val_loss, val_acc, val_f1 = _validation(
            model, val, val_labels, config, device, model.config.num_classes
        )
        metrics = EpochMetrics(
            epoch, total / max(len(order), 1), val_loss, val_acc, val_f1, time.perf_counter() - started
        )
        result.history.append(metrics)
        if on_epoch:
            on_epoch(metrics)
        if stopping.should_stop(metrics, model):
            break
    result.best_epoch = stopping.best_epoch
    if stopping.best_state is not None:
        model.load_state_dict(stopping.best_state)
    model.eval()
    return result
