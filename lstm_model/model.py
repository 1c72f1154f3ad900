"""The LSTM classifier (sizes in :class:`~lstm_model.settings.ArchitectureSettings`)."""

from __future__ import annotations

import typing
from dataclasses import asdict
from dataclasses import dataclass

import torch
from torch import nn

from lstm_model.settings import ArchitectureSettings
from lstm_model.settings import Pooling
from lstm_model.vocab import PAD_ID

POOLINGS: tuple[Pooling, ...] = typing.get_args(Pooling)
ATTENTION_DIM = 64  # width of the small scoring layer of attention pooling


@dataclass(frozen=True, kw_only=True)
class ModelConfig(ArchitectureSettings):
    """Everything needed to rebuild the network: the layer sizes plus the data-given dimensions."""

    vocab_size: int
    num_classes: int

    @classmethod
    def for_data(
        cls, architecture: ArchitectureSettings, *, vocab_size: int, num_classes: int
    ) -> ModelConfig:
        return cls(**asdict(architecture), vocab_size=vocab_size, num_classes=num_classes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        # Bundles written before pooling was an option read the last real token's state.
        return cls(**{"pooling": "last", **data, "head_sizes": tuple(data["head_sizes"])})


class LSTMClassifier(nn.Module):
    """Embedding -> stacked LSTM -> pooled outputs (see ``pooling``) -> MLP head -> class logits.

    Pooling over every real token (mean by default) reads a comment as the sum of its words: on
    free-form text, where the words that carry the class can be anywhere and the rest is new to the
    model, that generalises much better than the state after the last token, which a template-trained
    LSTM ties to the template's ending.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.lstm_dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        if config.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {config.pooling!r}")
        if config.pooling == "attention":
            self.attention = nn.Sequential(
                nn.Linear(config.hidden_size, ATTENTION_DIM),
                nn.Tanh(),
                nn.Linear(ATTENTION_DIM, 1, bias=False),
            )
        layers: list[nn.Module] = []
        width = config.hidden_size
        for size in config.head_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(config.head_dropout)]
            width = size
        layers.append(nn.Linear(width, config.num_classes))
        self.head = nn.Sequential(*layers)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``ids`` is right-padded [B, T]; ``lengths`` [B] (>= 1) gives each row's real length.

        With right padding and a one-directional LSTM, the outputs at positions < length do not
        depend on the padding after them, so pooling over those positions (or reading the one at
        ``lengths - 1``, what a packed sequence would return) ignores padding exactly, without the
        pack/unpack overhead on CPU.
        """
        outputs, _ = self.lstm(self.embedding(ids))
        return self.head(self.pool(outputs, lengths.to(ids.device)))

    def pool(self, outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, T, H] LSTM outputs -> [B, H], using only each row's first ``lengths`` positions."""
        pooling = self.config.pooling
        if pooling == "last":
            return outputs[torch.arange(outputs.shape[0], device=outputs.device), lengths - 1]
        real = torch.arange(outputs.shape[1], device=outputs.device)[None, :] < lengths[:, None]
        if pooling == "mean":
            return (outputs * real[..., None]).sum(1) / lengths[:, None].to(outputs.dtype)
        if pooling == "max":
            return outputs.masked_fill(~real[..., None], float("-inf")).max(1).values
        scores = self.attention(outputs).squeeze(-1).masked_fill(~real, float("-inf"))
        return (torch.softmax(scores, dim=1)[..., None] * outputs).sum(1)
