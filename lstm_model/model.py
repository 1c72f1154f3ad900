"""The LSTM classifier (sizes in :class:`~lstm_model.settings.ArchitectureSettings`)."""

from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass

import torch
from torch import nn

from lstm_model.settings import ArchitectureSettings
from lstm_model.vocab import PAD_ID


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
        return cls(**{**data, "head_sizes": tuple(data["head_sizes"])})


class LSTMClassifier(nn.Module):
    """Embedding -> stacked LSTM -> output at the last real token -> MLP head -> class logits."""

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
        layers: list[nn.Module] = []
        width = config.hidden_size
        for size in config.head_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(config.head_dropout)]
            width = size
        layers.append(nn.Linear(width, config.num_classes))
        self.head = nn.Sequential(*layers)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``ids`` is right-padded [B, T]; ``lengths`` [B] (>= 1) gives each row's real length.

        With right padding and a one-directional LSTM, the output at ``lengths - 1`` is exactly the
        state after the last real token (what a packed sequence would return), and it avoids the
        pack/unpack overhead on CPU.
        """
        outputs, _ = self.lstm(self.embedding(ids))
        rows = torch.arange(ids.shape[0], device=ids.device)
        last = outputs[rows, lengths.to(ids.device) - 1]
        return self.head(last)
