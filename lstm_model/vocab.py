"""Vocabulary: the most frequent training tokens, with [PAD]=0 and [UNK]=1."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1


@dataclass(frozen=True)
class Vocabulary:
    """Token <-> id mapping; ``itos[i]`` is the token with id ``i``."""

    itos: tuple[str, ...]
    # Tokens are cut to their first ``prefix_chars`` characters before lookup: a crude Spanish stem
    # ("precio"/"precios", "cobró"/"cobraron" -> "cobr"...), so inflections unseen in training still
    # map to a known entry. None keeps whole words.
    prefix_chars: int | None = None
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.itos[:2] != (PAD, UNK):
            raise ValueError(f"a vocabulary must start with {PAD!r}, {UNK!r}; got {self.itos[:2]!r}")
        object.__setattr__(self, "_index", {tok: i for i, tok in enumerate(self.itos)})

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Sequence[str]],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        prefix_chars: int | None = None,
    ) -> Vocabulary:
        """Keep the tokens seen at least ``min_freq`` times, most frequent first.

        Ties are broken alphabetically so that the same data always gives the same ids (the
        reference notebook kept tokens in first-seen order, which depends on row order).
        ``max_size`` counts the two special tokens.
        """
        cut = (lambda t: t[:prefix_chars]) if prefix_chars else (lambda t: t)
        counts = Counter(cut(tok) for tokens in token_lists for tok in tokens)
        ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - 2)]
        return cls((PAD, UNK, *ranked), prefix_chars)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def normalise(self, tokens: Sequence[str]) -> list[str]:
        """Tokens as the vocabulary keys them (cut to ``prefix_chars``)."""
        return [t[: self.prefix_chars] for t in tokens] if self.prefix_chars else list(tokens)

    def id_of(self, token: str) -> int:
        return self._index.get(token[: self.prefix_chars] if self.prefix_chars else token, UNK_ID)

    def encode_arrow(self, tokens: pa.ListArray | pa.ChunkedArray) -> pa.Array:
        """Map a list<string> array to a list<int32> array of ids, unknown tokens -> UNK_ID."""
        if isinstance(tokens, pa.ChunkedArray):
            tokens = tokens.combine_chunks()
        values = tokens.values
        if self.prefix_chars:
            values = pc.utf8_slice_codeunits(values, 0, self.prefix_chars)
        ids = pc.index_in(values, value_set=pa.array(self.itos, pa.string()))
        ids = pc.fill_null(ids, UNK_ID).cast(pa.int32())
        return pa.ListArray.from_arrays(tokens.offsets, ids, mask=tokens.is_null())

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def unknown_share(self, tokens: pa.ListArray | pa.ChunkedArray) -> float:
        """Share of tokens that map to [UNK] (0.0 when there are no tokens)."""
        ids = self.encode_arrow(tokens).values
        return float(np.mean(ids.to_numpy() == UNK_ID)) if len(ids) else 0.0

    def to_json(self) -> str:
        return json.dumps({"prefix_chars": self.prefix_chars, "itos": list(self.itos)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        data = json.loads(text)
        return cls(tuple(data["itos"]), data.get("prefix_chars"))
