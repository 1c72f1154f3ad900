"""A bag-of-features logistic regression: the second model beside the LSTM.

It sees a comment as the bag of its features, without order: the mean of one weight row per known
feature, plus a bias. The features are either the LSTM's vocabulary keys (stems, with the LSTM's
template masking) or the character n-grams of each word (``char_ngrams.py``). On free-form comments
that is as good as the LSTM (it cannot overfit the templates' word order), and averaging the two is
steadier than either. Training uses the same loop as the LSTM (``training.train_classifier``).
"""

from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass

import torch
from torch import nn

from lstm_model.vocab import UNK_ID


@dataclass(frozen=True, kw_only=True)
class BagConfig:
    vocab_size: int
    num_classes: int

    def to_dict(self) -> dict:
        return asdict(self)


class BagOfKeysClassifier(nn.Module):
    """Mean of per-key class weights ([PAD] and [UNK] ignored) plus a bias -> class logits."""

    def __init__(self, config: BagConfig) -> None:
        super().__init__()
        self.config = config
        self.weights = nn.Embedding(config.vocab_size, config.num_classes)
        nn.init.zeros_(self.weights.weight)
        self.bias = nn.Parameter(torch.zeros(config.num_classes))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Same inputs as the LSTM (right-padded ids, lengths); padding is ignored by its id."""
        known = (ids > UNK_ID).to(self.weights.weight.dtype)
        total = (self.weights(ids) * known[..., None]).sum(1)
        return total / known.sum(1, keepdim=True).clamp(min=1.0) + self.bias
