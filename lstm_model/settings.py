"""The knobs of text encoding, the network and training, with their one set of defaults.

This module imports nothing heavy (no torch), so the flow configs can take their defaults from here
and ``comentarios --help`` stays fast. ``flows/configs.py`` exposes every field as a Prefect
parameter and a CLI flag; nothing else repeats these values.
"""

from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import fields
from typing import Any


@dataclass(frozen=True, kw_only=True)
class TextSettings:
    """How comments become token ids."""

    min_freq: int = 1
    max_vocab: int = 20_000  # [PAD] and [UNK] included
    max_len: int = 64  # tokens kept per comment
    # Tokens are cut to their first ``prefix_chars`` characters before lookup (a light stemmer);
    # None keeps whole words.
    prefix_chars: int | None = 5
    # A token in at least this share of one class's texts counts as template wording (masked).
    frame_coverage: float = 0.8


@dataclass(frozen=True, kw_only=True)
class ArchitectureSettings:
    """Layer sizes; the defaults are the reference notebook's."""

    embedding_dim: int = 256
    hidden_size: int = 128
    num_layers: int = 2
    lstm_dropout: float = 0.2
    head_sizes: tuple[int, ...] = (512, 256)
    head_dropout: float = 0.2


@dataclass(frozen=True, kw_only=True)
class TrainingSettings:
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-2
    patience: int = 3
    # Validation-loss improvements smaller than this do not count: on easy data the loss creeps
    # towards zero for many epochs after the model has stopped getting better.
    min_delta: float = 1e-3
    seed: int = 42
    device: str = "auto"
    # Template tokens are masked with frame_mask_prob, any token with token_mask_prob (see frames.py).
    frame_mask_prob: float = 0.9
    token_mask_prob: float = 0.3
    eval_batch_size: int = 1024

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSettings:
        """Settings from a bundle's ``training`` record (other keys in it are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
