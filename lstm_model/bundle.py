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
from typing import Any

import torch

from lstm_model.bag_model import BagConfig
from lstm_model.bag_model import BagOfKeysClassifier
from lstm_model.char_ngrams import NgramVocabulary
from lstm_model.evaluation import Metrics
from lstm_model.model import LSTMClassifier
from lstm_model.model import ModelConfig
from lstm_model.results import FittedModel
from lstm_model.results import TrainingReport
from lstm_model.review import ReviewPolicy
from lstm_model.subwords import SubwordVocabulary
from lstm_model.vocab import Vocabulary

WEIGHTS_FILE = "weights.pt"
VOCAB_FILE = "vocab.json"
META_FILE = "bundle.json"
SPLITS_FILE = "splits.json"
SECOND_WEIGHTS_FILE = "second_model.pt"  # bundles trained before the second model have none
# The second model's character n-grams; bundles whose second model reads stems have none.
NGRAMS_FILE = "char_ngrams.json"
# A stems model beside the n-gram one (second-model features ``both``); older bundles have none.
STEMS_WEIGHTS_FILE = "stems_model.pt"
# What a subword LSTM reads (its character n-grams and word form); bundles whose LSTM reads stems have none.
SUBWORDS_FILE = "subwords.json"
BUNDLE_FILES = (WEIGHTS_FILE, VOCAB_FILE, META_FILE, SPLITS_FILE)  # every bundle has these
MODEL_FILES = (
    *BUNDLE_FILES,
    SECOND_WEIGHTS_FILE,
    NGRAMS_FILE,
    STEMS_WEIGHTS_FILE,
    SUBWORDS_FILE,
)  # what a bundle can hold


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
    second_state_dict: dict[str, torch.Tensor] | None = None  # the second model, if any
    second_model_weight: float = 0.0
    ngrams: NgramVocabulary | None = None  # what the second model reads; None: the LSTM's vocabulary
    review: ReviewPolicy = ReviewPolicy(min_confidence=None)
    stems_state_dict: dict[str, torch.Tensor] | None = None  # a stems model beside the n-gram one
    stems_weight: float = 0.0
    subwords: SubwordVocabulary | None = None  # what a subword LSTM reads; None: the vocabulary's stems
    # Written by the training flow, kept as plain records: the rows it trained on (counts, label
    # files) and the champion/challenger decision. Empty for bundles made before the feedback loop.
    data: dict[str, Any] = field(default_factory=dict)
    promotion: dict[str, Any] | None = None

    @classmethod
    def from_fitted(
        cls,
        fitted: FittedModel,
        *,
        version: str,
        data_fingerprint: str,
        metrics: dict[str, Metrics] | None = None,
        splits: dict[str, list[str]] | None = None,
        data: dict[str, Any] | None = None,
        promotion: dict[str, Any] | None = None,
    ) -> ModelBundle:
        second = fitted.second_model
        stems = fitted.stems_model is not None and second is not None and fitted.ngrams is not None
        return cls(
            version=version,
            model_config=fitted.model.config,
            state_dict=_cpu_copy(fitted.model),
            vocab=fitted.vocab,
            labels=fitted.labels,
            max_len=fitted.max_len,
            data_fingerprint=data_fingerprint,
            training=fitted.report,
            metrics=dict(metrics or {}),
            splits=dict(splits or {}),
            frame_tokens=fitted.frame_tokens,
            second_state_dict=_cpu_copy(second) if second is not None else None,
            second_model_weight=fitted.second_model_weight if second is not None else 0.0,
            ngrams=fitted.ngrams if second is not None else None,
            review=fitted.review,
            stems_state_dict=_cpu_copy(fitted.stems_model) if stems else None,
            stems_weight=fitted.stems_weight if stems else 0.0,
            subwords=fitted.subwords,
            data=dict(data or {}),
            promotion=promotion,
        )

    def build_model(self, device: str | torch.device = "cpu") -> LSTMClassifier:
        model = LSTMClassifier(self.model_config)
        model.load_state_dict(self.state_dict)
        return model.to(device).eval()

    def build_second_model(self, device: str | torch.device = "cpu") -> BagOfKeysClassifier | None:
        if self.second_state_dict is None:
            return None
        config = BagConfig(vocab_size=len(self.ngrams or self.vocab), num_classes=len(self.labels))
        model = BagOfKeysClassifier(config)
        model.load_state_dict(self.second_state_dict)
        return model.to(device).eval()

    def build_stems_model(self, device: str | torch.device = "cpu") -> BagOfKeysClassifier | None:
        """The stems model beside the n-gram one (reads the LSTM's vocabulary), if the bundle has one."""
        if self.stems_state_dict is None:
            return None
        model = BagOfKeysClassifier(BagConfig(vocab_size=len(self.vocab), num_classes=len(self.labels)))
        model.load_state_dict(self.stems_state_dict)
        return model.to(device).eval()

    def to_files(self) -> dict[str, bytes]:
        meta = {
            "version": self.version,
            "model_config": self.model_config.to_dict(),
            "labels": list(self.labels),
            "max_len": self.max_len,
            "data_fingerprint": self.data_fingerprint,
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
            "training": self.training.to_dict(),
            "frame_tokens": list(self.frame_tokens),
            "second_model_weight": self.second_model_weight,
            "second_model_features": (
                None
                if self.second_state_dict is None
                else "both"
                if self.stems_state_dict is not None
                else "char_ngrams"
                if self.ngrams
                else "stems"
            ),
            "review": self.review.to_dict(),
            **({"stems_model_weight": self.stems_weight} if self.stems_state_dict is not None else {}),
            "data": self.data,
            "promotion": self.promotion,
        }
        files = {
            WEIGHTS_FILE: _tensor_bytes(self.state_dict),
            VOCAB_FILE: self.vocab.to_json().encode(),
            META_FILE: json.dumps(meta, ensure_ascii=False, indent=2).encode(),
            SPLITS_FILE: json.dumps(self.splits).encode(),
        }
        if self.second_state_dict is not None:
            files[SECOND_WEIGHTS_FILE] = _tensor_bytes(self.second_state_dict)
        if self.ngrams is not None:
            files[NGRAMS_FILE] = self.ngrams.to_json().encode()
        if self.stems_state_dict is not None:
            files[STEMS_WEIGHTS_FILE] = _tensor_bytes(self.stems_state_dict)
        if self.subwords is not None:
            files[SUBWORDS_FILE] = self.subwords.to_json().encode()
        return files

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> ModelBundle:
        missing = [name for name in BUNDLE_FILES if name not in files]
        if missing:
            raise ValueError(f"model bundle is incomplete, missing {missing}")
        meta = _json(files[META_FILE], META_FILE)
        vocab = _json(files[VOCAB_FILE], VOCAB_FILE)
        second = files.get(SECOND_WEIGHTS_FILE)
        ngrams = _json(files[NGRAMS_FILE], NGRAMS_FILE) if NGRAMS_FILE in files else None
        if ngrams is not None and second is None:
            raise ValueError(f"model bundle has {NGRAMS_FILE} but no {SECOND_WEIGHTS_FILE}")
        subwords = _json(files[SUBWORDS_FILE], SUBWORDS_FILE) if SUBWORDS_FILE in files else None
        stems = files.get(STEMS_WEIGHTS_FILE)
        if stems is not None and ngrams is None:
            raise ValueError(f"model bundle has {STEMS_WEIGHTS_FILE} but no {NGRAMS_FILE} (n-gram model)")
        try:
            bundle = cls(
                version=meta["version"],
                model_config=ModelConfig.from_dict(meta["model_config"]),
                state_dict=_load_tensors(files[WEIGHTS_FILE]),
                vocab=Vocabulary.from_dict(vocab),
                labels=tuple(meta["labels"]),
                max_len=meta["max_len"],
                data_fingerprint=meta["data_fingerprint"],
                training=TrainingReport.from_dict(meta.get("training", {})),
                metrics={name: Metrics.from_dict(m) for name, m in meta.get("metrics", {}).items()},
                splits=_json(files[SPLITS_FILE], SPLITS_FILE),
                frame_tokens=tuple(meta.get("frame_tokens", [])),
                second_state_dict=_load_tensors(second) if second is not None else None,
                second_model_weight=meta.get("second_model_weight", 0.0) if second is not None else 0.0,
                ngrams=NgramVocabulary.from_dict(ngrams) if ngrams is not None else None,
                review=ReviewPolicy.from_dict(meta.get("review")),
                stems_state_dict=_load_tensors(stems) if stems is not None else None,
                stems_weight=meta["stems_model_weight"] if stems is not None else 0.0,
                subwords=SubwordVocabulary.from_dict(subwords) if subwords is not None else None,
                data=meta.get("data") or {},
                promotion=meta.get("promotion"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"{META_FILE}, {VOCAB_FILE}, {NGRAMS_FILE} or {SUBWORDS_FILE} lacks a field or has a wrong one "
                f"({exc!r})"
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
        if (config.token_input == "subwords") != (self.subwords is not None):
            raise ValueError(
                f"{META_FILE}: the LSTM reads {config.token_input} but the bundle "
                f"{'lacks' if self.subwords is None else 'has'} {SUBWORDS_FILE}"
            )
        read, name = (self.subwords, SUBWORDS_FILE) if self.subwords is not None else (self.vocab, VOCAB_FILE)
        if config.vocab_size != len(read):
            raise ValueError(f"{name} has {len(read):,} entries but the network embeds {config.vocab_size:,}")
        try:
            LSTMClassifier(config).load_state_dict(self.state_dict)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise ValueError(
                f"{WEIGHTS_FILE} does not fit the network in {META_FILE}: {' '.join(first[1:2] or first[:1])}"
            ) from None
        try:
            self.build_second_model()
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise ValueError(
                f"{SECOND_WEIGHTS_FILE} does not fit the {'n-grams' if self.ngrams else 'vocabulary'} and labels: "
                f"{' '.join(first[1:2] or first[:1])}"
            ) from None
        try:
            self.build_stems_model()
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise ValueError(
                f"{STEMS_WEIGHTS_FILE} does not fit the vocabulary and labels: {' '.join(first[1:2] or first[:1])}"
            ) from None
        if not 0.0 <= self.second_model_weight + self.stems_weight <= 1.0 + 1e-9:
            raise ValueError(
                f"{META_FILE}: second_model_weight + stems_model_weight must be within 0..1, got "
                f"{self.second_model_weight} + {self.stems_weight}"
            )


def _cpu_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}


def _tensor_bytes(state: dict[str, torch.Tensor]) -> bytes:
    out = io.BytesIO()
    torch.save(state, out)
    return out.getvalue()


def _load_tensors(data: bytes) -> dict[str, torch.Tensor]:
    """A state_dict, never arbitrary pickled objects (``weights_only``)."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
