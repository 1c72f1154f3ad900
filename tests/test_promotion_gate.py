"""The promotion gate (threshold and regressions), the rows the champion and challenger are compared on
(no row either model trained on), and the promotions log behind LATEST.

These use small stand-ins and a tiny bundle; the whole loop with real trainings is in
``test_feedback_loop.py``.
"""

from __future__ import annotations

import json
from datetime import UTC
from datetime import datetime
from types import SimpleNamespace

import pandas as pd
import pytest
from prefect.logging import disable_run_logger

from helpers import LABELS
from helpers import tiny_bundle
from tasks.registry.gate import SetComparison
from tasks.registry.gate import decide
from tasks.registry.gate import unreadable_labels_blocker
from tasks.registry.promotion import apply_promotion
from tasks.registry.promotion import promote
from tasks.registry.promotion import read_promotions
from tasks.registry.versions import ModelNotFound
from tasks.registry.versions import is_complete
from tasks.registry.versions import set_latest
from tasks.registry.versions import write_version
from tasks.store.layout import EVAL_FILE
from tasks.store.layout import LATEST
from tasks.store.layout import PROMOTIONS
from tasks.store.storage import Storage
from tasks.training.champion import Contender
from tasks.training.champion import comparison_sets
from tasks.training.champion import load_champion
from tasks.training.champion import trained_ids
from tasks.training.reports import parquet_bytes

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sets(**diffs: float) -> list[SetComparison]:
    """One comparison per set: the champion at 0.9, the challenger ``diff`` away from it."""
    return [SetComparison(name, 100, 0, 0.9 + diff, 0.9) for name, diff in diffs.items()]


class TestDecide:
    def test_threshold_alone_without_a_champion(self):
        assert decide(0.95, [], None, 0.95, 0.01).promote  # at exactly the threshold
        miss = decide(0.9499, [], None, 0.95, 0.01)
        assert not miss.promote and "0.9499 < threshold 0.9500" in miss.reasons[0]

    def test_not_worse_on_any_set_is_promoted(self):
        decision = decide(1.0, sets(test=0.0, labels=-0.01, freeform=0.2), "v-old", 0.95, 0.01)
        assert decision.promote
        assert "not worse than champion v-old" in decision.reasons[-1]

    def test_a_regression_on_one_set_blocks_and_is_named(self):
        decision = decide(1.0, sets(test=0.0, labels=-0.25, freeform=0.05), "v-old", 0.95, 0.01)
        assert not decision.promote
        assert [r for r in decision.reasons if r.startswith("worse than champion v-old on labels")]
        assert not [r for r in decision.reasons if "on freeform" in r or "on test" in r]

    def test_a_good_comparison_does_not_excuse_the_threshold(self):
        assert not decide(0.90, sets(test=0.1), "v-old", 0.95, 0.01).promote

    def test_nothing_to_compare_on_or_a_broken_champion_blocks(self):
        empty = [SetComparison("test", 0, 200, None, None)]
        assert not decide(1.0, empty, "v-old", 0.95, 0.01).promote
        broken = decide(
            1.0, [], "v-old", 0.95, 0.01, champion_problem="the model in service ... could not be loaded"
        )
        assert not broken.promote and "could not be loaded" in broken.reasons[-1]

    def test_a_blocker_from_the_training_blocks_whatever_the_figures(self):
        why = unreadable_labels_blocker([{"file": "2026-02-correccion.csv", "reason": "not UTF-8"}])
        for champion in (None, "v-old"):
            decision = decide(1.0, sets(test=0.1, freeform=0.1), champion, 0.95, 0.01, blockers=[why])
            assert not decision.promote and decision.reasons[0] == why
        assert why.startswith("label file(s) not read (2026-02-correccion.csv)")
        assert decide(1.0, sets(test=0.1), "v-old", 0.95, 0.01, blockers=[]).promote

    def test_round_trips_through_bundle_json(self):
        decision = decide(1.0, sets(test=0.0, labels=-0.25), "v-old", 0.95, 0.01)
        again = type(decision).from_dict(json.loads(json.dumps(decision.to_dict())))
        assert again == decision
        assert [row["ok"] for row in again.table("v-new")] == [True, False]


def eval_rows(*rows: tuple[str, str, str]) -> pd.DataFrame:
    """(id, categoria, set) -> eval.parquet rows."""
    return pd.DataFrame([{"id": i, "comentario": f"texto {i}", "categoria": c, "set": s} for i, c, s in rows])


def contender(version: str, trained: dict[str, list[str]], rows: pd.DataFrame) -> Contender:
    return Contender(version, SimpleNamespace(labels=LABELS), trained_ids(trained), rows)


FREEFORM = pd.DataFrame(
    {"id": ["ff-1", "ff-2"], "comentario": ["a", "b"], "categoria": ["precios", "logistica"]}
)


class TestComparisonRows:
    def test_rows_either_model_trained_on_are_left_out(self):
        new = contender(
            "new",
            {"train": ["s1", "l1"], "val": ["s2"]},
            eval_rows(("s3", "precios", "test"), ("l2", "precios", "labels")),
        )
        old = contender(
            "old",
            {"train": ["s3"], "val": []},
            eval_rows(("s1", "precios", "test"), ("s4", "precios", "test"), ("l3", "logistica", "labels")),
        )
        chosen = comparison_sets(new, old, FREEFORM)
        assert sorted(chosen["test"][0]["id"]) == ["s4"] and chosen["test"][1] == 2  # s3 and s1 left out
        assert sorted(chosen["labels"][0]["id"]) == ["l2", "l3"] and chosen["labels"][1] == 0
        assert sorted(chosen["freeform"][0]["id"]) == ["ff-1", "ff-2"]

    def test_an_id_in_both_versions_takes_the_challengers_label(self):
        new = contender("new", {"train": ["x"]}, eval_rows(("l1", "precios", "labels")))
        old = contender("old", {"train": ["y"]}, eval_rows(("l1", "logistica", "labels")))
        rows, _ = comparison_sets(new, old, FREEFORM)["labels"]
        assert rows[["id", "categoria"]].values.tolist() == [["l1", "precios"]]

    def test_a_champion_that_recorded_no_split_is_compared_on_free_form_only(self):
        new = contender("new", {"train": ["x"]}, eval_rows(("s1", "precios", "test")))
        old = contender("old", {}, eval_rows())
        assert list(comparison_sets(new, old, FREEFORM)) == ["freeform"]


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()[0]


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(str(tmp_path))


class TestOldChampion:
    def test_without_eval_parquet_its_test_ids_are_looked_up_in_the_source(self, storage, bundle):
        from dataclasses import replace

        old = replace(
            bundle, version="v-old", splits={"train": ["id-0"], "val": ["id-1"], "test": ["id-2", "id-9"]}
        )
        write_version(storage, "v-old", old.to_files())
        set_latest(storage, "v-old")
        source = pd.DataFrame(
            {"id": ["id-0", "id-2", "id-3"], "comentario": ["a", "b", "c"], "categoria": ["precios"] * 3}
        )
        champion = load_champion(storage, source)
        assert champion.version == "v-old" and set(champion.trained_ids) == {"id-0", "id-1"}
        assert champion.eval_rows[["id", "set"]].values.tolist() == [["id-2", "test"]]

    def test_with_eval_parquet_its_rows_are_used(self, storage, bundle):
        rows = eval_rows(("t1", "precios", "test"), ("l1", "logistica", "labels"))
        write_version(storage, "v2", {**bundle.to_files(), EVAL_FILE: parquet_bytes(rows)})
        set_latest(storage, "v2")
        assert load_champion(storage, pd.DataFrame(columns=["id"])).eval_rows.equals(rows)

    def test_no_latest_no_champion(self, storage):
        assert load_champion(storage, pd.DataFrame(columns=["id"])) is None


class TestPromotionsLog:
    @pytest.fixture
    def two_versions(self, storage, bundle):
        write_version(storage, "v-old", bundle.to_files())
        write_version(storage, "v-new", bundle.to_files())
        set_latest(storage, "v-old")
        return storage

    def test_promote_switches_latest_and_logs_who_and_why(self, two_versions):
        when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        entry = promote(two_versions, "v-new", reason="mejor en etiquetas", now=when)
        assert two_versions.read_text(LATEST) == "v-new\n"
        assert entry["from"] == "v-old" and entry["to"] == "v-new" and entry["kind"] == "manual"
        assert entry["user"] and entry["reason"] == "mejor en etiquetas"
        assert read_promotions(two_versions) == [entry]
        assert two_versions.glob(f"{PROMOTIONS}/*") == [f"{PROMOTIONS}/20260301T120000000000Z-v-new.json"]

    def test_log_is_in_time_order(self, two_versions):
        promote(two_versions, "v-new", reason="", now=datetime(2026, 3, 1, tzinfo=UTC))
        promote(two_versions, "v-old", reason="rollback", now=datetime(2026, 3, 2, tzinfo=UTC))
        assert [(e["from"], e["to"]) for e in read_promotions(two_versions)] == [
            ("v-old", "v-new"),
            ("v-new", "v-old"),
        ]

    def test_an_incomplete_version_is_refused_and_nothing_is_logged(self, two_versions):
        with pytest.raises(ModelNotFound):
            promote(two_versions, "v-missing", reason="")
        assert two_versions.read_text(LATEST) == "v-old\n" and read_promotions(two_versions) == []

    def test_the_flow_task_follows_the_decision(self, two_versions):
        no = decide(1.0, sets(labels=-0.5), "v-old", 0.95, 0.01)
        with disable_run_logger():
            assert apply_promotion.fn(two_versions, "v-new", no) is False
        assert two_versions.read_text(LATEST) == "v-old\n" and is_complete(two_versions, "v-new")
        yes = decide(1.0, sets(labels=0.0), "v-old", 0.95, 0.01)
        with disable_run_logger():
            assert apply_promotion.fn(two_versions, "v-new", yes) is True
        (entry,) = read_promotions(two_versions)
        assert entry["kind"] == "automatic" and entry["to"] == "v-new" and "not worse" in entry["reason"]

    def test_a_miss_without_any_latest_writes_none(self, storage, bundle):
        write_version(storage, "v1", bundle.to_files())
        with disable_run_logger():
            assert apply_promotion.fn(storage, "v1", decide(0.5, [], None, 0.95, 0.01)) is False
        assert not storage.exists(LATEST) and read_promotions(storage) == []
