"""What the registry holds, for people: every complete version with its data, scores and promotions.

Reads only the small files of each version (``bundle.json``, ``splits.json``) and the promotions
log, never the weights, so ``comentarios models list`` stays quick with many versions on S3.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lstm_model.bundle import META_FILE
from lstm_model.bundle import SPLITS_FILE
from tasks.registry.gate import PromotionDecision
from tasks.registry.promotion import read_promotions
from tasks.registry.versions import current_latest
from tasks.registry.versions import require_complete
from tasks.store.models import complete_versions
from tasks.store.models import version_file
from tasks.store.storage import Storage

SET_ORDER = ("test", "labels", "freeform", "frames")


@dataclass(frozen=True)
class VersionInfo:
    version: str
    created: str  # from the version name (UTC time of publication); "?" for other names
    rows_trained: int | None  # rows of its training split
    label_rows: int | None  # rows from label files it used (all parts); None before the feedback loop
    macro_f1: dict[str, float]  # evaluation set -> macro-F1, as measured by its training run
    gate: bool | None  # the training run's champion/challenger decision; None before the gate existed
    promotions: tuple[str, ...]  # kinds of the log entries that put it in service ("automatic", "manual")
    latest: bool
    meta: dict[str, Any]  # bundle.json as stored


def created_at(version: str) -> str:
    try:
        return f"{datetime.strptime(version[:16], '%Y%m%dT%H%M%SZ'):%Y-%m-%d %H:%M:%S} UTC"
    except ValueError:
        return "?"


def version_info(storage: Storage, version: str, log: list[dict], latest: str | None) -> VersionInfo:
    meta = json.loads(storage.read_bytes(version_file(version, META_FILE)))
    splits_file = version_file(version, SPLITS_FILE)
    splits = json.loads(storage.read_bytes(splits_file)) if storage.exists(splits_file) else {}
    data = meta.get("data") or {}
    promotion = meta.get("promotion")
    return VersionInfo(
        version=version,
        created=created_at(version),
        rows_trained=len(splits["train"]) if splits.get("train") else None,
        label_rows=data.get("label_rows"),
        macro_f1={name: m["macro_f1"] for name, m in (meta.get("metrics") or {}).items()},
        gate=promotion.get("promote") if promotion else None,
        promotions=tuple(entry.get("kind", "?") for entry in log if entry.get("to") == version),
        latest=version == latest,
        meta=meta,
    )


def list_versions(storage: Storage) -> list[VersionInfo]:
    log, latest = read_promotions(storage), current_latest(storage)
    return [version_info(storage, version, log, latest) for version in complete_versions(storage)]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def versions_table(infos: list[VersionInfo]) -> str:
    """One row per version; ``*`` marks the one in service (``LATEST``)."""
    sets = sorted({name for info in infos for name in info.macro_f1}, key=_set_rank)
    return fixed_width(
        [
            {
                "": "*" if info.latest else "",
                "version": info.version,
                "created": info.created,
                "rows trained": info.rows_trained,
                "label rows": info.label_rows,
                **{f"F1 {s}": info.macro_f1.get(s) for s in sets},
                "gate": {True: "passed", False: "failed", None: "-"}[info.gate],
                "promoted": ", ".join(dict.fromkeys(info.promotions)) or "no",
            }
            for info in infos
        ]
    )


def _set_rank(name: str) -> tuple[int, str]:
    return (SET_ORDER.index(name) if name in SET_ORDER else len(SET_ORDER), name)


def bundle_json(storage: Storage, version: str) -> str:
    """A version's ``bundle.json`` as stored."""
    require_complete(storage, version)
    return storage.read_text(version_file(version, META_FILE))


def describe_version(storage: Storage, version: str) -> str:
    """``comentarios models show``: what a version was trained on, how it scored, why it was (not) promoted."""
    require_complete(storage, version)
    log = read_promotions(storage)
    info = version_info(storage, version, log, current_latest(storage))
    meta, data = info.meta, info.meta.get("data") or {}
    lines = [
        f"version:        {version}{'  (LATEST: in service)' if info.latest else ''}",
        f"created:        {info.created}",
        f"rows trained:   {_cell(info.rows_trained)} (training split)",
    ]
    if data:
        lines += [
            f"source:         {data.get('source')} ({data.get('source_rows_used')} rows used)",
            f"label files:    {', '.join(data.get('label_files') or []) or '-'}",
            *(f"  not read:     {_unreadable(f)}" for f in data.get("label_files_unreadable") or []),
            *(f"  skipped:      {name}" for name in data.get("label_files_skipped") or []),
            *(
                f"  waiting:      {name} (younger than --min-file-age)"
                for name in data.get("label_files_waiting") or []
            ),
            f"label rows:     {data.get('label_rows')} used, {data.get('label_rows_left_out')} left out, "
            f"{data.get('unlabelled_rows')} not labelled, {data.get('conflicting_ids')} conflicting ids",
            f"label weight:   {(meta.get('training') or {}).get('label_weight', 1.0)}",
        ]
    lines.append("macro-F1:       " + ", ".join(f"{k} {v:.4f}" for k, v in info.macro_f1.items()))
    threshold = (meta.get("review") or {}).get("min_confidence")
    lines.append(f"needs_review:   confianza <= {_cell(threshold)}")
    promotion = meta.get("promotion")
    if promotion:
        lines.append(
            f"gate:           {'passed' if promotion['promote'] else 'failed'} "
            f"against {promotion.get('champion') or 'no champion'}"
        )
        lines += [f"  - {reason}" for reason in promotion.get("reasons", [])]
        lines.append("")
        lines.append(fixed_width(PromotionDecision.from_dict(promotion).table(version)))
    else:
        lines.append("gate:           - (trained before champion/challenger)")
    entries = [e for e in log if version in (e.get("to"), e.get("from"))]
    if entries:
        lines.append("")
        lines.append("promotions:")
        lines += [
            f"  {e['time']}  {e.get('from') or '-'} -> {e['to']}  by {e.get('user')} ({e.get('kind')}): "
            f"{e.get('reason') or ''}"
            for e in entries
        ]
    return "\n".join(lines)


def fixed_width(rows: list[dict[str, Any]]) -> str:
    """Rows of one shape as a plain-text table (a column per key)."""
    if not rows:
        return "(none)"
    header = list(rows[0])
    cells = [header, *[[_cell(row[key]) for key in header] for row in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    )


def _unreadable(entry: dict[str, str]) -> str:
    """One unreadable label file: its reason, which names the file (prefixed when it does not)."""
    file, reason = entry["file"], entry["reason"]
    return reason if file in reason else f"{file}: {reason}"
