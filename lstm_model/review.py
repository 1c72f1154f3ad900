"""Which predictions a person should check (``needs_review``), and why (``review_reason``).

What was measured (free-form dev half, 3 seeds; see README "Which predictions to check"): no score
separates right from wrong free-form predictions well (best AUC about 0.72), and the two models'
disagreement catches only half of the wrong ones. The averaged probability of the predicted class
does best: a threshold fitted to catch 90% of the wrong predictions on hand-written free-form
comments flags none of the in-frame test rows. So the rule is:

* ``no_readable_words``: no token has a letter (emoji, digits, punctuation, zero-width characters).
  Always flagged, and never given a class: its probabilities are uniform and ``categoria_pred`` null.
* ``no_known_words``: it has words, but none the model knows (or only stop words): the model read
  nothing. Always flagged.
* ``low_confidence``: the averaged probability of the predicted class is at or under the threshold
  fitted at training time (:func:`fit_review_policy`).
* ``models_disagree`` is added to the reason of a flagged row when the LSTM and the second model
  pick different classes: it tells the analyst the two readings differ, it does not flag by itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NO_READABLE_WORDS = "no_readable_words"
NO_KNOWN_WORDS = "no_known_words"
LOW_CONFIDENCE = "low_confidence"
MODELS_DISAGREE = "models_disagree"


def has_readable_word(tokens: pa.ListArray) -> np.ndarray:
    """Per row: does any token contain a letter? (Null or empty rows: no.)"""
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    values = tokens.flatten()
    lettered = pc.match_substring_regex(values, r"\p{L}").to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(tokens).to_numpy()
    return np.bincount(parents[lettered], minlength=len(tokens)) > 0


@dataclass(frozen=True, kw_only=True)
class ReviewPolicy:
    """The fitted rule, stored in the bundle (``bundle.json`` -> ``review``)."""

    # Rows whose averaged top probability is <= this are flagged low_confidence; None: never
    # (bundles trained before the rule existed have no fitted threshold).
    min_confidence: float | None
    catch_target: float | None = None
    max_validation_flagged: float | None = None
    # What the threshold achieved on the rows it was fitted on (in-sample figures).
    calibration_catch_rate: float | None = None
    validation_flag_rate: float | None = None
    # The cap on in-frame comments with new wording (the evaluation suite's kind 1 ``dev`` part) and
    # the share of them the threshold flags; None: fitted without such rows (older bundles).
    max_in_frame_flagged: float | None = None
    in_frame_flag_rate: float | None = None
    # The cap on the RIGHT calibration predictions flagged (work for analysts that finds nothing), the
    # catch rate it may not push the threshold below, and the share of right rows the threshold flags;
    # None: fitted without that cap (older bundles).
    max_right_flagged: float | None = None
    min_catch: float | None = None
    right_flag_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ReviewPolicy:
        return cls(**data) if data else cls(min_confidence=None)

    def flags(
        self,
        probs: np.ndarray,
        readable: np.ndarray,
        known: np.ndarray,
        disagree: np.ndarray | None = None,
    ) -> tuple[np.ndarray, list[str | None]]:
        """(needs_review, review_reason) per row; reasons are comma-separated, most important first."""
        flagged, code = self.flag_codes(probs, readable, known, disagree)
        return flagged, reason_texts(flagged, code).to_pylist()

    def flag_codes(
        self,
        probs: np.ndarray,
        readable: np.ndarray,
        known: np.ndarray,
        disagree: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(needs_review, reason code) per row; :func:`reason_texts` turns codes into reasons."""
        top = probs.max(axis=1) if len(probs) else np.zeros(0)
        low = top <= self.min_confidence if self.min_confidence is not None else np.zeros(len(top), bool)
        unreadable, unknown = ~readable, readable & ~known
        disagree = disagree if disagree is not None else np.zeros(len(top), bool)
        # One reason string per combination (there are few), picked by a code: no Python per row.
        code = unreadable * 1 + unknown * 2 + (low & readable) * 4 + (disagree & readable) * 8
        return unreadable | unknown | low, code


def reason_texts(flagged: np.ndarray, code: np.ndarray) -> pa.StringArray:
    """The review_reason column: the reason of each flagged row's code, null where not flagged."""
    return _REASONS.take(pa.array(np.asarray(code, dtype=np.int64), mask=~np.asarray(flagged, dtype=bool)))


def _reason(code: int) -> str:
    """The reason text of a combination of flags (bit 1: unreadable, 2: unknown, 4: low, 8: disagree)."""
    if code & 1:
        return NO_READABLE_WORDS
    parts = [NO_KNOWN_WORDS] if code & 2 else []
    parts += [LOW_CONFIDENCE] if code & 4 else []
    parts += [MODELS_DISAGREE] if code & 8 else []
    return ",".join(parts)


_REASONS = pa.array([_reason(c) for c in range(16)], pa.string())


def fit_review_policy(
    calibration_probs: np.ndarray,
    calibration_truth: np.ndarray,
    calibration_readable: np.ndarray,
    validation_probs: np.ndarray,
    validation_readable: np.ndarray,
    *,
    catch_target: float,
    max_validation_flagged: float,
    in_frame_probs: np.ndarray | None = None,
    in_frame_readable: np.ndarray | None = None,
    max_in_frame_flagged: float | None = None,
    max_right_flagged: float | None = None,
    min_catch: float | None = None,
) -> ReviewPolicy:
    """The lowest threshold on the top probability that flags ``catch_target`` of the wrong
    calibration predictions, capped so that at most ``max_validation_flagged`` of the validation rows
    and at most ``max_in_frame_flagged`` of the in-frame rows are flagged.

    Calibration rows are hand-written free-form comments the model never trained on (where it is
    wrong often enough to learn from); validation rows are in-frame (where it is almost never wrong,
    so they bound how many good rows a threshold costs). In-frame rows with new wording (the
    templates with problem phrases and typos the training set lacks) are what a model trained on
    templates should be sure of, yet less so than the validation rows: without their cap a model
    unsure of them flagged a quarter of them. ``max_right_flagged`` caps the share of the right
    calibration predictions flagged: below it, more caught wrong rows cost analysts more checks that
    find nothing than they are worth. Unreadable rows are flagged anyway and count on every side.
    """
    cal_top, val_top = calibration_probs.max(axis=1), validation_probs.max(axis=1)
    wrong = calibration_probs.argmax(axis=1) != calibration_truth
    by_calibration = _catching(catch_target, cal_top, wrong, calibration_readable)
    if max_right_flagged is not None and (~wrong).any():
        by_calibration = min(
            by_calibration, _cap(cal_top[~wrong], calibration_readable[~wrong], max_right_flagged)
        )
        if min_catch is not None:  # ...but never below catching min_catch of the wrong ones
            by_calibration = max(by_calibration, _catching(min_catch, cal_top, wrong, calibration_readable))
    threshold = min(by_calibration, _cap(val_top, validation_readable, max_validation_flagged))
    has_in_frame = in_frame_probs is not None and len(in_frame_probs) and max_in_frame_flagged is not None
    if has_in_frame:
        in_frame_top = in_frame_probs.max(axis=1)
        readable = in_frame_readable if in_frame_readable is not None else np.ones(len(in_frame_top), bool)
        threshold = min(threshold, _cap(in_frame_top, readable, max_in_frame_flagged))
    if math.isinf(threshold):  # nothing to catch, or no cap at all: keep the rule finite and visible
        threshold = 0.0 if threshold < 0 else 1.0
    flagged_cal = (cal_top <= threshold) | ~calibration_readable
    flagged_val = (val_top <= threshold) | ~validation_readable
    return ReviewPolicy(
        min_confidence=threshold,
        catch_target=catch_target,
        max_validation_flagged=max_validation_flagged,
        calibration_catch_rate=float(flagged_cal[wrong].mean()) if wrong.any() else None,
        validation_flag_rate=float(flagged_val.mean()) if len(val_top) else None,
        max_in_frame_flagged=max_in_frame_flagged if has_in_frame else None,
        in_frame_flag_rate=float(((in_frame_top <= threshold) | ~readable).mean()) if has_in_frame else None,
        max_right_flagged=max_right_flagged,
        min_catch=min_catch if max_right_flagged is not None else None,
        right_flag_rate=float(flagged_cal[~wrong].mean()) if (~wrong).any() else None,
    )


def _catching(share: float, top: np.ndarray, wrong: np.ndarray, readable: np.ndarray) -> float:
    """The lowest threshold that flags ``share`` of the wrong rows (unreadable ones are flagged anyway);
    -inf if those already make it, inf if no threshold does."""
    needed = math.ceil(share * int(wrong.sum())) - int((wrong & ~readable).sum())
    candidates = np.sort(top[wrong & readable])
    if needed <= 0:
        return -math.inf
    return float(candidates[needed - 1]) if needed <= len(candidates) else math.inf


def _cap(top: np.ndarray, readable: np.ndarray, share: float) -> float:
    """The highest threshold that flags at most ``share`` of these rows (unreadable ones count as
    flagged); -inf if the unreadable ones alone exceed it, inf if every row may be flagged."""
    budget = math.floor(share * len(top)) - int((~readable).sum())
    readable_top = np.sort(top[readable])
    if budget < 0:
        return -math.inf
    if budget < len(readable_top):
        return float(np.nextafter(readable_top[budget], -np.inf))  # flags at most `budget` rows
    return math.inf
