"""The LSTM classifier (sizes in :class:`~lstm_model.settings.ArchitectureSettings`)."""

from __future__ import annotations

import typing
from dataclasses import asdict
from dataclasses import dataclass

import torch
from torch import nn

from lstm_model.settings import ArchitectureSettings
from lstm_model.settings import Pooling
from lstm_model.settings import TokenInput
from lstm_model.subwords import FIRST_WORD
from lstm_model.subwords import SubwordBatch
from lstm_model.vocab import PAD_ID

POOLINGS: tuple[Pooling, ...] = typing.get_args(Pooling)
TOKEN_INPUTS: tuple[TokenInput, ...] = typing.get_args(TokenInput)
ATTENTION_DIM = 64  # width of the small scoring layer of attention pooling


@dataclass(frozen=True, kw_only=True)
class ModelConfig(ArchitectureSettings):
    """Everything needed to rebuild the network: the layer sizes plus the data-given dimensions."""

    vocab_size: int  # stems in the vocabulary, or (subwords) character n-grams
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
        # Bundles written before pooling was an option read the last real token's state; those written
        # before subwords read stems.
        old = {"pooling": "last", "token_input": "stems"}
        return cls(**{**old, **data, "head_sizes": tuple(data["head_sizes"])})


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
        if config.token_input not in TOKEN_INPUTS:
            raise ValueError(
                f"token_input must be one of {', '.join(TOKEN_INPUTS)}, not {config.token_input!r}"
            )
        if config.token_input == "subwords":
            # A word's vector is the mean of its character n-grams' vectors (lstm_model/subwords.py);
            # a masked word, or one with no known n-gram, reads the learnt [UNK] vector.
            self.subwords = nn.EmbeddingBag(config.vocab_size, config.embedding_dim, mode="mean")
            self.unknown = nn.Parameter(torch.zeros(config.embedding_dim))
        else:
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

    def forward(self, ids: torch.Tensor | SubwordBatch, lengths: torch.Tensor) -> torch.Tensor:
        """``ids`` is right-padded [B, T] (stems: vocabulary ids; subwords: a :class:`SubwordBatch`);
        ``lengths`` [B] (>= 1) gives each row's real length.

        With right padding and a one-directional LSTM, the outputs at positions < length do not
        depend on the padding after them, so pooling over those positions (or reading the one at
        ``lengths - 1``, what a packed sequence would return) ignores padding exactly, without the
        pack/unpack overhead on CPU.
        """
        vectors = self.embed_subwords(ids) if isinstance(ids, SubwordBatch) else self.embedding(ids)
        outputs, _ = self.lstm(vectors)
        return self.head(self.pool(outputs, lengths.to(vectors.device)))

    def embed_subwords(self, batch: SubwordBatch) -> torch.Tensor:
        """[B, T, E] word vectors: padding zero, [UNK] learnt, each word the mean of its n-grams."""
        words = self.subwords(batch.gram_ids, batch.gram_offsets)  # a word with no known n-gram: zeros
        pad = torch.zeros(1, words.shape[1], dtype=words.dtype, device=words.device)
        table = torch.cat([pad, self.unknown.to(words.dtype)[None, :], words])
        assert FIRST_WORD == 2  # the table's first two rows: padding, [UNK]
        return table[batch.words]

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
