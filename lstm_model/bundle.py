"""A trained model with everything needed to use and audit it, as in-memory files.

The bundle serialises to a ``{filename: bytes}`` mapping; the storage tasks decide where those bytes
go. Weights are a plain state_dict so loading uses ``torch.load(..., weights_only=True)`` and never
unpickles arbitrary objects from storage. Loading checks that the files agree with each other (labels,
vocabulary, network sizes and weights): a mismatch is refused with the file it concerns, instead of a
model that loads and scores wrongly.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field

import torch

from lstm_model.evaluation import Metrics
from lstm_model.fit import FittedModel
from lstm_model.fit import TrainingReport
from lstm_model.model import LSTMClassifier
from lstm_model.model import ModelConfig
from lstm_model.vocab import Vocabulary

WEIGHTS_FILE = "weights.pt"
VOCAB_FILE = "vocab.json"
META_FILE = "bundle.json"
SPLITS_FILE = "splits.json"
BUNDLE_FILES = (WEIGHTS_FILE, VOCAB_FILE, META_FILE, SPLITS_FILE)


def labels_digest(labels: Sequence[str]) -> str:
    """SHA-256 of the class labels in order: the order maps the network's outputs to classes."""
    return hashlib.sha256(json.dumps(list(labels), ensure_ascii=False).encode()).hexdigest()


def labels_in_meta(meta: bytes) -> list[str]:
    return list(_json(meta, META_FILE)["labels"])


def _json(data: bytes, name: str):
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name} is not valid JSON ({exc})") from None


@dataclass(frozen=True)
class ModelBundle:
    version: str
    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    vocab: Vocabulary
    labels: tuple[str, ...]
    max_len: int
    data_fingerprint: str
    training: TrainingReport
    metrics: dict[str, Metrics] = field(default_factory=dict)
    splits: dict[str, list[str]] = field(default_factory=dict)
    frame_tokens: tuple[str, ...] = ()

    @classmethod
    def from_fitted(
        cls,
        fitted: FittedModel,
        *,
        version: str,
        data_fingerprint: str,
        metrics: dict[str, Metrics] | None = None,
        splits: dict[str, list[str]] | None = None,
    ) -> ModelBundle:
        state = {k: v.detach().to("cpu").clone() for k, v in fitted.model.state_dict().items()}
        return cls(
            version=version,
            model_config=fitted.model.config,
            state_dict=state,
            vocab=fitted.vocab,
            labels=fitted.labels,
            max_len=fitted.max_len,
            data_fingerprint=data_fingerprint,
            training=fitted.report,
            metrics=dict(metrics or {}),
            splits=dict(splits or {}),
            frame_tokens=fitted.frame_tokens,
        )

    def build_model(self, device: str | torch.device = "cpu") -> LSTMClassifier:
        model = LSTMClassifier(self.model_config)
        model.load_state_dict(self.state_dict)
        return model.to(device).eval()

    def to_files(self) -> dict[str, bytes]:
        weights = io.BytesIO()
        torch.save(self.state_dict, weights)
        meta = {
            "version": self.version,
            "model_config": self.model_config.to_dict(),
            "labels": list(self.labels),
            "max_len": self.max_len,
            "data_fingerprint": self.data_fingerprint,
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
            "training": self.training.to_dict(),
            "frame_tokens": list(self.frame_tokens),
        }
        return {
            WEIGHTS_FILE: weights.getvalue(),
            VOCAB_FILE: self.vocab.to_json().encode(),
            META_FILE: json.dumps(meta, ensure_ascii=False, indent=2).encode(),
            SPLITS_FILE: json.dumps(self.splits).encode(),
        }

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> ModelBundle:
        missing = [name for name in BUNDLE_FILES if name not in files]
        if missing:
            raise ValueError(f"model bundle is incomplete, missing {missing}")
        meta = _json(files[META_FILE], META_FILE)
        vocab = _json(files[VOCAB_FILE], VOCAB_FILE)
        state = torch.load(io.BytesIO(files[WEIGHTS_FILE]), map_location="cpu", weights_only=True)
        try:
            bundle = cls(
                version=meta["version"],
                model_config=ModelConfig.from_dict(meta["model_config"]),
                state_dict=state,
                vocab=Vocabulary(tuple(vocab["itos"]), vocab.get("prefix_chars")),
                labels=tuple(meta["labels"]),
                max_len=meta["max_len"],
                data_fingerprint=meta["data_fingerprint"],
                training=TrainingReport.from_dict(meta.get("training", {})),
                metrics={name: Metrics.from_dict(m) for name, m in meta.get("metrics", {}).items()},
                splits=_json(files[SPLITS_FILE], SPLITS_FILE),
                frame_tokens=tuple(meta.get("frame_tokens", [])),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"{META_FILE} or {VOCAB_FILE} lacks a field or has a wrong one ({exc!r})"
            ) from None
        bundle.check_consistency()
        return bundle

    def check_consistency(self) -> None:
        """Raise ``ValueError`` unless labels, vocabulary, network sizes and weights fit together."""
        labels = self.labels
        if not labels or not all(isinstance(label, str) and label for label in labels):
            raise ValueError(f"{META_FILE}: labels must be non-empty strings, got {list(labels)!r}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"{META_FILE}: labels repeat: {list(labels)!r}")
        if len(set(self.vocab.itos)) != len(self.vocab.itos):
            raise ValueError(f"{VOCAB_FILE}: tokens repeat")
        config = self.model_config
        if config.num_classes != len(labels):
            raise ValueError(
                f"{META_FILE}: {len(labels)} labels but the network has {config.num_classes} outputs"
            )
        if config.vocab_size != len(self.vocab):
            raise ValueError(
                f"{VOCAB_FILE} has {len(self.vocab):,} entries but the network embeds {config.vocab_size:,}"
            )
        try:
            LSTMClassifier(config).load_state_dict(self.state_dict)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise ValueError(
                f"{WEIGHTS_FILE} does not fit the network in {META_FILE}: {' '.join(first[1:2] or first[:1])}"
            ) from None
