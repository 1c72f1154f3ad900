"""Template ("frame") tokens and the masking that keeps the model from leaning on them.

The training texts are four sentence templates with slots ("El pedido de <producto> <problema> con
<transportista> en <ciudad>."). Words of a template appear in nearly every comment of its class, so
a model can reach 100% by recognising the frame and learn nothing about the problem words that real,
free-form comments share with it. Masking frame tokens at random during training makes the frame an
unreliable cue, so the model also learns the words that carry the meaning.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstm_model.vocab import UNK_ID
from lstm_model.vocab import Vocabulary


def find_frame_tokens(
    token_lists: Sequence[Sequence[str]], labels: Sequence[str], *, min_class_coverage: float = 0.8
) -> list[str]:
    """Tokens present in at least ``min_class_coverage`` of the texts of some class.

    A real topic word ("precio", "llegó") is spread over several phrasings of its class, so it stays
    under the threshold; a template word ("pedido", "agente", "intenté") is in almost every text.
    """
    per_class_docs: dict[str, int] = {}
    per_class_counts: dict[str, dict[str, int]] = {}
    for tokens, label in zip(token_lists, labels, strict=True):
        per_class_docs[label] = per_class_docs.get(label, 0) + 1
        counts = per_class_counts.setdefault(label, {})
        for tok in set(tokens):
            counts[tok] = counts.get(tok, 0) + 1
    frame = {
        tok
        for label, counts in per_class_counts.items()
        for tok, n in counts.items()
        if n >= min_class_coverage * per_class_docs[label]
    }
    return sorted(frame)


def frame_id_mask(vocab: Vocabulary, frame_tokens: Sequence[str]) -> np.ndarray:
    """Boolean array over vocabulary ids: True for the ids of frame tokens (vocabulary keys)."""
    mask = np.zeros(len(vocab), dtype=bool)
    for key in frame_tokens:
        if key in vocab:
            mask[vocab.id_of_key(key)] = True
    return mask


def mask_tokens(
    ids: np.ndarray,
    real: np.ndarray,
    frame_mask: np.ndarray | None,
    *,
    frame_prob: float,
    token_prob: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Replace frame tokens (with ``frame_prob``) and any token (with ``token_prob``) by [UNK].

    [UNK] rather than deletion: free-form comments are full of words the vocabulary lacks, so the
    model should learn that [UNK] carries no class and read the words around it.
    """
    draw = rng.random(ids.shape)
    drop = draw < token_prob
    if frame_mask is not None and frame_prob > 0:
        drop |= frame_mask[ids] & (draw < frame_prob)
    return np.where(real & drop, UNK_ID, ids)
