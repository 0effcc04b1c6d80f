"""Read a ``host`` provenance store from Python: runs as DataFrames with MLflow's column names,
metric histories, a run's files (rehashed on demand) and its lineage.

Only the store's versioned read views (``runs_v1``, ``parameters_v1``, ``metrics_v1``,
``files_v1``, ``lineage_v1``, ``annotations_v1``; docs/reading-the-store.md) are read, never the
tables behind them, and never written: a SQLite file is opened read-only, a PostgreSQL session
runs read-only transactions. Filters and orders are the language of ``host runs list
--filter/--order-by``, selecting the same runs on both backends.

    import hoststore

    runs = hoststore.search_runs("provenance.db", filter="metrics.test.accuracy > 0.9",
                                 order_by="metrics.test.accuracy desc")
    history = hoststore.metric_history("provenance.db", runs["run_id"], names="loss")
"""

from ._api import files, lineage, metric_history, search_runs, verify_files
from ._store import Store, StoreError, open
from ._table import Table
from .files import File, FileCheck, NotAFileError
from .query import QueryError, parse_filter, parse_order

__version__ = "0.1.0"

__all__ = [
    "File",
    "FileCheck",
    "NotAFileError",
    "QueryError",
    "Store",
    "StoreError",
    "Table",
    "files",
    "lineage",
    "metric_history",
    "open",
    "parse_filter",
    "parse_order",
    "search_runs",
    "verify_files",
]
