"""Vocabulary: the most frequent training token keys, with [PAD]=0 and [UNK]=1."""

from __future__ import annotations

import json
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lstm_model.token_form import TokenForm

PAD, UNK = "[PAD]", "[UNK]"
TOKEN_LISTS = pa.list_(pa.string())
PAD_ID, UNK_ID = 0, 1


def as_token_lists(token_lists: pa.ListArray | pa.ChunkedArray | Iterable[Sequence[str]]) -> pa.ListArray:
    """Token lists as one Arrow list<string> array (Python lists are converted once)."""
    if isinstance(token_lists, pa.ChunkedArray):
        return token_lists.combine_chunks()
    if isinstance(token_lists, pa.Array):
        return token_lists
    return pa.array([list(tokens) for tokens in token_lists], TOKEN_LISTS)


def ranked_keys(
    counts: Mapping[str, int], *, min_freq: int = 1, max_size: int | None = None
) -> tuple[str, ...]:
    """[PAD], [UNK], then the keys counted at least ``min_freq`` times, most frequent first, ties
    alphabetical; at most ``max_size`` in all (the two special tokens included)."""
    ranked = sorted((k for k, c in counts.items() if c >= min_freq), key=lambda k: (-counts[k], k))
    if max_size is not None:
        ranked = ranked[: max(0, max_size - 2)]
    return (PAD, UNK, *ranked)


@dataclass(frozen=True)
class Vocabulary:
    """Key <-> id mapping; ``itos[i]`` is the key with id ``i``. Tokens are keyed by ``form``."""

    itos: tuple[str, ...]
    form: TokenForm = TokenForm()
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.itos[:2] != (PAD, UNK):
            raise ValueError(f"a vocabulary must start with {PAD!r}, {UNK!r}; got {self.itos[:2]!r}")
        object.__setattr__(self, "_index", {tok: i for i, tok in enumerate(self.itos)})

    @classmethod
    def build(
        cls,
        token_lists: pa.ListArray | pa.ChunkedArray | Iterable[Sequence[str]],
        *,
        form: TokenForm = TokenForm(),
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> Vocabulary:
        """Keep the keys seen at least ``min_freq`` times, most frequent first.

        Ties are broken alphabetically so that the same data always gives the same ids (the
        reference notebook kept tokens in first-seen order, which depends on row order).
        ``max_size`` counts the two special tokens. ``token_lists`` is best an Arrow list<string>
        array: keys are counted by Arrow, so only the distinct keys become Python strings (half a
        million training texts as Python lists of strings cost about a gigabyte).
        """
        tokens = as_token_lists(token_lists)
        counted = pc.value_counts(form.keys_arrow(tokens).flatten())
        counts = dict(
            zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True)
        )
        return cls(ranked_keys(counts, min_freq=min_freq, max_size=max_size), form)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def keys(self, tokens: Sequence[str]) -> list[str]:
        """Tokens as the vocabulary keys them (stemmed, cut; dropped stop words left out)."""
        return self.form.keys_arrow(pa.array([list(tokens)], pa.list_(pa.string())))[0].as_py()

    def id_of(self, token: str) -> int:
        """The id of a token (keyed first), [UNK] for an unknown or dropped one."""
        key = self.form.key(token)
        return UNK_ID if key is None else self.id_of_key(key)

    def id_of_key(self, key: str) -> int:
        return self._index.get(key, UNK_ID)

    def known_ids(self, keys: Iterable[str]) -> list[int]:
        """The ids of the keys the vocabulary has, in order; unknown keys are left out."""
        return [i for i in map(self._index.get, keys) if i is not None]

    def encode_arrow(self, tokens: pa.ListArray | pa.ChunkedArray) -> pa.ListArray:
        """Map a list<string> array of tokens to a list<int32> array of ids, unknown keys -> UNK_ID."""
        keys = self.form.keys_arrow(tokens)
        ids = pc.index_in(keys.values, value_set=pa.array(self.itos, pa.string()))
        ids = pc.fill_null(ids, UNK_ID).cast(pa.int32())
        return pa.ListArray.from_arrays(keys.offsets, ids, mask=keys.is_null())

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def unknown_share(self, tokens: pa.ListArray | pa.ChunkedArray) -> float:
        """Share of (kept) tokens that map to [UNK] (0.0 when there are none)."""
        ids = self.encode_arrow(tokens).values
        return float(np.mean(ids.to_numpy() == UNK_ID)) if len(ids) else 0.0

    def to_json(self) -> str:
        return json.dumps({"form": self.form.to_dict(), "itos": list(self.itos)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        if "form" in data:
            form = TokenForm.from_dict(data["form"])
        else:  # vocabularies written before token forms: whole words cut to prefix_chars
            form = TokenForm(prefix_chars=data.get("prefix_chars"))
        return cls(tuple(data["itos"]), form)
