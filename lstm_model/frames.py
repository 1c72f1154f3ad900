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
import pyarrow as pa
import pyarrow.compute as pc

from lstm_model.vocab import UNK_ID
from lstm_model.vocab import Vocabulary
from lstm_model.vocab import as_token_lists


def find_frame_tokens(
    token_lists: pa.ListArray | pa.ChunkedArray | Sequence[Sequence[str]],
    labels: Sequence[str],
    *,
    min_class_coverage: float = 0.8,
    chunk_rows: int = 65_536,
) -> list[str]:
    """Tokens present in at least ``min_class_coverage`` of the texts of some class.

    A real topic word ("precio", "llegó") is spread over several phrasings of its class, so it stays
    under the threshold; a template word ("pedido", "agente", "intenté") is in almost every text.

    Counted with Arrow and numpy (token lists best given as an Arrow list<string> array): only the
    distinct tokens become Python strings, not every token of half a million texts.
    """
    tokens = as_token_lists(token_lists)
    if len(tokens) != len(labels):
        raise ValueError(f"{len(tokens)} token lists but {len(labels)} labels")
    if len(tokens) == 0:
        return []
    if isinstance(labels, pa.ChunkedArray):
        labels = labels.combine_chunks()
    label_codes = pc.dictionary_encode(
        labels if isinstance(labels, pa.Array) else pa.array(list(labels), pa.string())
    )
    classes = label_codes.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    n_classes = len(label_codes.dictionary)
    docs_per_class = np.bincount(classes, minlength=n_classes)
    if tokens.null_count:
        tokens = pc.fill_null(tokens, pa.scalar([], tokens.type))
    encoded = pc.dictionary_encode(tokens.flatten())
    distinct = encoded.dictionary
    if len(distinct) == 0:
        return []
    n_distinct = len(distinct)
    token_ids = encoded.indices.to_numpy(zero_copy_only=False)
    del encoded
    offsets = tokens.offsets.to_numpy().astype(np.int64)
    offsets -= offsets[0]
    per_class = np.zeros(n_classes * n_distinct, dtype=np.int64)
    # A chunk of texts at a time, so the (text, token) pairs never exist for the whole set at once
    # (8M tokens as int64 pairs, sorted, were ~450 MB); each pair counts once: a token repeated in a
    # text is one document.
    for begin in range(0, len(tokens), chunk_rows):
        end = min(begin + chunk_rows, len(tokens))
        lengths = np.diff(offsets[begin : end + 1])
        rows = np.repeat(np.arange(begin, end, dtype=np.int64), lengths)
        ids = token_ids[offsets[begin] : offsets[end]].astype(np.int64)
        pairs = np.unique(rows * n_distinct + ids)
        per_class += np.bincount(
            classes[pairs // n_distinct] * n_distinct + pairs % n_distinct, minlength=per_class.size
        )
    per_class = per_class.reshape(n_classes, n_distinct)
    frame = (per_class >= min_class_coverage * docs_per_class[:, None]) & (per_class > 0)
    hits = np.flatnonzero(frame.any(axis=0))
    return sorted(distinct.take(pa.array(hits, pa.int64())).to_pylist())


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
