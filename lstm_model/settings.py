"""The knobs of text encoding, the network and training, with their one set of defaults.

This module imports nothing heavy (no torch, no pyarrow), so the flow configs can take their defaults
from here and ``comentarios --help`` stays fast. ``flows/configs.py`` exposes every field as a Prefect
parameter and a CLI flag; nothing else repeats these values.
"""

from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import fields
from dataclasses import replace
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

if TYPE_CHECKING:
    from lstm_model.token_form import TokenForm

Pooling = Literal["last", "mean", "max", "attention"]
TokenInput = Literal["stems", "subwords"]


@dataclass(frozen=True, kw_only=True)
class TextSettings:
    """How comments become token ids."""

    min_freq: int = 1
    max_vocab: int = 20_000  # [PAD] and [UNK] included
    max_len: int = 64  # tokens kept per comment
    # How tokens are keyed (see token_form.py): Spanish Snowball stems with stop words dropped, or
    # whole words cut to ``prefix_chars`` characters (what models before stems did).
    stem: bool = True
    drop_stopwords: bool = True
    strip_accents: bool = False
    prefix_chars: int | None = None
    # A token in at least this share of one class's texts counts as template wording (masked).
    frame_coverage: float = 0.8

    def token_form(self) -> TokenForm:
        from lstm_model.token_form import TokenForm

        return TokenForm(
            stem=self.stem,
            drop_stopwords=self.drop_stopwords,
            strip_accents=self.strip_accents,
            prefix_chars=self.prefix_chars,
        )


@dataclass(frozen=True, kw_only=True)
class ArchitectureSettings:
    """Layer sizes; the defaults are the reference notebook's."""

    embedding_dim: int = 256
    hidden_size: int = 128
    num_layers: int = 2
    lstm_dropout: float = 0.2
    head_sizes: tuple[int, ...] = (512, 256)
    head_dropout: float = 0.2
    # How the LSTM outputs of a comment become one vector: "last" (the reference's state after the
    # last real token), or "mean", "max" or "attention" over every real token's output.
    pooling: Pooling = "mean"
    # What the LSTM reads per word: "subwords", the mean of the word's character n-gram vectors (so a
    # typo, a missing accent or a new inflection lands near the word it stands for), or "stems", one
    # vector per Snowball stem (every stem the training texts lack is [UNK]; models before 2026-12-07).
    token_input: TokenInput = "subwords"
    subword_min_n: int = 3
    subword_max_n: int = 5
    subword_max_grams: int = 100_000  # n-grams with a vector, most frequent first


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
    grad_clip: float | None = 1.0  # max gradient norm; None: no clipping
    # Loss weight of a row an analyst labelled (labels/) against a row of the templated source. Chosen
    # on the free-form dev half with bench/feedback_loop.py (80 label comments, 3 seeds): weight 1
    # 0.701, 2 0.727, 3 0.730, 5 0.720 macro-F1.
    label_weight: float = 3.0
    # Share of the training rows that are domain phrases (tasks/resources/domain_phrases.jsonl), each
    # phrase at least once. bench/freeform_generalisation.py, free-form dev, 3 seeds: 0.1 0.919, 0.3
    # 0.931 (within one sd, equal on the other kinds); 0.1 kept: 0.3 adds 43% to a large run's rows.
    phrase_share: float = 0.1
    # Subword LSTM only (see augment.py): each domain phrase is also placed in this many carrier
    # sentences with customers' noise, and on those texts the LSTM learns ``distill_weight`` of the
    # bag models' probabilities (a teacher that reads character n-grams) and the rest from the phrase's
    # class.
    augment_per_phrase: int = 20
    distill_weight: float = 0.5
    # Subword LSTM only: loss weight of an unlabelled scored comment (``fit_classifier(unlabelled=...)``),
    # whose target is the bag models' probabilities.
    self_train_weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSettings:
        """Settings from a bundle's ``training`` record (other keys in it are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


SecondModelFeatures = Literal["auto", "both", "char_ngrams", "stems"]


@dataclass(frozen=True, kw_only=True)
class SecondModelSettings:
    """The logistic regression(s) trained beside the LSTM (see ``bag_model.py``); their probabilities
    are averaged with the LSTM's.

    ``stems`` reads the LSTM's vocabulary keys with the LSTM's template masking; ``char_ngrams`` reads
    the character n-grams of each word (``char_ngrams.py``), unmasked; ``both`` trains one of each:
    ``(1 - weight - stems_weight) * LSTM + weight * n-grams + stems_weight * stems``. The default is
    ``both`` at 0.65 / 0.2 (the subword LSTM 0.15), re-chosen on 2026-12-07 once the LSTM read subwords:
    the best mean ``dev`` macro-F1 of the four kinds with a ``dev`` part on a 0.05 grid, no worse than
    each of its models on any of them (``bench/blend_weights.py --seeds 1 2 3``, AMD EPYC AVX2 2 cores:
    0.9686 against 0.9674 for the previous 0.6 / 0.25; see README "Measured figures"). Before that,
    with the stems LSTM, 0.6 / 0.25 was chosen on the ``dev`` parts of the three kinds of
    ``bench/freeform_generalisation.py`` (3 seeds, Intel Xeon AMX 2 cores; frames / free-form / registers
    macro-F1). On the source alone stems give 0.960 / 0.684 / 0.680, n-grams (0.8) 0.998 / 0.654 /
    0.729, both 0.998 / 0.698 / 0.725: n-grams keep reading the templates, so comments in a known frame
    with new problem words stay right and confident, where stems (masked like the LSTM) send a fifth of
    them to review; stems read the hand-written free-form comments better; together no kind is worse
    than with stems alone, and the threshold still catches 84% of the wrong free-form predictions while
    flagging 2.8% of the frames. With the 80 label comments both give 1.000 / 0.827 / 0.852 against
    n-grams' 1.000 / 0.821 / 0.836. ``auto`` (n-grams with labels, stems without) is what versions
    before 2026-12-03 used. Fields left None take the chosen kind's measured defaults
    (:data:`SECOND_MODEL_DEFAULTS`).
    """

    features: SecondModelFeatures = "both"
    ngram_min: int = 2
    ngram_max: int = 5
    epochs: int | None = None
    learning_rate: float | None = None
    patience: int | None = None
    weight: float | None = None  # its share of the averaged probabilities; 0 scores with the LSTM alone
    # With ``both``: the share of the stems model (the n-gram model has ``weight``); the LSTM keeps
    # ``1 - weight - stems_weight``. Unused with one second model.
    stems_weight: float | None = None

    def resolved(self, *, has_labels: bool) -> SecondModelSettings:
        """These settings with ``features`` decided and every None filled from its kind's defaults."""
        features = self.features
        if features == "auto":
            features = "char_ngrams" if has_labels else "stems"
        defaults = SECOND_MODEL_DEFAULTS[features]
        filled = {name: value for name, value in defaults.items() if getattr(self, name) is None}
        settled = replace(self, features=features, **filled)
        if features != "both":
            return replace(settled, stems_weight=0.0)
        if settled.weight + settled.stems_weight > 1.0 + 1e-9:
            raise ValueError(
                f"second-model weights {settled.weight} (n-grams) + {settled.stems_weight} (stems) exceed 1"
            )
        return settled

    def stems_part(self) -> SecondModelSettings:
        """With ``both`` (resolved): the stems model's own settings, its kind's measured defaults."""
        return SecondModelSettings(features="stems", weight=self.stems_weight).resolved(has_labels=False)


# Chosen on the free-form dev half (bench/feedback_loop.py and a scratch sweep, 3 seeds): n-grams need
# a larger step and more epochs than stems (7,000-odd n-gram weights, each seen in few rows).
SECOND_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "stems": {"epochs": 30, "learning_rate": 0.05, "patience": 5, "weight": 0.5},
    "char_ngrams": {"epochs": 50, "learning_rate": 0.2, "patience": 10, "weight": 0.8},
    # Both models beside the LSTM: the n-gram model trains as above (epochs, learning_rate and patience
    # set here apply to it), the stems model with the stems defaults. Weights chosen on the dev parts
    # of the three kinds (see the class docstring).
    "both": {"epochs": 50, "learning_rate": 0.2, "patience": 10, "weight": 0.65, "stems_weight": 0.2},
}


@dataclass(frozen=True, kw_only=True)
class ReviewSettings:
    """How the ``needs_review`` confidence threshold is fitted at training time (see ``review.py``)."""

    # Share of the WRONG predictions on the free-form calibration rows that must fall at or under
    # the threshold (be flagged)...
    catch_target: float = 0.90
    # ...unless that flags more than this share of the (in-frame) validation rows...
    max_validation_flagged: float = 0.03
    # ...or more than this share of the in-frame comments with new wording (the evaluation suite's
    # kind 1 ``dev`` part, when the training is given it).
    max_in_frame_flagged: float = 0.03
    # ...or more than this share of the calibration rows the blend gets right (None: no such cap), as
    # long as it still catches ``min_catch`` of the wrong ones.
    max_right_flagged: float | None = 0.15
    min_catch: float = 0.80
