"""Flow configurations: one pydantic model per flow, used as its Prefect parameter and its CLI flags.

Only pydantic is imported at module level so that ``comentarios --help`` stays fast; the helpers
that build runtime objects import what they need when called.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING
from typing import Literal
from typing import TypeVar

from pydantic import BaseModel
from pydantic import Field
from pydantic import field_validator

from lstm_model.settings import ArchitectureSettings
from lstm_model.settings import TextSettings
from lstm_model.settings import TrainingSettings
from tasks.schema import CATEGORIES
from tasks.schema import SEVERITIES

if TYPE_CHECKING:
    from tasks.scoring import ScoringSettings
    from tasks.storage import Storage

# The defaults of the model and training fields live in lstm_model/settings.py; read them from there.
_TEXT, _ARCH, _TRAIN = TextSettings(), ArchitectureSettings(), TrainingSettings()
S = TypeVar("S", TextSettings, ArchitectureSettings, TrainingSettings)

DEFAULT_SOURCE = (
    "https://raw.githubusercontent.com/mauriciogupi/nlp-master/main/Sesion2/comentarios_train.json"
)


class StorageParams(BaseModel):
    """Where a flow keeps its data: the one place a run's storage root and S3 endpoint are set."""

    storage: str = Field(
        "./storage",
        min_length=1,
        description="Storage root (local folder or s3://bucket/prefix): models/, incoming/, the ledger "
        "and the output tables live under it.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="Endpoint of an S3-compatible store (MinIO, Ceph, moto); credentials come from the usual AWS sources.",
    )

    @field_validator("s3_endpoint_url", mode="before")
    @classmethod
    def _empty_endpoint_is_none(cls, value: str | None) -> str | None:
        return value or None  # deployments template an unset variable as ""

    def storage_root(self) -> Storage:
        from tasks.storage import Storage

        return Storage(self.storage, self.s3_endpoint_url)


class TrainConfig(StorageParams):
    """Parameters of ``train-lstm``; each is also a ``comentarios train`` flag."""

    source: str = Field(
        DEFAULT_SOURCE,
        min_length=1,
        description="Training data: http(s) URL, local path or fsspec URI (s3://...); JSON array or JSON Lines.",
    )
    categories: list[str] = Field(list(CATEGORIES), description="Allowed categoria values (the classes).")
    severities: list[str] = Field(list(SEVERITIES), description="Allowed severidad values.")
    val_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of valid rows held out for early stopping."
    )
    test_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of valid rows held out for the test metrics."
    )
    min_rows_per_class: int = Field(
        10, ge=1, description="Valid rows each class needs; a dataset with fewer fails and publishes nothing."
    )
    seed: int = Field(
        _TRAIN.seed,
        description="Seed of the split, the weights and the batch order (CPU runs are reproducible).",
    )
    min_freq: int = Field(
        _TEXT.min_freq,
        ge=1,
        description="Minimum count of a token in the training split to enter the vocabulary.",
    )
    max_vocab: int = Field(
        _TEXT.max_vocab, ge=3, description="Vocabulary size cap, [PAD] and [UNK] included."
    )
    max_len: int = Field(
        _TEXT.max_len, ge=1, description="Tokens kept per comment (longer comments are cut)."
    )
    prefix_chars: int | None = Field(
        _TEXT.prefix_chars,
        ge=1,
        description="Cut tokens to this many characters (a light stemmer); unset for whole words.",
    )
    embedding_dim: int = Field(_ARCH.embedding_dim, ge=1, description="Embedding size.")
    hidden_size: int = Field(_ARCH.hidden_size, ge=1, description="LSTM hidden units.")
    num_layers: int = Field(_ARCH.num_layers, ge=1, description="Stacked LSTM layers.")
    lstm_dropout: float = Field(_ARCH.lstm_dropout, ge=0, lt=1, description="Dropout between LSTM layers.")
    head_sizes: list[int] = Field(list(_ARCH.head_sizes), description="Hidden layer sizes of the MLP head.")
    head_dropout: float = Field(_ARCH.head_dropout, ge=0, lt=1, description="Dropout in the MLP head.")
    epochs: int = Field(
        _TRAIN.epochs, ge=1, description="Maximum epochs (early stopping usually ends sooner)."
    )
    batch_size: int = Field(_TRAIN.batch_size, ge=1, description="Training batch size.")
    learning_rate: float = Field(_TRAIN.learning_rate, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(_TRAIN.weight_decay, ge=0, description="AdamW weight decay.")
    patience: int = Field(
        _TRAIN.patience, ge=1, description="Epochs without validation improvement before stopping."
    )
    frame_coverage: float = Field(
        _TEXT.frame_coverage,
        gt=0,
        le=1,
        description="A token in at least this share of one class's texts counts as template wording.",
    )
    frame_mask_prob: float = Field(
        _TRAIN.frame_mask_prob,
        ge=0,
        lt=1,
        description="Chance of masking each template token during training.",
    )
    token_mask_prob: float = Field(
        _TRAIN.token_mask_prob,
        ge=0,
        lt=1,
        description="Chance of masking any token during training (word dropout).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        _TRAIN.device, description="auto uses CUDA when present; cuda without a GPU is an error."
    )
    promote_threshold: float = Field(
        0.95, ge=0, le=1, description="Test macro-F1 needed to make the new model 'latest'."
    )

    def _settings(self, kind: type[S]) -> S:
        """The settings dataclass ``kind`` filled from this config's fields of the same names."""
        values = {f.name: getattr(self, f.name) for f in fields(kind) if f.name in type(self).model_fields}
        return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def text_settings(self) -> TextSettings:
        return self._settings(TextSettings)

    def architecture(self) -> ArchitectureSettings:
        return self._settings(ArchitectureSettings)

    def training_settings(self) -> TrainingSettings:
        return self._settings(TrainingSettings)


class ScoreConfig(StorageParams):
    """Parameters of ``score-batches``; each is also a ``comentarios score`` flag."""

    model: str = Field(
        "latest", description="Model version to use: 'latest' (the promoted one) or a version name."
    )
    input: str | None = Field(
        None, description="Folder or glob of Parquet batches (default: <storage>/incoming/)."
    )
    rescore: bool = Field(
        False, description="Score batches again even if already scored, replacing their previous output."
    )
    min_file_age: float = Field(
        3.0,
        ge=0,
        description="Seconds since a file's last modification before it is scored; younger files may "
        "still be written and wait for the next run.",
    )
    claim_seconds: float = Field(
        60.0,
        gt=0,
        description="Lease of the claim a run takes on each batch it scores (renewed every third of it); "
        "a killed run's batches are taken over once it runs out.",
    )
    max_comment_chars: int = Field(
        5_000, ge=1, description="Longer comentarios are rejected (rule comentario_too_long)."
    )
    chunk_rows: int = Field(
        65_536,
        ge=1,
        description="Rows read, validated and scored at a time; bounds memory whatever the file size.",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="Inference precision. bf16 pays off only on CPUs with bf16 instructions; "
        "check speed and agreement with bench/score_throughput.py.",
    )
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="Device for inference.")
    inference_batch: int = Field(
        1_024, ge=1, description="Rows per forward pass (length-sorted within each chunk)."
    )
    task_runner: Literal["threads", "dask"] = Field(
        "threads",
        description="Where batches run: a thread pool in the flow's process, or Dask (a local cluster, or --dask-address).",
    )
    workers: int = Field(
        1,
        ge=1,
        description="Batches scored at once: threads, or processes of the local Dask cluster. "
        "Each holds one chunk and one model in memory.",
    )
    dask_address: str | None = Field(
        None,
        description="Address of an existing Dask scheduler (tcp://host:8786); with task_runner=dask, "
        "used instead of a local cluster.",
    )

    def scoring_settings(self) -> ScoringSettings:
        from tasks.scoring import ScoringSettings

        return ScoringSettings(
            max_comment_chars=self.max_comment_chars,
            chunk_rows=self.chunk_rows,
            precision=self.precision,
            device=self.device,
            inference_batch=self.inference_batch,
        )
