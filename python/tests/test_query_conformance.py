"""The filter language selects what the host's selects: every case of the shared conformance
file (store/query-conformance.json, which the Rust store's tests run too) on both backends,
then orders, pages and the values of the fixture runs' columns."""

from __future__ import annotations

import json
from typing import Dict, Iterator, List

import pytest

import hoststore
from conftest import REPO_ROOT

CASES = json.loads((REPO_ROOT / "store" / "query-conformance.json").read_text(encoding="utf-8"))["cases"]


@pytest.fixture(scope="module")
def opened() -> Iterator[Dict[str, hoststore.Store]]:
    """Each store opened once for the module, by locator."""
    stores: Dict[str, hoststore.Store] = {}
    yield stores
    for store in stores.values():
        store.close()


@pytest.fixture
def store(query_store: str, opened: Dict[str, hoststore.Store]) -> hoststore.Store:
    if query_store not in opened:
        opened[query_store] = hoststore.open(query_store)
    return opened[query_store]


def ids(store: hoststore.Store, **query: object) -> List[str]:
    return list(hoststore.search_runs(store, **query)["run_id"])


def test_the_conformance_file_has_cases() -> None:
    assert len(CASES) >= 30
    assert all(set(case) <= {"filter", "runs", "why"} for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["filter"] for case in CASES])
def test_a_conformance_case_selects_its_runs_newest_first(store: hoststore.Store, case: dict) -> None:
    assert ids(store, filter=case["filter"]) == case["runs"], case.get("why", "")


@pytest.mark.parametrize(
    "order, expected, why",
    [
        ("params.training.learning_rate", ["a", "d", "b", "c"], "by number, ties newest first"),
        ("params.training.learning_rate desc", ["c", "d", "b", "a"], "by number, descending"),
        ("params.training.optimizer desc", ["c", "b", "a", "d"], "text; none last"),
        ("tags.owner, run_id desc", ["b", "a", "d", "c"], "a removed tag sorts as none"),
        ("verified desc", ["a", "b", "d", "c"], "passed, failed, then never verified (newest first)"),
        ("metrics.loss asc", ["b", "c", "a", "d"], "the last epoch's loss; none last"),
        ("METRICS.loss.max DESC, started_at", ["a", "b", "c", "d"], "keywords in any case; ties by the next key"),
    ],
)
def test_orders_sort_as_the_host_does(store: hoststore.Store, order: str, expected: List[str], why: str) -> None:
    assert ids(store, order_by=order) == expected, why


def test_an_order_may_be_a_list_of_orders_as_mlflow_takes_it(store: hoststore.Store) -> None:
    assert ids(store, order_by=["tags.owner", "run_id desc"]) == ["b", "a", "d", "c"]


def test_the_default_order_is_newest_first(store: hoststore.Store) -> None:
    assert ids(store) == ["d", "c", "b", "a"]


def test_max_results_keeps_the_first_runs_of_the_order(store: hoststore.Store) -> None:
    assert ids(store, filter="status = 'completed'", order_by="metrics.test.accuracy desc", max_results=2) == [
        "b",
        "a",
    ]
    assert ids(store, max_results=10) == ["d", "c", "b", "a"]
    for wrong in (0, -1, True):
        with pytest.raises(ValueError, match="max_results"):
            hoststore.search_runs(store, max_results=wrong)


def test_columns_hold_the_values_the_host_reads(store: hoststore.Store) -> None:
    runs = hoststore.search_runs(store, filter="status = 'completed'", order_by="metrics.test.accuracy desc")
    row = runs.set_index("run_id").loc["a"]
    assert row["metrics.test.accuracy"] == 0.9
    assert row["params.training.learning_rate"] == 0.001
    assert row["params.training.optimizer"] == "adam"
    assert row["params.training.layers"] == "[8,4]", "lists as their JSON text"
    assert row["tags.owner"] == "ana"
    assert row["plugin.model.class"] == "MLP"
    assert row["plugin.model.sha256"] == "11".ljust(64, "0")
    assert row["dataset_sha256"] == "da".ljust(64, "0")
    assert row["verified"] is True
    assert row["seed"] == 7
    assert row["duration"] == 0.0
    assert row["status"] == "completed"
    assert row["metrics.loss"] == 0.25, "no final loss: the last epoch's"
    assert str(row["start_time"]) == "2026-01-01 00:00:01+00:00"
    c = runs.set_index("run_id").loc["c"]
    assert c["verified"] is None, "never verified"
    assert c["tags.owner"] is None or c["tags.owner"] != c["tags.owner"], "a removed tag is no tag"
    assert runs.set_index("run_id").loc["b"]["verified"] is False, "the newest verification counts"
    assert "metrics.test.confusion" not in runs.columns, "a structured metric is not a column"
    assert list(runs.columns[:5]) == ["run_id", "experiment", "status", "start_time", "end_time"]


def test_no_match_is_an_empty_table_with_the_run_columns(store: hoststore.Store) -> None:
    runs = hoststore.search_runs(store, filter="run_id = 'zzz'")
    assert len(runs) == 0 and list(runs.columns) == list(hoststore._api.RUN_COLUMNS)


def test_a_running_run_has_no_end_and_no_duration(store: hoststore.Store) -> None:
    d = hoststore.search_runs(store, filter="run_id = 'd'").iloc[0]
    assert d["status"] == "running"
    assert d["end_time"] != d["end_time"], "NaT"
    assert d["duration"] != d["duration"] or d["duration"] is None
