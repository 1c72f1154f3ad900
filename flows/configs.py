"""Flow configurations: one pydantic model per flow, used as its Prefect parameter and its CLI flags.

Only pydantic is imported at module level so that ``comentarios --help`` stays fast; the helpers
that build runtime objects import what they need when called.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal
from typing import TypeVar

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator

from lstm_model.settings import ArchitectureSettings
from lstm_model.settings import Pooling
from lstm_model.settings import ReviewSettings
from lstm_model.settings import SecondModelSettings
from lstm_model.settings import TextSettings
from lstm_model.settings import TokenInput
from lstm_model.settings import TrainingSettings
from tasks.common.schema import CATEGORIES
from tasks.common.schema import SEVERITIES
from tasks.common.schema import fold_name

if TYPE_CHECKING:
    from tasks.scoring.score_file import ScoringSettings
    from tasks.store.storage import Storage

# The defaults of the model and training fields live in lstm_model/settings.py; read them from there.
_TEXT, _ARCH, _TRAIN = TextSettings(), ArchitectureSettings(), TrainingSettings()
_SECOND, _REVIEW = SecondModelSettings(), ReviewSettings()
# Comments already scored that a training reads unlabelled (``--scored-rows``): each adds one text to
# the subword LSTM's epochs, and the reader holds at most this many distinct texts.
DEFAULT_SCORED_ROWS = 10_000
MAX_SCORED_ROWS = 200_000
S = TypeVar("S")

DEFAULT_SOURCE = (
    "https://raw.githubusercontent.com/mauriciogupi/nlp-master/main/Sesion2/comentarios_train.json"
)


def _share(default: float, description: str, *, below_one: bool = False, above_zero: bool = False) -> Any:
    """A field for a share in [0, 1] (``below_one``: less than 1; ``above_zero``: more than 0)."""
    bounds = {"gt" if above_zero else "ge": 0, "lt" if below_one else "le": 1}
    return Field(default, description=description, **bounds)


# Upper bounds of the numeric flags. Each is far above any sensible value: they exist so that a typo
# (an extra zero, ``99999999999999999999999``) is refused in one line before a run starts, instead of
# an OverflowError or an out-of-memory half-way through, after ``--rescore`` has deleted old outputs.
MAX_ROWS = 1 << 22  # rows per chunk, per forward pass or per training batch (4,194,304)
MAX_SECONDS = 30 * 24 * 3600.0  # a lease or a file age: 30 days
MAX_SIZE = 1 << 16  # a layer width, an embedding size (65,536)
MAX_COUNT = 1_000_000  # epochs, patience, rows per class, prefix characters
MAX_SEED = 2**32 - 1  # what every generator the training seeds accepts


class StorageParams(BaseModel):
    """Where a flow keeps its data: the one place a run's storage root and S3 endpoint are set.

    ``allow_inf_nan=False`` holds for every float of every config: ``inf`` or ``nan`` is refused by
    validation like any other out-of-range number (an infinite lease would never expire).
    """

    model_config = ConfigDict(allow_inf_nan=False)

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
        from tasks.store.storage import Storage

        return Storage(self.storage, self.s3_endpoint_url)

    def _settings(self, kind: type[S]) -> S:
        """The settings dataclass ``kind`` filled from this config's fields of the same names."""
        values = {f.name: getattr(self, f.name) for f in fields(kind) if f.name in type(self).model_fields}
        return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


class TrainConfig(StorageParams):
    """Parameters of ``train-lstm``; each is also a ``comentarios train`` flag."""

    source: str = Field(
        DEFAULT_SOURCE,
        min_length=1,
        description="Training data: http(s) URL, local path or fsspec URI (s3://...); JSON array or JSON Lines.",
    )
    labels: str = Field(
        "auto",
        min_length=1,
        description="Analysts' label files (CSV, Parquet, JSON Lines with id, comentario, categoria): a "
        "folder or file (local or s3://); auto: <storage>/labels/; none: train on --source alone.",
    )
    categories: list[str] = Field(list(CATEGORIES), description="Allowed categoria values (the classes).")
    severities: list[str] = Field(list(SEVERITIES), description="Allowed severidad values.")
    val_fraction: float = _share(
        0.1,
        "Share of valid rows held out for early stopping (more than 0; with --test-fraction, at most "
        "half of the rows).",
        below_one=True,
        above_zero=True,
    )
    test_fraction: float = _share(
        0.1,
        "Share of valid rows held out for the test metrics and the promotion gate (more than 0).",
        below_one=True,
        above_zero=True,
    )
    min_file_age: float = Field(
        3.0,
        ge=0,
        le=MAX_SECONDS,
        description="Seconds since a label file's last modification before it is read; a younger file "
        "may still be being copied and waits for the next training (logged, listed in bundle.json).",
    )
    min_rows_per_class: int = Field(
        10,
        ge=1,
        le=MAX_COUNT,
        description="Valid rows each class needs; a dataset with fewer fails and publishes nothing.",
    )
    seed: int = Field(
        _TRAIN.seed,
        ge=0,
        le=MAX_SEED,
        description="Seed of the split, the weights and the batch order (CPU runs are reproducible).",
    )
    min_freq: int = Field(
        _TEXT.min_freq,
        ge=1,
        le=MAX_COUNT,
        description="Minimum count of a token in the training split to enter the vocabulary.",
    )
    max_vocab: int = Field(
        _TEXT.max_vocab, ge=3, le=10_000_000, description="Vocabulary size cap, [PAD] and [UNK] included."
    )
    max_len: int = Field(
        _TEXT.max_len, ge=1, le=MAX_SIZE, description="Tokens kept per comment (longer comments are cut)."
    )
    stem: bool = Field(
        _TEXT.stem, description="Key tokens by their Spanish Snowball stem (envío, envíos -> enví)."
    )
    drop_stopwords: bool = Field(
        _TEXT.drop_stopwords,
        description="Drop Spanish stop words (de, la, que...) before the model reads a comment.",
    )
    strip_accents: bool = Field(
        _TEXT.strip_accents,
        description="Key tokens without accents (envío and envio are one entry; ñ stays).",
    )
    prefix_chars: int | None = Field(
        _TEXT.prefix_chars,
        ge=1,
        le=MAX_COUNT,
        description="Cut token keys to this many characters (a light stemmer); unset for no cut.",
    )
    embedding_dim: int = Field(_ARCH.embedding_dim, ge=1, le=MAX_SIZE, description="Embedding size.")
    hidden_size: int = Field(_ARCH.hidden_size, ge=1, le=MAX_SIZE, description="LSTM hidden units.")
    num_layers: int = Field(_ARCH.num_layers, ge=1, le=64, description="Stacked LSTM layers.")
    lstm_dropout: float = _share(_ARCH.lstm_dropout, "Dropout between LSTM layers.", below_one=True)
    head_sizes: list[int] = Field(
        list(_ARCH.head_sizes), max_length=64, description="Hidden layer sizes of the MLP head."
    )
    head_dropout: float = _share(_ARCH.head_dropout, "Dropout in the MLP head.", below_one=True)
    pooling: Pooling = Field(
        _ARCH.pooling,
        description="How the LSTM outputs become one vector: mean, max or attention over every token, "
        "or last (the state after the last token, as the reference notebook did).",
    )
    token_input: TokenInput = Field(
        _ARCH.token_input,
        description="What the LSTM reads per word: subwords (the mean of its character n-gram vectors, so "
        "typos, missing accents and new inflections land near the word) or stems (one vector per stem).",
    )
    subword_min_n: int = Field(
        _ARCH.subword_min_n, ge=1, le=10, description="Subword LSTM: shortest character n-gram."
    )
    subword_max_n: int = Field(
        _ARCH.subword_max_n, ge=1, le=10, description="Subword LSTM: longest character n-gram."
    )
    subword_max_grams: int = Field(
        _ARCH.subword_max_grams,
        ge=2,
        le=MAX_ROWS,
        description="Subword LSTM: n-grams with a vector, most frequent first.",
    )
    epochs: int = Field(
        _TRAIN.epochs, ge=1, le=MAX_COUNT, description="Maximum epochs (early stopping usually ends sooner)."
    )
    batch_size: int = Field(_TRAIN.batch_size, ge=1, le=MAX_ROWS, description="Training batch size.")
    learning_rate: float = Field(_TRAIN.learning_rate, gt=0, le=10, description="AdamW learning rate.")
    weight_decay: float = Field(_TRAIN.weight_decay, ge=0, le=10, description="AdamW weight decay.")
    patience: int = Field(
        _TRAIN.patience,
        ge=1,
        le=MAX_COUNT,
        description="Epochs without validation improvement before stopping.",
    )
    frame_coverage: float = _share(
        _TEXT.frame_coverage,
        "A token in at least this share of one class's texts counts as template wording.",
        above_zero=True,
    )
    frame_mask_prob: float = _share(
        _TRAIN.frame_mask_prob, "Chance of masking each template token during training.", below_one=True
    )
    token_mask_prob: float = _share(
        _TRAIN.token_mask_prob, "Chance of masking any token during training (word dropout).", below_one=True
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        _TRAIN.device, description="auto uses CUDA when present; cuda without a GPU is an error."
    )
    second_model_weight: float | None = Field(
        _SECOND.weight,
        ge=0,
        le=1,
        description="Share of the second model (the n-gram one with 'both') in the averaged probabilities "
        "(0: no such model; unset: 0.6 with both, 0.8 for n-grams alone, 0.5 for stems alone).",
    )
    stems_model_weight: float | None = Field(
        _SECOND.stems_weight,
        ge=0,
        le=1,
        description="With second-model features 'both': share of the stems model (unset: 0.25); the LSTM "
        "keeps 1 - second_model_weight - stems_model_weight.",
    )
    second_model_features: Literal["auto", "both", "char_ngrams", "stems"] = Field(
        _SECOND.features,
        description="What the second model reads: both (an n-gram model and a stems model), character "
        "n-grams of each word, or the LSTM's stems; auto: n-grams when label files add rows, stems "
        "otherwise (the default before n-grams).",
    )
    review_catch_target: float = _share(
        _REVIEW.catch_target,
        "needs_review threshold: flag this share of the wrong predictions on the free-form "
        "calibration comments...",
        above_zero=True,
    )
    review_max_flagged: float = _share(
        _REVIEW.max_validation_flagged, "...unless that flags more than this share of the validation rows..."
    )
    review_max_in_frame_flagged: float = _share(
        _REVIEW.max_in_frame_flagged,
        "...or more than this share of the template comments with new wording (tasks/resources/frames_eval.jsonl).",
    )
    review_max_right_flagged: float | None = Field(
        _REVIEW.max_right_flagged,
        ge=0,
        le=1,
        description="...or more than this share of the free-form calibration comments it gets right (none: no cap)...",
    )
    review_min_catch: float = _share(
        _REVIEW.min_catch, "...as long as it still catches this share of the wrong calibration predictions."
    )
    label_weight: float = Field(
        _TRAIN.label_weight,
        gt=0,
        le=1_000,
        description="Loss weight of a row from the label files against a row of the source.",
    )
    domain_phrases: str = Field(
        "builtin",
        min_length=1,
        description="Domain phrases added to the training texts: builtin (tasks/resources/domain_phrases.jsonl), "
        "none, or a JSON Lines / JSON file of comentario and categoria (local path, s3:// or URL).",
    )
    phrase_share: float = _share(
        _TRAIN.phrase_share,
        "Share of the training rows that are domain phrases (each phrase at least once).",
        below_one=True,
    )
    augment_per_phrase: int = Field(
        _TRAIN.augment_per_phrase,
        ge=0,
        le=1_000,
        description="Subword LSTM: each domain phrase also placed in this many noisy carrier sentences "
        "(0: none).",
    )
    distill_weight: float = _share(
        _TRAIN.distill_weight,
        "Subword LSTM: share of the bag models' probabilities in the targets of the augmented texts.",
    )
    scored_rows: int = Field(
        DEFAULT_SCORED_ROWS,
        ge=0,
        le=MAX_SCORED_ROWS,
        description="Subword LSTM: at most this many distinct comments already scored (predictions/, "
        "newest first, not flagged needs_review) learnt unlabelled from the bag models' reading (0: none).",
    )
    self_train_weight: float = Field(
        _TRAIN.self_train_weight,
        gt=0,
        le=10,
        description="Subword LSTM: loss weight of a scored comment against a row of the source.",
    )
    promote_threshold: float = _share(0.95, "Test macro-F1 needed to make the new model 'latest'.")
    max_regression: float = _share(
        0.01,
        "Promote only if, on every evaluation set, macro-F1 is at most this much below the model in service.",
    )

    @field_validator("categories", "severities")
    @classmethod
    def _distinct_names(cls, values: list[str]) -> list[str]:
        """Classes are the network's outputs: a repeated or blank one makes a bundle that can never
        load (``bundle.json: labels repeat``). Label files match classes without case, spaces or
        accents, so two names equal that way are one class given twice."""
        if any(not value.strip() for value in values):
            raise ValueError("a name is empty")
        seen: dict[str, str] = {}
        for value in values:
            if fold_name(value) in seen:
                first = seen[fold_name(value)]
                same = (
                    f"{value!r}" if first == value else f"{first!r} and {value!r} (one name to label files)"
                )
                raise ValueError(f"{same} given twice; each class must be given once")
            seen[fold_name(value)] = value
        return values

    @field_validator("categories")
    @classmethod
    def _two_classes(cls, values: list[str]) -> list[str]:
        if len(values) < 2:
            raise ValueError("at least two classes are needed")
        return values

    @field_validator("head_sizes")
    @classmethod
    def _layer_sizes(cls, values: list[int]) -> list[int]:
        if any(not 1 <= size <= MAX_SIZE for size in values):
            raise ValueError(f"each size must be between 1 and {MAX_SIZE:,}")
        return values

    @model_validator(mode="after")
    def _split_leaves_training_rows(self) -> TrainConfig:
        """The two held-out shares together: what is left is the training split, and it must be at
        least half of the rows (``--val-fraction 0.95`` would otherwise fail only after the run
        started, or train on almost nothing)."""
        held_out = self.val_fraction + self.test_fraction
        if held_out > 0.5 + 1e-9:
            raise ValueError(
                f"--val-fraction {self.val_fraction:g} + --test-fraction {self.test_fraction:g} = "
                f"{held_out:g} of the rows held out: at most 0.5, so that at least half is left to train on"
            )
        self.second_model_settings().resolved(has_labels=False)  # weights over 1: refused before the run
        if self.subword_min_n > self.subword_max_n:
            raise ValueError(
                f"--subword-min-n {self.subword_min_n} is above --subword-max-n {self.subword_max_n}"
            )
        return self

    def text_settings(self) -> TextSettings:
        return self._settings(TextSettings)

    def architecture(self) -> ArchitectureSettings:
        return self._settings(ArchitectureSettings)

    def training_settings(self) -> TrainingSettings:
        return self._settings(TrainingSettings)

    def second_model_settings(self) -> SecondModelSettings:
        return SecondModelSettings(
            weight=self.second_model_weight,
            stems_weight=self.stems_model_weight,
            features=self.second_model_features,
        )

    def review_settings(self) -> ReviewSettings:
        return ReviewSettings(
            catch_target=self.review_catch_target,
            max_validation_flagged=self.review_max_flagged,
            max_in_frame_flagged=self.review_max_in_frame_flagged,
            max_right_flagged=self.review_max_right_flagged,
            min_catch=self.review_min_catch,
        )


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
        le=MAX_SECONDS,
        description="Seconds since a file's last modification before it is scored; younger files may "
        "still be written and wait for the next run.",
    )
    claim_seconds: float = Field(
        60.0,
        gt=0,
        le=MAX_SECONDS,
        description="Lease of the claim a run takes on each batch it scores (renewed every third of it); "
        "a killed run's batches are taken over once it runs out.",
    )
    max_comment_chars: int = Field(
        5_000, ge=1, le=10_000_000, description="Longer comentarios are rejected (rule comentario_too_long)."
    )
    # 32,768 rather than 65,536: 80 MB less peak RSS at 1M distinct rows for 6% fewer rows/s
    # (bench/score_throughput.py, 2026-11-29), so the 1 GB budget holds on CPUs whose kernels need more.
    chunk_rows: int = Field(
        32_768,
        ge=1,
        le=MAX_ROWS,
        description="Rows read, validated and scored at a time; bounds memory whatever the file size.",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Inference precision. auto: bf16 where the CPU has it natively (AMX, AVX-512 BF16) or "
        "on a GPU, if it predicts as fp32 does on the check rows; fp32 otherwise (fp16: GPU only).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Device for inference (auto: CUDA when present)."
    )
    inference_batch: int = Field(
        1_024, ge=1, le=MAX_ROWS, description="Rows per forward pass (length-sorted within each chunk)."
    )
    task_runner: Literal["threads", "dask"] = Field(
        "threads",
        description="Where batches run: a thread pool in the flow's process, or Dask (a local cluster, or --dask-address).",
    )
    workers: int = Field(
        1,
        ge=1,
        le=1_024,
        description="Batches scored at once: threads, or processes of the local Dask cluster. "
        "Each holds one chunk and one model in memory.",
    )
    dask_address: str | None = Field(
        None,
        description="Address of an existing Dask scheduler (tcp://host:8786); with task_runner=dask, "
        "used instead of a local cluster.",
    )

    def scoring_settings(self) -> ScoringSettings:
        from tasks.scoring.score_file import ScoringSettings

        return self._settings(ScoringSettings)
