"""Flow configurations: one pydantic model per flow, used as its Prefect parameter and its CLI flags.

Only pydantic is imported at module level so that ``comentarios --help`` stays fast; the helpers
that build runtime objects import what they need when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, field_validator

from tasks.schema import CATEGORIES, SEVERITIES

if TYPE_CHECKING:
    from lstm_model.training import TrainingConfig
    from tasks.modeling import TextSettings
    from tasks.storage import Storage

DEFAULT_SOURCE = "https://raw.githubusercontent.com/mauriciogupi/nlp-master/main/Sesion2/comentarios_train.json"


class StorageParams(BaseModel):
    """Where a flow keeps its data: the one place a run's storage root and S3 endpoint are set."""

    storage: str = Field("./storage", min_length=1, description="Storage root (local folder or s3://bucket/prefix): models/, incoming/, the ledger and the output tables live under it.")
    s3_endpoint_url: str | None = Field(None, description="Endpoint of an S3-compatible store (MinIO, Ceph, moto); credentials come from the usual AWS sources.")

    @field_validator("s3_endpoint_url", mode="before")
    @classmethod
    def _empty_endpoint_is_none(cls, value: str | None) -> str | None:
        return value or None  # deployments template an unset variable as ""

    def storage_root(self) -> Storage:
        from tasks.storage import Storage

        return Storage(self.storage, self.s3_endpoint_url)


class TrainConfig(StorageParams):
    """Parameters of ``train-lstm``; each is also a ``comentarios train`` flag."""

    source: str = Field(DEFAULT_SOURCE, min_length=1, description="Training data: http(s) URL, local path or fsspec URI (s3://...); JSON array or JSON Lines.")
    categories: list[str] = Field(list(CATEGORIES), description="Allowed categoria values (the classes).")
    severities: list[str] = Field(list(SEVERITIES), description="Allowed severidad values.")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Share of valid rows held out for early stopping.")
    test_fraction: float = Field(0.1, ge=0, lt=1, description="Share of valid rows held out for the test metrics.")
    seed: int = Field(42, description="Seed of the split, the weights and the batch order (CPU runs are reproducible).")
    min_freq: int = Field(1, ge=1, description="Minimum count of a token in the training split to enter the vocabulary.")
    max_vocab: int = Field(20_000, ge=3, description="Vocabulary size cap, [PAD] and [UNK] included.")
    max_len: int = Field(64, ge=1, description="Tokens kept per comment (longer comments are cut).")
    prefix_chars: int | None = Field(5, ge=1, description="Cut tokens to this many characters (a light stemmer); unset for whole words.")
    embedding_dim: int = Field(256, ge=1, description="Embedding size.")
    hidden_size: int = Field(128, ge=1, description="LSTM hidden units.")
    num_layers: int = Field(2, ge=1, description="Stacked LSTM layers.")
    lstm_dropout: float = Field(0.2, ge=0, lt=1, description="Dropout between LSTM layers.")
    head_sizes: list[int] = Field([512, 256], description="Hidden layer sizes of the MLP head.")
    head_dropout: float = Field(0.2, ge=0, lt=1, description="Dropout in the MLP head.")
    epochs: int = Field(20, ge=1, description="Maximum epochs (early stopping usually ends sooner).")
    batch_size: int = Field(64, ge=1, description="Training batch size.")
    learning_rate: float = Field(2e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(1e-2, ge=0, description="AdamW weight decay.")
    patience: int = Field(3, ge=1, description="Epochs without validation improvement before stopping.")
    frame_coverage: float = Field(0.8, gt=0, le=1, description="A token in at least this share of one class's texts counts as template wording.")
    frame_mask_prob: float = Field(0.9, ge=0, lt=1, description="Chance of masking each template token during training.")
    token_mask_prob: float = Field(0.3, ge=0, lt=1, description="Chance of masking any token during training (word dropout).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses CUDA when present; cuda without a GPU is an error.")
    promote_threshold: float = Field(0.95, ge=0, le=1, description="Test macro-F1 needed to make the new model 'latest'.")

    def text_settings(self) -> TextSettings:
        from tasks.modeling import TextSettings

        return TextSettings(self.min_freq, self.max_vocab, self.max_len, self.prefix_chars, self.frame_coverage)

    def model_settings(self) -> dict:
        return {
            "embedding_dim": self.embedding_dim, "hidden_size": self.hidden_size, "num_layers": self.num_layers,
            "lstm_dropout": self.lstm_dropout, "head_sizes": tuple(self.head_sizes), "head_dropout": self.head_dropout,
        }

    def training_settings(self) -> TrainingConfig:
        from lstm_model.training import TrainingConfig

        return TrainingConfig(
            epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
            weight_decay=self.weight_decay, patience=self.patience, seed=self.seed, device=self.device,
            frame_mask_prob=self.frame_mask_prob, token_mask_prob=self.token_mask_prob,
        )


class ScoreConfig(StorageParams):
    """Parameters of ``score-batches``; each is also a ``comentarios score`` flag."""

    model: str = Field("latest", description="Model version to use: 'latest' (the promoted one) or a version name.")
    input: str | None = Field(None, description="Folder or glob of Parquet batches (default: <storage>/incoming/).")
    rescore: bool = Field(False, description="Score batches again even if already scored, replacing their previous output.")
    max_comment_chars: int = Field(5_000, ge=1, description="Longer comentarios are rejected (rule comentario_too_long).")
    chunk_rows: int = Field(65_536, ge=1, description="Rows read, validated and scored at a time; bounds memory whatever the file size.")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="Inference precision. bf16 pays off only on CPUs with bf16 instructions; check speed and agreement with bench/score_throughput.py.")
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="Device for inference.")
    inference_batch: int = Field(1_024, ge=1, description="Rows per forward pass (length-sorted within each chunk).")
    task_runner: Literal["threads", "dask"] = Field("threads", description="Where batches run: a thread pool in the flow's process, or Dask (a local cluster, or --dask-address).")
    workers: int = Field(1, ge=1, description="Batches scored at once: threads, or processes of the local Dask cluster. Each holds one chunk and one model in memory.")
    dask_address: str | None = Field(None, description="Address of an existing Dask scheduler (tcp://host:8786); with task_runner=dask, used instead of a local cluster.")

    def scoring_settings(self):
        from tasks.scoring import ScoringSettings

        return ScoringSettings(self.max_comment_chars, self.chunk_rows, self.precision, self.device, self.inference_batch)
