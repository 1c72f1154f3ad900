"""Domain phrases: short phrases that name what each class is about, added to the training texts.

The training source is four sentence templates with a handful of problem phrases per class, so a model
trained on it alone knows few of the words customers use ("comisión", "me colgaron", "el courier",
"se tilda la app"). ``tasks/resources/domain_phrases.jsonl`` ships ~80 such phrases per class, in
several registers of Spanish, written from what each department handles. They were written after the
``dev`` errors of the free-form and registers evaluation kinds had been read, so those ``dev`` figures
are optimistic; the ``final`` parts and ``bench/data/independent_eval.jsonl`` (comments by someone who
saw neither the phrases nor any other file) are the honest measure.
Training repeats them to ``--phrase-share`` of the training rows (each at least once); an
operator can give a file of their own (``--domain-phrases PATH``: JSON Lines or a JSON array with
``comentario`` and ``categoria``) or none (``--domain-phrases none``).

Measured with ``bench/freeform_generalisation.py --variants defaults "no phrases"``: the figures are
in the README (free-form comments without label files rise from ~0.70 to ~0.90 macro-F1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import pandas as pd
from prefect import get_run_logger
from prefect import task

from lstm_model.results import LabelledTexts
from tasks.common.records import parse_records
from tasks.common.validation import DatasetError
from tasks.store.storage import Storage

BUILTIN = "builtin"
NONE = "none"
RESOURCE = "domain_phrases.jsonl"


@dataclass(frozen=True)
class DomainPhrases:
    texts: LabelledTexts
    source: str  # "builtin", "none" or the file given
    sha256: str | None  # of the file's bytes (None: no phrases)
    left_out: int  # rows of classes not trained, or with no text

    def summary(self) -> dict[str, object]:
        """What ``bundle.json`` keeps of them (``data.domain_phrases``)."""
        return {"source": self.source, "phrases": len(self.texts.texts), "sha256": self.sha256,
                "left_out": self.left_out}  # fmt: skip


def builtin_data() -> bytes:
    """The bytes of the phrases that ship with the project."""
    return resources.files("tasks").joinpath("resources", RESOURCE).read_bytes()


def read_phrases(data: bytes, name: str, categories: Sequence[str]) -> tuple[LabelledTexts, int]:
    """The phrases of the classes being trained, and how many rows were left out (other classes, no
    text). A file without the two columns is a :class:`DatasetError`."""
    frame = parse_records(data, name)
    missing = [c for c in ("comentario", "categoria") if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"domain phrases {name}: column(s) {', '.join(missing)} missing "
            f"(found: {', '.join(map(str, frame.columns))}); each row needs comentario and categoria"
        )
    text = frame["comentario"].astype(str).str.strip()
    keep = frame["comentario"].notna() & (text != "") & frame["categoria"].isin(list(categories))
    kept = pd.DataFrame({"comentario": text[keep], "categoria": frame["categoria"][keep].astype(str)})
    return LabelledTexts(kept["comentario"].tolist(), kept["categoria"].tolist()), int((~keep).sum())


@task(name="load-domain-phrases")
def load_domain_phrases(storage: Storage, source: str, categories: Sequence[str]) -> DomainPhrases:
    """The built-in phrases, a file of the operator's (any URI the storage can read), or none."""
    if source == NONE:
        get_run_logger().info("Domain phrases: none (--domain-phrases none)")
        return DomainPhrases(LabelledTexts([], []), NONE, None, 0)
    if source == BUILTIN:
        data = builtin_data()
    else:
        with storage.open_uri(source) as handle:
            data = handle.read()
    texts, left_out = read_phrases(data, RESOURCE if source == BUILTIN else source, categories)
    if source != BUILTIN and not texts.texts:
        raise DatasetError(
            f"domain phrases {source}: no row of the classes being trained ({', '.join(categories)}); "
            "give a file with some, or --domain-phrases none"
        )
    get_run_logger().info(
        "Domain phrases (%s): %d, %s per class; %d row(s) left out (other classes or no text)",
        source,
        len(texts.texts),
        dict(pd.Series(texts.labels, dtype=str).value_counts().sort_index()),
        left_out,
    )
    return DomainPhrases(texts, source, hashlib.sha256(data).hexdigest(), left_out)
