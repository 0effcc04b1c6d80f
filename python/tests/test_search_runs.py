"""search_runs on stores of real runs (``host run`` and ``host sweep``), both backends: every
column against what ``host runs show --json`` says of the run, and the runs a filter and order
select against what ``host runs list`` selects."""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional

import pandas
import pytest

import hoststore
from conftest import HostRunner, RealStore


def flatten(value: Any, prefix: str = "") -> Dict[str, Any]:
    """Dotted keys of nested mappings, lists kept whole: how the store indexes a config and
    metrics (record::flatten)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: Dict[str, Any] = {}
    for key, inner in value.items():
        out.update(flatten(inner, f"{prefix}.{key}" if prefix else key))
    return out


def present(value: Any) -> bool:
    """Whether a cell holds a value (pandas shows a missing one as None, NaN or NaT)."""
    return not (value is None or value is pandas.NaT or (isinstance(value, float) and math.isnan(value)))


def cell(row: Any, column: str) -> Any:
    """A cell's value, None when missing."""
    value = row[column]
    return value if present(value) else None


def time(text: Optional[str]) -> Optional[datetime]:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def store(real_store: RealStore) -> Iterator[hoststore.Store]:
    with hoststore.open(real_store.locator) as opened:
        yield opened


def shown(run_host: HostRunner, real_store: RealStore, run_id: str) -> Dict[str, Any]:
    return run_host.json("runs", "show", run_id, "--json", cwd=real_store.project, db=real_store.locator)


def expected_metrics(record: Dict[str, Any]) -> Dict[str, float]:
    """A run's metric columns: each numeric final metric, else each per-epoch metric's last
    epoch's value."""
    finals = {
        name: float(value)
        for name, value in flatten(record["metrics"] or {}).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    metrics = dict(finals)
    for epoch in sorted(record["history"], key=int):
        for name, value in record["history"][epoch].items():
            if name not in finals:
                metrics[name] = value
    return {name: value for name, value in metrics.items() if value is not None}


def test_every_column_is_what_the_host_shows_of_the_run(
    store: hoststore.Store, real_store: RealStore, run_host: HostRunner
) -> None:
    runs = hoststore.search_runs(store)
    assert sorted(runs["run_id"]) == sorted(real_store.all_run_ids)
    for _, row in runs.iterrows():
        record = shown(run_host, real_store, row["run_id"])
        assert row["experiment"] == record["experiment_name"]
        assert row["status"] == record["status"] == "completed"
        assert row["start_time"] == time(record["started_at"])
        assert row["end_time"] == time(record["finished_at"])
        assert row["duration"] == (time(record["finished_at"]) - time(record["started_at"])).total_seconds()
        for column in ("config_file", "config_sha256", "seed", "threads", "host_version", "output_dir"):
            assert row[column] == record[column], column
        assert row["dataset_sha256"] == record["data"]["dataset_sha256"]
        assert row["hostname"] == record["owner"]["hostname"]
        assert present(row["git_commit"]) == (record["git"]["commit"] is not None)
        plugins = {plugin["kind"]: plugin for plugin in record["plugins"]}
        for kind, name in (("Loader", "loader"), ("Model", "model"), ("ReportGenerator", "report")):
            plugin = plugins.get(kind)
            assert cell(row, f"plugin.{name}.class") == (plugin["class"] if plugin else None)
            assert cell(row, f"plugin.{name}.sha256") == (plugin["sha256"] if plugin else None)
        verifications = record["verifications"]
        assert row["verified"] == (verifications[-1]["ok"] if verifications else None)
        trial = record["trial"]
        assert cell(row, "sweep_id") == (trial["sweep_id"] if trial else None)
        assert cell(row, "trial") == (trial["trial"] if trial else None)
        assert not present(row["replay_of"]) and not present(row["error"]) and not present(row["failed_stage"])

        parameters = {c[len("params.") :]: v for c, v in row.items() if c.startswith("params.") and present(v)}
        config = flatten(record["config"])
        assert set(parameters) == set(config)
        for name, value in config.items():
            if isinstance(value, (list, dict)):
                assert json.loads(parameters[name]) == value, name
            else:
                assert parameters[name] == value, name

        metrics = {c[len("metrics.") :]: v for c, v in row.items() if c.startswith("metrics.") and present(v)}
        assert metrics == expected_metrics(record)
        tags = {c[len("tags.") :]: v for c, v in row.items() if c.startswith("tags.") and present(v)}
        assert tags == record["tags"]


def test_the_tagged_and_the_verified_run_show_it(store: hoststore.Store, real_store: RealStore) -> None:
    runs = hoststore.search_runs(store).set_index("run_id")
    assert runs.loc[real_store.tagged_run_id, "tags.owner"] == "ana"
    assert "tags.stage" not in runs.columns, "a removed tag is no column"
    assert runs.loc[real_store.verified_run_id, "verified"] is True
    assert runs.loc[real_store.trial_run_ids[0], "verified"] is None


def test_a_sweeps_trials_are_selected_by_its_id(store: hoststore.Store, real_store: RealStore) -> None:
    trials = hoststore.search_runs(store, filter=f"sweep = '{real_store.sweep_id}'", order_by="trial")
    assert list(trials["run_id"]) == real_store.trial_run_ids
    assert list(trials["trial"]) == [1, 2, 3]
    assert list(trials["params.training.learning_rate"]) == [0.003, 0.03, 0.3]
    assert trials["metrics.validation.rmse"].notna().all()
    assert (trials["plugin.report.class"].isna()).all(), "the sweep's runs have no report generator"


QUERIES = [
    ("", ""),
    ("", "params.training.learning_rate desc"),
    ("sweep is not null", "metrics.validation.rmse"),
    ("metrics.loss.mean > 0 and metrics.loss@epoch=3 is not null", "metrics.loss.min desc"),
    ("tags.owner = 'ana' or verified", ""),
    ("not verified and tags.stage is null", "run_id"),
    ("plugin.report is null", "trial desc"),
    ("duration >= 0 and duration < 3600", "duration desc, run_id"),
    ("data.sha256 is not null and plugin.sha256 != '00'", "seed desc, run_id"),
    ("experiment like 'PYTEST%' and status = 'completed'", "started_at, run_id desc"),
    ("params.model.hidden_layers = '[8]' and params.training.epochs = 3", "params.data_loader.path, seed desc"),
    ("metrics.validation.rmse < 20 or metrics.test.r2 > 0.5", "metrics.test.r2 desc"),
    ("params.training.learning_rate in (0.01, 0.3)", "metrics.loss.last"),
]


@pytest.mark.parametrize("filter_text, order", QUERIES)
def test_a_query_selects_what_host_runs_list_selects(
    store: hoststore.Store, real_store: RealStore, run_host: HostRunner, filter_text: str, order: str
) -> None:
    arguments = ["runs", "list", "--json", "--limit", "0"]
    arguments += ["--filter", filter_text] if filter_text else []
    arguments += ["--order-by", order] if order else []
    listed = [run["run_id"] for run in run_host.json(*arguments, cwd=real_store.project, db=real_store.locator)]
    found = hoststore.search_runs(store, filter=filter_text or None, order_by=order or None)
    assert list(found["run_id"]) == listed


def test_a_bad_filter_raises_a_query_error_with_a_caret(store: hoststore.Store) -> None:
    with pytest.raises(hoststore.QueryError) as raised:
        hoststore.search_runs(store, filter="metrics.accuracy > 0.9 and bogus.x = 1")
    assert raised.value.column == 28
    assert str(raised.value).endswith("\n                             ^")
    with pytest.raises(hoststore.QueryError, match="expected `asc`, `desc`"):
        hoststore.search_runs(store, order_by="seed sideways")


def test_without_pandas_the_functions_return_tables(
    store: hoststore.Store, real_store: RealStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails
    runs = hoststore.search_runs(store, order_by="run_id")
    assert isinstance(runs, hoststore.Table)
    assert runs["run_id"] == sorted(real_store.all_run_ids)
    assert runs.columns[:5] == ["run_id", "experiment", "status", "start_time", "end_time"]
    first = next(iter(runs))
    assert set(first) == set(runs.columns)
    assert isinstance(first["start_time"], datetime)
    with pytest.raises(ImportError, match=r"pip install 'hoststore\[pandas\]'"):
        runs.to_pandas()
    with pytest.raises(KeyError, match="no column 'nope'"):
        runs["nope"]
    history = hoststore.metric_history(store, real_store.run_ids[0])
    assert isinstance(history, hoststore.Table) and history.columns == ["run_id", "name", "step", "value"]
    assert isinstance(hoststore.lineage(store, real_store.run_ids[0]), hoststore.Table)


def test_parameters_keep_their_types(
    store: hoststore.Store, real_store: RealStore, run_host: HostRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without pandas (which makes an integer column with gaps floats), each value's own type."""
    monkeypatch.setitem(sys.modules, "pandas", None)
    run_id = real_store.run_ids[0]
    row = next(iter(hoststore.search_runs(store, filter=f"run_id = '{run_id}'")))
    for name, value in flatten(shown(run_host, real_store, run_id)["config"]).items():
        expected = json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else value
        assert row[f"params.{name}"] == expected and type(row[f"params.{name}"]) is type(expected), name


def test_a_table_becomes_the_same_data_frame(store: hoststore.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = hoststore.search_runs(store)
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "pandas", None)
        table = hoststore.search_runs(store)
    converted = table.to_pandas()
    assert list(converted.columns) == list(frame.columns)
    assert converted.astype(str).equals(frame.astype(str))


def test_a_store_may_be_given_by_its_locator(real_store: RealStore) -> None:
    runs: List[str] = list(hoststore.search_runs(real_store.locator, filter="trial = 2")["run_id"])
    assert runs == [real_store.trial_run_ids[1]]
