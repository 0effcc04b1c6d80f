"""The reading functions: runs as a table with MLflow's column names, metric histories, a run's
files and its lineage. Each takes the store first (a :class:`Store`, a path or URL, or None for
the host's default) and reads one consistent snapshot of the read views."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ._evaluate import (
    PLUGIN_COLUMNS,
    RUNS_V1_COLUMNS,
    MetricSeries,
    Run,
    RunIndex,
    current_tags,
    duration,
    finite,
    parse_time,
)
from ._store import Store, StoreError, StoreLike, opened
from ._table import frame
from .files import File, FileCheck
from .query import kind_name, parse_filter, parse_orders

__all__ = ["search_runs", "metric_history", "files", "verify_files", "lineage"]

#: The columns every run has, in order: MLflow's names first, then the run's provenance.
RUN_COLUMNS: Tuple[str, ...] = (
    "run_id",
    "experiment",
    "status",
    "start_time",
    "end_time",
    "duration",
    "config_file",
    "config_sha256",
    "dataset_sha256",
    "plugin.loader.class",
    "plugin.loader.sha256",
    "plugin.model.class",
    "plugin.model.sha256",
    "plugin.report.class",
    "plugin.report.sha256",
    "verified",
    "sweep_id",
    "trial",
    "replay_of",
    "seed",
    "threads",
    "hostname",
    "host_version",
    "git_commit",
    "git_dirty",
    "output_dir",
    "error",
    "failed_stage",
)

#: ``runs_v1`` columns shown under the same name (the others are renamed, or flags made
#: booleans).
_SAME_NAME = tuple(c for c in RUN_COLUMNS if c in RUNS_V1_COLUMNS and c not in ("verified", "git_dirty"))


def _flag(value: Optional[int]) -> Optional[bool]:
    return None if value is None else bool(value)


def _run_row(run: Run) -> Dict[str, Any]:
    """A run's columns of :data:`RUN_COLUMNS`."""
    row = {column: run[column] for column in _SAME_NAME}
    row["start_time"] = parse_time(run["started_at"])
    row["end_time"] = parse_time(run["finished_at"])
    row["duration"] = duration(run)
    for kind, (class_column, sha_column) in PLUGIN_COLUMNS.items():
        row[f"plugin.{kind_name(kind)}.class"] = run[class_column]
        row[f"plugin.{kind_name(kind)}.sha256"] = run[sha_column]
    row["verified"] = _flag(run["verified"])
    row["git_dirty"] = _flag(run["git_dirty"])
    return row


def parameter_value(kind: str, value_json: str) -> Any:
    """A parameter as a column holds it: a scalar as its Python value, a list or mapping as its
    JSON text (as stored, and as the filter language compares it: ``'[8,4]'``)."""
    if kind in ("list", "mapping"):
        return value_json
    return json.loads(value_json)


def search_runs(
    store: StoreLike = None,
    filter: Optional[str] = None,  # noqa: A002 - MLflow's and the CLI's word
    order_by: Union[str, Sequence[str], None] = None,
    max_results: Optional[int] = None,
) -> Any:
    """The runs a filter selects, one row each, as a pandas DataFrame (a :class:`Table` when
    pandas is not installed).

    ``filter`` is an expression of ``host runs list --filter``'s language (``"metrics.test.accuracy
    > 0.9 and params.training.learning_rate = 0.001"``; None or blank for every run);
    ``order_by`` one of ``--order-by`` (``"metrics.test.accuracy desc, run_id"``) or a list of
    them; the default and every tie is newest first. ``max_results`` keeps the first that many.

    Columns: :data:`RUN_COLUMNS` (``run_id``, ``experiment``, ``status``, ``start_time``,
    ``end_time``, then the run's provenance: config and data set digests, each plugin's class and
    library digest, ``verified`` True, False or None when never verified, sweep and trial,
    ...), then ``params.KEY`` (scalars typed; lists and mappings as JSON text), ``metrics.NAME``
    (the final value, else the last epoch's; structured final metrics such as a confusion matrix
    are left out) and ``tags.KEY`` (the current value), each sorted by name.

    Raises :class:`~hoststore.QueryError` for a filter or order that does not parse.
    """
    if max_results is not None and (isinstance(max_results, bool) or int(max_results) < 1):
        raise ValueError(f"max_results is {max_results!r}: give a positive number of runs, or None for all")
    expr = parse_filter(filter) if filter is not None and filter.strip() else None
    orders = parse_orders(order_by)
    with opened(store) as open_store, open_store.snapshot():
        runs = RunIndex(open_store).select(expr, orders)
        if max_results is not None:
            runs = runs[: int(max_results)]
        rows = [_run_row(run) for run in runs]
        run_ids = [run["run_id"] for run in runs]
        extra = _params(open_store, run_ids), _metrics(open_store, run_ids), _tags(open_store, run_ids)
    columns = list(RUN_COLUMNS)
    for prefix, values in zip(("params.", "metrics.", "tags."), extra):
        names = sorted({name for by_name in values.values() for name in by_name})
        columns.extend(prefix + name for name in names)
        for row in rows:
            for name, value in values.get(row["run_id"], {}).items():
                row[prefix + name] = value
    return frame(columns, rows)


def _params(store: Store, run_ids: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    found: Dict[str, Dict[str, Any]] = {}
    sql = "SELECT run_id, name, type, value_json FROM parameters_v1 WHERE run_id IN ({runs})"
    for run_id, name, kind, value_json in store.read_for_runs(sql, run_ids):
        found.setdefault(run_id, {})[name] = parameter_value(kind, value_json)
    return found


def _metrics(store: Store, run_ids: Sequence[str]) -> Dict[str, Dict[str, Optional[float]]]:
    series: Dict[Tuple[str, str], MetricSeries] = {}
    sql = "SELECT run_id, name, step, value FROM metrics_v1 WHERE run_id IN ({runs})"
    for run_id, name, step, value in store.read_for_runs(sql, run_ids):
        series.setdefault((run_id, name), MetricSeries()).add(step, value)
    # A final value that is not a number (a confusion matrix, a per-class table, a kind) and
    # no epochs: a structured metric, not a column.
    numeric = {name for (_, name), s in series.items() if s.epochs or s.final is not None}
    found: Dict[str, Dict[str, Optional[float]]] = {}
    for (run_id, name), s in series.items():
        if name in numeric:
            found.setdefault(run_id, {})[name] = s.value()
    return found


def _tags(store: Store, run_ids: Sequence[str]) -> Dict[str, Dict[str, str]]:
    sql = "SELECT run_id, kind, name, value, seq FROM annotations_v1 WHERE run_id IN ({runs})"
    found: Dict[str, Dict[str, str]] = {}
    for (run_id, name), value in current_tags(store.read_for_runs(sql, run_ids)).items():
        if value is not None:
            found.setdefault(run_id, {})[name] = value
    return found


def _existing(store: Store, run_ids: Sequence[str]) -> None:
    """Raises :class:`StoreError` naming the runs the store does not hold."""
    found = {row[0] for row in store.read_for_runs("SELECT run_id FROM runs_v1 WHERE run_id IN ({runs})", run_ids)}
    missing = [run_id for run_id in run_ids if run_id not in found]
    if missing:
        raise StoreError(f"{store.locator}: no run {', '.join(missing)}; `host runs list` lists the runs")


def metric_history(
    store: StoreLike, run_ids: Union[str, Iterable[str]], names: Union[str, Iterable[str], None] = None
) -> Any:
    """The per-epoch metrics of runs as a long table: ``run_id``, ``name``, ``step`` (the
    epoch, from 1), ``value`` (None where it was not a finite number). Runs in the order given,
    then names, then steps. ``names`` keeps only those metrics.

    A DataFrame, or a :class:`Table` when pandas is not installed.
    """
    ids = [run_ids] if isinstance(run_ids, str) else list(dict.fromkeys(run_ids))
    wanted = None if names is None else {names} if isinstance(names, str) else set(names)
    with opened(store) as open_store, open_store.snapshot():
        _existing(open_store, ids)
        rows = open_store.read_for_runs(
            "SELECT run_id, name, step, value FROM metrics_v1 WHERE step IS NOT NULL AND run_id IN ({runs})", ids
        )
    position = {run_id: index for index, run_id in enumerate(ids)}
    history = [
        {"run_id": run_id, "name": name, "step": int(step), "value": finite(value)}
        for run_id, name, step, value in rows
        if wanted is None or name in wanted
    ]
    history.sort(key=lambda row: (position[row["run_id"]], row["name"], row["step"]))
    return frame(["run_id", "name", "step", "value"], history)


def files(store: StoreLike, run_id: str) -> List[File]:
    """Every file a run recorded (``files_v1``), by role then path: raw data, model weights,
    metrics, predictions, reports, and its data set and splits, which are data held in memory
    (``path`` None, ``on_disk`` false). Plugin libraries are not files of the run here: their
    digests are the ``plugin.*.sha256`` columns of :func:`search_runs`."""
    with opened(store) as open_store, open_store.snapshot():
        _existing(open_store, [run_id])
        rows = open_store.read("SELECT role, path, sha256, kind, size FROM files_v1 WHERE run_id = ?", [run_id])
    recorded = [
        File(run_id, role, path if path else None, sha256, kind, None if size is None else int(size))
        for role, path, sha256, kind, size in rows
    ]
    return sorted(recorded, key=lambda f: (f.role, f.path or "", f.sha256))


def verify_files(store: StoreLike, run_id: str) -> List[FileCheck]:
    """Rehashes every file of a run on disk (:meth:`File.verify`), skipping data held in
    memory; each check is true when the file is as recorded."""
    return [file.verify() for file in files(store, run_id) if file.on_disk]


def lineage(store: StoreLike, run_id: str) -> Any:
    """A run's provenance graph as edges (``lineage_v1``, W3C PROV relations): ``relation``
    (``used``, ``wasGeneratedBy``, ``wasDerivedFrom``, ``wasAssociatedWith``), ``subject``,
    ``object`` (SHA-256 digests, activity ids such as ``RUN/train``, agents such as
    ``plugin:SHA256`` and ``host:VERSION``), ``activity`` (the transform or stage of a
    ``wasDerivedFrom``) and ``parameters`` (a transform's fitted parameters, decoded from JSON).

    A DataFrame, or a :class:`Table` when pandas is not installed.
    """
    with opened(store) as open_store, open_store.snapshot():
        _existing(open_store, [run_id])
        rows = open_store.read(
            "SELECT relation, subject, object, activity, parameters_json FROM lineage_v1 WHERE run_id = ?", [run_id]
        )
    edges = [
        {
            "relation": relation,
            "subject": subject,
            "object": object_,
            "activity": activity,
            "parameters": None if parameters is None else json.loads(parameters),
        }
        for relation, subject, object_, activity, parameters in rows
    ]
    return frame(["relation", "subject", "object", "activity", "parameters"], edges)
