"""N-gram lookup for one scoring chunk: the packed numpy lookup against the n-gram-by-n-gram Python one.

The n-gram second model looks up the n-grams of each distinct word of a chunk (32,768 comments by
default). Normal text repeats its words, so that is cheap; a batch of never-repeated tokens (codes,
random strings) is the expensive case. Both lookups are timed on both kinds of chunk, and must give
the same ids.

    .venv/bin/python bench/ngram_encoding.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO
from bench._common import SHARED_DATA
from bench._common import cpu_name
from lstm_model.char_ngrams import NgramVocabulary
from lstm_model.tokenizer import tokenize_arrow

LETTERS = list("abcdefghijklmnopqrstuvwxyzáéíóúñ")  # most words get an accent (Arrow strips it)
CODE_CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789")  # order numbers, tracking codes: ASCII only


def training_texts() -> list[str]:
    """The source's comments and the 80 label comments: what a training with labels reads."""
    source = [r["comentario"] for r in json.loads(SHARED_DATA.read_text(encoding="utf-8"))]
    label_file = REPO / "bench" / "data" / "label_comments.jsonl"
    labels = [json.loads(line)["comentario"] for line in label_file.read_text(encoding="utf-8").splitlines()]
    return source + labels


def chunks(texts: list[str], rows: int, words: int) -> dict[str, pa.ListArray]:
    rng = np.random.default_rng(0)
    known = sorted({w for text in texts for w in text.split()})
    return {
        "training words, shuffled": tokenize_arrow(
            pa.array([" ".join(rng.choice(known, size=words)) for _ in range(rows)])
        ),
        "never-repeated ASCII codes": tokenize_arrow(
            pa.array(
                [
                    " ".join("".join(rng.choice(CODE_CHARS, size=rng.integers(6, 13))) for _ in range(words))
                    for _ in range(rows)
                ]
            )
        ),
        "never-repeated random words": tokenize_arrow(
            pa.array(
                [
                    " ".join("".join(rng.choice(LETTERS, size=rng.integers(3, 13))) for _ in range(words))
                    for _ in range(rows)
                ]
            )
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=32_768, help="comments in the chunk (scoring's default)")
    parser.add_argument("--words", type=int, default=20, help="words per comment")
    args = parser.parse_args()
    texts = training_texts()
    vocab = NgramVocabulary.build(tokenize_arrow(pa.array(texts)))
    _ = vocab.packed  # built once per loaded model, not per chunk
    print(
        f"CPU: {cpu_name()} ({os.cpu_count()} cores); n-gram vocabulary {len(vocab):,} (source + 80 labels)"
    )
    print(f"chunk: {args.rows:,} comments x {args.words} words\n")
    print(f"{'chunk':30s} {'distinct words':>14s} {'python s':>9s} {'packed s':>9s} {'speed-up':>8s}")
    for name, tokens in chunks(texts, args.rows, args.words).items():
        distinct = pc.unique(tokens.flatten())
        started = time.perf_counter()
        slow = vocab._gram_ids_in_python(distinct)
        python_s = time.perf_counter() - started
        started = time.perf_counter()
        fast = vocab._gram_ids(distinct)
        packed_s = time.perf_counter() - started
        assert all(np.array_equal(a, b) for a, b in zip(slow, fast, strict=True)), "the lookups differ"
        print(
            f"{name:30s} {len(distinct):>14,d} {python_s:>9.2f} {packed_s:>9.2f} {python_s / packed_s:>7.1f}x"
        )


if __name__ == "__main__":
    main()
