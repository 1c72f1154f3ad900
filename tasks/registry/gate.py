"""The promotion gate: the rule that decides whether a new model replaces the one in service.

Plain data and one pure function, so the registry commands can read a stored decision without
importing torch; :mod:`tasks.training.champion` produces the numbers (see its docstring for how the rows are
chosen).

The challenger is promoted only if its own test macro-F1 reaches ``--promote-threshold`` and, on every
evaluation set with rows, its macro-F1 is not below the champion's by more than ``--max-regression``.
With no champion, only the threshold applies. A champion that cannot be loaded, or no row that
neither model trained on, blocks the automatic promotion (``comentarios models promote`` is the way
out): nothing would show the new model is not worse. So does anything the training itself reports as
incomplete (``blockers``: a label file it could not read may hold the corrections of older labels, so
the version may have learned the very labels an analyst fixed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

TOLERANCE = 1e-9


@dataclass(frozen=True)
class SetComparison:
    name: str
    rows: int  # rows both models were scored on
    left_out: int  # rows left out because one of the models trained on them
    challenger_f1: float | None  # None when no row was left
    champion_f1: float | None  # None without a champion (or no row)

    @property
    def difference(self) -> float | None:
        if self.challenger_f1 is None or self.champion_f1 is None:
            return None
        return self.challenger_f1 - self.champion_f1

    def regressed(self, max_regression: float) -> bool:
        """Worse than the champion by more than ``max_regression`` (exactly that much is allowed;
        the tolerance keeps float rounding, 0.89 - 0.90 = -0.01000000000000001, from deciding)."""
        return self.difference is not None and self.difference < -max_regression - TOLERANCE


@dataclass(frozen=True)
class PromotionDecision:
    """What the gate decided and why; stored in the version's ``bundle.json`` (``promotion``)."""

    promote: bool
    champion: str | None
    test_macro_f1: float
    threshold: float
    max_regression: float
    sets: tuple[SetComparison, ...]
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sets": [asdict(s) for s in self.sets], "reasons": list(self.reasons)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromotionDecision:
        return cls(
            **{
                **data,
                "sets": tuple(SetComparison(**s) for s in data["sets"]),
                "reasons": tuple(data["reasons"]),
            }
        )

    def table(self, challenger: str) -> list[dict[str, Any]]:
        """The side-by-side table: one row per evaluation set."""
        return [
            {
                "set": s.name,
                "rows": s.rows,
                "left_out_trained_on": s.left_out,
                f"challenger {challenger}": _round(s.challenger_f1),
                f"champion {self.champion or '(none)'}": _round(s.champion_f1),
                "difference": _round(s.difference),
                "ok": not s.regressed(self.max_regression),
            }
            for s in self.sets
        ]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def decide(
    test_macro_f1: float,
    sets: list[SetComparison],
    champion: str | None,
    threshold: float,
    max_regression: float,
    *,
    champion_problem: str | None = None,
    blockers: Sequence[str] = (),
) -> PromotionDecision:
    """The gate (see the module docstring), with one human-readable reason per check."""
    reasons, ok = [], True
    for blocker in blockers:
        ok = False
        reasons.append(blocker)
    if test_macro_f1 >= threshold:
        reasons.append(f"test macro-F1 {test_macro_f1:.4f} >= threshold {threshold:.4f}")
    else:
        ok = False
        reasons.append(f"test macro-F1 {test_macro_f1:.4f} < threshold {threshold:.4f}")
    if champion_problem:
        ok = False
        reasons.append(champion_problem)
    elif champion is None:
        if not blockers:
            reasons.append("no model in service yet: only the threshold applies")
    else:
        compared = [s for s in sets if s.difference is not None]
        if not compared:
            ok = False
            reasons.append(
                f"no evaluation rows that neither model trained on: nothing shows it beats {champion}"
            )
        for s in compared:
            if s.regressed(max_regression):
                ok = False
                reasons.append(
                    f"worse than champion {champion} on {s.name}: macro-F1 {s.challenger_f1:.4f} vs "
                    f"{s.champion_f1:.4f} ({s.difference:+.4f}, more than the {max_regression} allowed; "
                    f"{s.rows} rows)"
                )
        if compared and not any(s.regressed(max_regression) for s in compared):
            diffs = ", ".join(f"{s.name} {s.difference:+.4f} ({s.rows} rows)" for s in compared)
            reasons.append(
                f"not worse than champion {champion} by more than {max_regression} on any set: {diffs}"
            )
    return PromotionDecision(
        promote=ok,
        champion=champion,
        test_macro_f1=test_macro_f1,
        threshold=threshold,
        max_regression=max_regression,
        sets=tuple(sets),
        reasons=tuple(reasons),
    )


def unreadable_labels_blocker(unreadable: list[dict[str, str]]) -> str:
    """Why a version trained without some label files is not promoted automatically: a file it could
    not read may correct labels of older files, and then this version learned the wrong ones."""
    names = ", ".join(f["file"] for f in unreadable)
    return (
        f"label file(s) not read ({names}): they may correct labels this version learned; fix them and "
        "train again, or promote it by hand (comentarios models promote)"
    )
