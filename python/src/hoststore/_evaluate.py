"""Which runs a parsed filter selects, and in what order: the host's query semantics
(``store/src/query/sql.rs``) evaluated in Python over rows read from the read views.

The views are read with plain ``SELECT``s that both backends answer alike; every comparison,
aggregate and sort happens here, so a query selects the same runs from SQLite and PostgreSQL.
What a key means:

* ``metrics.NAME``: the final value, else the last epoch's; ``.min`` ``.max`` ``.mean`` over
  the epochs' values, ``.first`` ``.last`` the first and last epoch's; ``@epoch=N`` that epoch's.
  A value that is not a finite number counts as missing.
* ``params.KEY``: compared with a number, numbers only (as numbers); with text, a string's
  text or any other value's JSON text (``'[8, 4]'`` does not equal ``[8,4]``); with true or
  false, the JSON text ``true`` or ``false``.
* ``tags.KEY``: the newest value; a removed tag (NULL value) is no tag.
* ``data.sha256``, ``plugin.sha256``, ``sha256``: any digest of the run's data files, plugin
  builds, or either, starting with the (case-insensitive) prefix.
* ``verified``: the newest verification passed; never verified is not verified.

A comparison with a value the run lacks is false, so ``not`` of it holds.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ._store import Store
from .query import And, Compare, Expr, Holds, In, IsNull, Key, Like, Literal, Not, Or, Order

#: The columns of ``runs_v1``, as docs/reading-the-store.md pins them.
RUNS_V1_COLUMNS = (
    "run_id",
    "experiment",
    "status",
    "started_at",
    "finished_at",
    "hostname",
    "config_file",
    "config_sha256",
    "dataset_sha256",
    "seed",
    "threads",
    "host_version",
    "git_commit",
    "git_dirty",
    "output_dir",
    "error",
    "failed_stage",
    "replay_of",
    "sweep_id",
    "trial",
    "loader_class",
    "loader_sha256",
    "model_class",
    "model_sha256",
    "report_class",
    "report_sha256",
    "verified",
)

#: The ``runs_v1`` column of each attribute the language names differently.
ATTRIBUTE_COLUMNS = {"sweep": "sweep_id"}
#: The ``runs_v1`` columns of each plugin kind (as stored): its class and its library's digest.
PLUGIN_COLUMNS = {
    "Loader": ("loader_class", "loader_sha256"),
    "Model": ("model_class", "model_sha256"),
    "ReportGenerator": ("report_class", "report_sha256"),
}
#: The kinds of file a run records as its data.
DATA_KINDS = ("raw", "dataset", "split")

Run = Dict[str, Any]

_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))?"
)


def parse_time(text: Optional[str]) -> Optional[datetime]:
    """An RFC 3339 time as an aware datetime (UTC when it names no zone); None when absent or
    unreadable."""
    if text is None:
        return None
    match = _TIME.fullmatch(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    micro = int((match.group(7) or "0")[:6].ljust(6, "0"))
    offset = timedelta(0)
    if match.group(9):
        offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        offset = -offset if match.group(9) == "-" else offset
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone(offset)).astimezone(
            timezone.utc
        )
    except ValueError:
        return None


def duration(run: Run) -> Optional[float]:
    """Seconds from the run's start to its end; None while it runs."""
    started, finished = parse_time(run["started_at"]), parse_time(run["finished_at"])
    if started is None or finished is None:
        return None
    return (finished - started).total_seconds()


def finite(value: Any) -> Optional[float]:
    """A metric's value as a float, or None when it is absent or not a finite number."""
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def load_runs(store: Store) -> List[Run]:
    """Every run's row of ``runs_v1``, with ``verified`` as 0, 1 or None."""
    rows = store.read(f"SELECT {', '.join(RUNS_V1_COLUMNS)} FROM runs_v1")
    runs = []
    for row in rows:
        run = dict(zip(RUNS_V1_COLUMNS, row))
        for flag in ("verified", "git_dirty"):
            run[flag] = None if run[flag] is None else int(run[flag])
        runs.append(run)
    return runs


class MetricSeries:
    """One metric of one run: its final value (if recorded) and its per-epoch values."""

    __slots__ = ("has_final", "final", "epochs")

    def __init__(self) -> None:
        self.has_final = False
        self.final: Optional[float] = None
        self.epochs: Dict[int, Optional[float]] = {}

    def add(self, step: Optional[int], value: Any) -> None:
        """Adds a row of ``metrics_v1``."""
        if step is None:
            if not self.has_final:
                self.has_final, self.final = True, finite(value)
        else:
            self.epochs[int(step)] = finite(value)

    def value(self, aggregate: Optional[str] = None, epoch: Optional[int] = None) -> Optional[float]:
        """The value a metric key reads: the final one, else the last epoch's; an aggregate
        over the epochs; or one epoch's."""
        if epoch is not None:
            return self.epochs.get(epoch)
        if aggregate is None:
            if self.final is not None:
                return self.final
            return self.epochs[max(self.epochs)] if self.epochs else None
        if aggregate in ("first", "last"):
            if not self.epochs:
                return None
            return self.epochs[min(self.epochs) if aggregate == "first" else max(self.epochs)]
        values = [v for v in self.epochs.values() if v is not None]
        if not values:
            return None
        if aggregate == "min":
            return min(values)
        if aggregate == "max":
            return max(values)
        return math.fsum(values) / len(values)


def like(value: str, pattern: str) -> bool:
    """SQL ``LIKE`` with ``\\`` as the escape: ``%`` any text, ``_`` any one character, ASCII
    letters matched in either case. A pattern ending in a lone ``\\`` matches nothing."""
    parts = []
    index = 0
    while index < len(pattern):
        c = pattern[index]
        if c == "\\":
            if index + 1 == len(pattern):
                return False
            parts.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        parts.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        index += 1
    return re.fullmatch("".join(parts), value, re.DOTALL | re.IGNORECASE | re.ASCII) is not None


def _compare(left: Any, op: str, right: Any) -> bool:
    """``left op right``, false when ``left`` is missing."""
    if left is None:
        return False
    if op == "=":
        return bool(left == right)
    if op == "<>":
        return bool(left != right)
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


class RunIndex:
    """The store's runs, with what keys read of them loaded from the views on first use."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.runs = load_runs(store)
        self._metrics: Dict[str, Dict[str, MetricSeries]] = {}
        self._params: Dict[str, Dict[str, Tuple[str, str]]] = {}
        self._tags: Optional[Dict[Tuple[str, str], Optional[str]]] = None
        self._digests: Dict[str, Dict[str, Set[str]]] = {}

    # What keys read ------------------------------------------------------------------------

    def metric(self, name: str) -> Dict[str, MetricSeries]:
        """Every run's series of the metric ``name``, by run id."""
        if name not in self._metrics:
            series: Dict[str, MetricSeries] = {}
            for run_id, step, value in self.store.read(
                "SELECT run_id, step, value FROM metrics_v1 WHERE name = ?", [name]
            ):
                series.setdefault(run_id, MetricSeries()).add(step, value)
            self._metrics[name] = series
        return self._metrics[name]

    def param(self, name: str) -> Dict[str, Tuple[str, str]]:
        """Every run's ``(type, value_json)`` of the parameter ``name``, by run id."""
        if name not in self._params:
            rows = self.store.read("SELECT run_id, type, value_json FROM parameters_v1 WHERE name = ?", [name])
            self._params[name] = {run_id: (kind, value) for run_id, kind, value in rows}
        return self._params[name]

    def tags(self) -> Dict[Tuple[str, str], Optional[str]]:
        """Every run's current tags: ``(run id, key)`` to the newest value (None: removed)."""
        if self._tags is None:
            self._tags = current_tags(
                self.store.read("SELECT run_id, kind, name, value, seq FROM annotations_v1")
            )
        return self._tags

    def digests(self, kind: str) -> Dict[str, Set[str]]:
        """Every run's digests of a many-valued key kind, by run id."""
        if kind not in self._digests:
            found: Dict[str, Set[str]] = {}
            if kind in ("data_sha256", "any_sha256"):
                where = "" if kind == "any_sha256" else f" WHERE kind IN ({', '.join(repr(k) for k in DATA_KINDS)})"
                for run_id, sha256 in self.store.read(f"SELECT run_id, sha256 FROM files_v1{where}"):
                    found.setdefault(run_id, set()).add(sha256)
            if kind in ("plugin_sha256", "any_sha256"):
                for run in self.runs:
                    for _, sha_column in PLUGIN_COLUMNS.values():
                        if run[sha_column] is not None:
                            found.setdefault(run["run_id"], set()).add(run[sha_column])
            self._digests[kind] = found
        return self._digests[kind]

    def value(self, key: Key, shape: str, run: Run) -> Any:
        """The run's one value of ``key``: ``shape`` is ``real`` (a number), ``text`` or
        ``json`` (a parameter's JSON text), which only parameters read differently."""
        run_id = run["run_id"]
        if key.kind == "metric":
            series = self.metric(key.name).get(run_id)
            return series.value(key.aggregate, key.epoch) if series else None
        if key.kind == "param":
            found = self.param(key.name).get(run_id)
            if found is None:
                return None
            kind, value_json = found
            if shape == "real":
                return float(value_json) if kind in ("integer", "number") else None
            if shape == "text" and kind == "string":
                return json.loads(value_json)
            return value_json
        if key.kind == "attribute":
            if key.name == "duration":
                return duration(run)
            return run[ATTRIBUTE_COLUMNS.get(key.name, key.name)]
        if key.kind == "tag":
            return self.tags().get((run_id, key.name))
        if key.kind == "plugin_class":
            return run[PLUGIN_COLUMNS[key.name][0]]
        if key.kind == "verified":
            return run["verified"]
        raise ValueError(f"{key.canonical()} has several values per run")

    # Conditions ----------------------------------------------------------------------------

    def has_digest(self, key: Key, prefixes: Sequence[str], run: Run) -> bool:
        """Whether one of the run's digests of ``key`` starts with one of ``prefixes``; with
        none, whether it has any."""
        digests = self.digests(key.kind).get(run["run_id"], set())
        if not prefixes:
            return bool(digests)
        lowered = tuple(prefix.lower() for prefix in prefixes)
        return any(digest.startswith(lowered) for digest in digests)

    def compare(self, key: Key, op: str, value: Literal, run: Run) -> bool:
        """``key op value`` for the run."""
        if key.many:
            has = self.has_digest(key, [value if isinstance(value, str) else ""], run)
            return not has if op == "<>" else has
        if isinstance(value, bool):
            if key.kind == "verified":
                # Unverified (no verification) is not verified: `verified = false` holds.
                verified = run["verified"] == 1
                return verified if (op == "=") == value else not verified
            shape = "json" if key.kind == "param" else "text"
            return _compare(self.value(key, shape, run), op, "true" if value else "false")
        if isinstance(value, float):
            left = self.value(key, "real", run)
            return _compare(None if left is None else float(left), op, value)
        return _compare(self.value(key, "text", run), op, value)

    def holds(self, expr: Expr, run: Run) -> bool:
        """Whether the run meets ``expr``."""
        if isinstance(expr, And):
            return self.holds(expr.left, run) and self.holds(expr.right, run)
        if isinstance(expr, Or):
            return self.holds(expr.left, run) or self.holds(expr.right, run)
        if isinstance(expr, Not):
            return not self.holds(expr.inner, run)
        if isinstance(expr, Compare):
            return self.compare(expr.key, expr.op, expr.value, run)
        if isinstance(expr, In):
            if expr.key.many:
                found = self.has_digest(expr.key, [v for v in expr.values if isinstance(v, str)], run)
            else:
                found = any(self.compare(expr.key, "=", value, run) for value in expr.values)
            return found != expr.negated
        if isinstance(expr, Like):
            text = self.value(expr.key, "text", run)
            return (text is not None and like(str(text), expr.pattern)) != expr.negated
        if isinstance(expr, IsNull):
            if expr.key.many:
                missing = not self.has_digest(expr.key, [], run)
            else:
                missing = self.value(expr.key, "json", run) is None
            return missing != expr.negated
        assert isinstance(expr, Holds)
        return self.compare(expr.key, "=", True, run)

    # Selecting and sorting -----------------------------------------------------------------

    def select(self, expr: Optional[Expr], orders: Sequence[Order]) -> List[Run]:
        """The runs meeting ``expr`` (all without one), sorted by ``orders``, ties (and no
        order) newest first."""
        runs = [run for run in self.runs if expr is None or self.holds(expr, run)]
        terms: List[Tuple[Callable[[Run], Any], bool]] = []
        for order in orders:
            if order.key.kind == "param":
                # Numbers by value, then the rest as text.
                terms.append((self._reader(order.key, "real"), order.descending))
            terms.append((self._reader(order.key, "text"), order.descending))
        terms.append((lambda run: run["started_at"], True))
        terms.append((lambda run: run["run_id"], True))
        # Stable sorts from the last term to the first, each with missing values last.
        for read, descending in reversed(terms):
            if descending:
                runs.sort(key=lambda run: _present_first(read(run)), reverse=True)
            else:
                runs.sort(key=lambda run: _missing_last(read(run)))
        return runs

    def _reader(self, key: Key, shape: str) -> Callable[[Run], Any]:
        return lambda run: self.value(key, shape, run)


def _missing_last(value: Any) -> Tuple[bool, Any]:
    """An ascending sort key that puts missing values last."""
    return (value is None, value)


def _present_first(value: Any) -> Tuple[bool, Any]:
    """A descending (reversed) sort key that puts missing values last."""
    return (value is not None, value)


def current_tags(rows: Iterable[Sequence[Any]]) -> Dict[Tuple[str, str], Optional[str]]:
    """The current tags from ``annotations_v1`` rows ``(run_id, kind, name, value, seq)``: per
    run and key, the newest value (None: removed). Newest is the highest ``seq``, the order the
    host wrote them in, as the host itself reads tags (``created_at`` has one-second
    resolution, and a tag set and removed in the same second is common)."""
    newest: Dict[Tuple[str, str], Tuple[int, Optional[str]]] = {}
    for run_id, kind, name, value, seq in rows:
        if kind != "tag" or name is None:
            continue
        seen = newest.get((run_id, name))
        if seen is None or seq > seen[0]:
            newest[(run_id, name)] = (seq, value)
    return {key: value for key, (_, value) in newest.items()}
