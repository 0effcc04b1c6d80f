"""Opening a provenance store for reading: a SQLite file read-only, or PostgreSQL through psycopg
in read-only transactions. Only the read views (``runs_v1`` ...) are ever queried, never the
tables behind them; no statement here writes.
"""

from __future__ import annotations

import os
import re
import sqlite3
import urllib.parse
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

__all__ = ["Store", "StoreError", "open", "resolve_locator"]

#: What a store is given as: a SQLite file path, a postgres:// URL, or a store already open.
StoreLike = Union["Store", str, "os.PathLike[str]", None]

#: How many run ids one ``IN (...)`` list binds.
_CHUNK = 500


class StoreError(RuntimeError):
    """A store that cannot be opened or read, or a run it does not hold."""


def _database_config_locator(config: Path) -> Optional[str]:
    """``url`` (or else ``path``) of ``config/database_config.yaml``, read as the host does for
    those two top-level keys; None when the file or both keys are absent."""
    try:
        text = config.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    values = {}
    for line in text.splitlines():
        match = re.match(r"(url|path):\s*(.*)$", line)
        if not match:
            continue
        value = re.sub(r"\s+#.*$", "", match.group(2)).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if value and not value.startswith("#"):
            values[match.group(1)] = value
    return values.get("url") or values.get("path")


def resolve_locator(store: Union[str, "os.PathLike[str]", None]) -> str:
    """The store's locator as the host would choose it: the argument, else ``HOST_DB``, else
    ``url`` or ``path`` in ``config/database_config.yaml`` (relative to the working folder),
    else ``provenance.db``."""
    if store is not None:
        return os.fspath(store)
    from_env = os.environ.get("HOST_DB")
    if from_env:
        return from_env
    return _database_config_locator(Path("config") / "database_config.yaml") or "provenance.db"


def _percent_decode(text: str, shown: str) -> str:
    """Decodes ``%XX`` escapes, refusing malformed ones as the host does."""
    out = bytearray()
    index = 0
    raw = text.encode("utf-8")
    while index < len(raw):
        if raw[index] == ord("%"):
            digits = raw[index + 1 : index + 3].decode("ascii", errors="replace")
            if len(digits) < 2 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise StoreError(f"malformed PostgreSQL URL `{shown}`: a % escape is not hexadecimal or cut short")
            out.append(int(digits, 16))
            index += 3
        else:
            out.append(raw[index])
            index += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise StoreError(f"malformed PostgreSQL URL `{shown}`: an escape is not UTF-8") from None


def _split_postgres_url(url: str) -> Tuple[str, Optional[str]]:
    """A postgres:// URL without its password, and the password, as the host reads them: the
    user and password end at the last ``@`` (a password may hold ``/``, ``?`` or ``@``
    unencoded), or the password is a ``password=`` option."""
    rest = url.split("://", 1)[1]
    user = None
    written = None
    if "@" in rest:
        at = rest.rindex("@")
        user, rest = rest[:at], rest[at + 1 :]
        if ":" in user:
            user, written = user.split(":", 1)
    end = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))
    hosts, tail = rest[:end], rest[end:]
    from_option = None
    if "?" in tail:
        path, query = tail.split("?", 1)
        kept = []
        for option in query.split("&"):
            if option.startswith("password="):
                from_option = option[len("password=") :]
            else:
                kept.append(option)
        tail = path + ("?" + "&".join(kept) if any(kept) else "")
    shown = f"postgres://{user + '@' if user is not None else ''}{hosts}{tail}"
    password = written if written is not None else from_option
    return shown, None if password is None else _percent_decode(password, shown)


class Store:
    """An open provenance store, for reading. Use it as a context manager, or call
    :meth:`close`; the functions of :mod:`hoststore` take it (or a locator) first."""

    def __init__(self, connection: Any, backend: str, locator: str) -> None:
        self._connection = connection
        #: ``sqlite`` or ``postgres``.
        self.backend = backend
        #: Where the store is, as messages name it (never with a password).
        self.locator = locator
        self._snapshot_depth = 0

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<hoststore.Store {self.backend} {self.locator}>"

    def close(self) -> None:
        """Closes the connection."""
        self._connection.close()

    @contextmanager
    def snapshot(self) -> Iterator["Store"]:
        """Reads in one read-only transaction: every read inside sees the same runs, even while
        the host records others. Nested uses share the outer transaction."""
        if self._snapshot_depth:
            self._snapshot_depth += 1
            try:
                yield self
            finally:
                self._snapshot_depth -= 1
            return
        begin = "BEGIN" if self.backend == "sqlite" else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        self._connection.execute(begin)
        self._snapshot_depth = 1
        try:
            yield self
        finally:
            self._snapshot_depth = 0
            self._connection.execute("ROLLBACK")

    def read(self, sql: str, parameters: Sequence[Any] = ()) -> List[Tuple[Any, ...]]:
        """Runs one query over the read views (written with ``?`` placeholders) and returns its
        rows."""
        if self.backend == "postgres":
            sql = sql.replace("?", "%s")
        try:
            cursor = self._connection.execute(sql, tuple(parameters))
            return [tuple(row) for row in cursor.fetchall()]
        except Exception as error:  # the driver's own error types differ by backend
            if self._is_missing_view(error):
                raise StoreError(
                    f"{self.locator}: this store lacks the read views this reader needs (runs_v1 ..., "
                    "annotations_v1.seq): it is older than schema 10 or "
                    "not a provenance store; any `host` command of this version upgrades it "
                    f"(`host runs list --db {self.locator}`)"
                ) from error
            raise StoreError(f"{self.locator}: cannot read the store: {error}") from error

    def read_for_runs(
        self, sql: str, run_ids: Sequence[str], parameters: Sequence[Any] = ()
    ) -> List[Tuple[Any, ...]]:
        """Runs ``sql``, whose ``{runs}`` stands for a list of placeholders, once per chunk of
        ``run_ids`` (bound after ``parameters``), and returns every chunk's rows."""
        rows: List[Tuple[Any, ...]] = []
        for start in range(0, len(run_ids), _CHUNK):
            chunk = list(run_ids[start : start + _CHUNK])
            rows.extend(self.read(sql.format(runs=", ".join("?" * len(chunk))), [*parameters, *chunk]))
        return rows

    def _is_missing_view(self, error: Exception) -> bool:
        message = str(error)
        if self.backend == "sqlite":
            return ("no such table: " in message and "_v1" in message) or "no such column: seq" in message
        return type(error).__name__ in ("UndefinedTable", "UndefinedColumn")


def _open_sqlite(path: Path) -> Store:
    shown = str(path)
    if not path.exists():
        raise StoreError(
            f"{shown}: no provenance store here; `host run` creates it, or give the store as a path, a "
            "postgres:// URL or HOST_DB"
        )
    if path.is_dir():
        raise StoreError(f"{shown}: a folder, not a provenance store; give the store's file (provenance.db)")

    def connect(option: str) -> sqlite3.Connection:
        uri = f"file:{urllib.parse.quote(str(path.resolve()))}?{option}"
        connection = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        try:
            # Belt and braces: the file is opened read-only, and the connection refuses writes.
            connection.execute("PRAGMA query_only = ON")
            connection.execute("SELECT 1 FROM runs_v1 LIMIT 0").fetchall()
        except sqlite3.DatabaseError:
            connection.close()
            raise
        return connection

    try:
        connection = connect("mode=ro")
    except sqlite3.DatabaseError as error:
        if "no such table: runs_v1" in str(error) and _is_mlflow_store(path):
            raise StoreError(
                f"{shown}: this is an MLflow store, not a host provenance store; give the store `host` records "
                "into (its --db, HOST_DB, or provenance.db)"
            ) from error
        if "no such table: runs_v1" in str(error):
            raise StoreError(
                f"{shown}: this store has no read views (runs_v1 ...): it is older than schema 9 or not a "
                f"provenance store; any `host` command of this version upgrades it (`host runs list --db {shown}`)"
            ) from error
        if not _wal_without_index(path):
            raise StoreError(f"{shown}: cannot read the provenance store: {error}") from error
        # A WAL store needs its -shm file, which a reader cannot create in a folder it may not
        # write: read the file as it is, as the host does, since nobody can be writing there.
        try:
            connection = connect("immutable=1")
        except sqlite3.DatabaseError as again:
            raise StoreError(f"{shown}: cannot read the provenance store: {again}") from again
    return Store(connection, "sqlite", shown)


def _is_mlflow_store(path: Path) -> bool:
    """Whether the SQLite file at ``path`` is an MLflow tracking store (its migrations table)."""
    try:
        uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as connection:
            found = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            ).fetchall()
    except sqlite3.DatabaseError:
        return False
    return bool(found)


def _wal_without_index(path: Path) -> bool:
    """Whether the file is a WAL-mode database with no -shm index and no pending -wal."""
    try:
        with path.open("rb") as file:
            header = file.read(20)
    except OSError:
        return False
    wal = Path(f"{path}-wal")
    wal_empty = not wal.exists() or wal.stat().st_size == 0
    return len(header) == 20 and header[18] == 2 and wal_empty and not Path(f"{path}-shm").exists()


def _open_postgres(url: str) -> Store:
    shown, password = _split_postgres_url(url)
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            f"{shown}: reading a PostgreSQL store needs psycopg: pip install 'hoststore[postgres]'"
        ) from None
    options = {"autocommit": True, "connect_timeout": 10}
    if password is not None:
        options["password"] = password
    try:
        connection = psycopg.connect(shown, **options)
    except psycopg.Error as error:
        raise StoreError(f"{shown}: cannot connect to the provenance store: {error}") from error
    # Every transaction of this session is read-only: the server refuses any write.
    connection.execute("SET default_transaction_read_only = on")
    store = Store(connection, "postgres", shown)
    try:
        store.read("SELECT 1 FROM runs_v1 LIMIT 0")
    except StoreError:
        connection.close()
        raise
    return store


def open(store: StoreLike = None) -> Store:  # noqa: A001 - the package's verb, as in sqlite3.connect
    """Opens a provenance store for reading.

    ``store`` is a SQLite file's path (opened read-only: nothing is created, migrated or
    written), a ``postgres://`` or ``postgresql://`` URL (read through psycopg in read-only
    transactions), or a :class:`Store` already open (returned as is). ``None`` chooses the
    store as ``host`` does: ``HOST_DB``, else ``config/database_config.yaml``'s ``url`` or
    ``path``, else ``provenance.db``.
    """
    if isinstance(store, Store):
        return store
    locator = resolve_locator(store)
    if not locator.strip():
        raise StoreError(
            "no store given (an empty path, HOST_DB or url): give a SQLite file path or "
            "postgres://user@host:port/database"
        )
    if "://" in locator:
        scheme = locator.split("://", 1)[0]
        if scheme.lower() not in ("postgres", "postgresql"):
            raise StoreError(
                f"unknown store URL scheme `{scheme}`; use postgres://user@host:port/database or a SQLite file path"
            )
        return _open_postgres(locator)
    lower = locator.lower()
    for scheme in ("postgresql:", "postgres:"):
        if lower.startswith(scheme):
            raise StoreError(
                f"`{locator[: len(scheme)]}...` is not a PostgreSQL URL: write postgres://user@host:port/database "
                "(two slashes)"
            )
    if locator == ":memory:" or lower.startswith("file:"):
        raise StoreError(f"`{locator}` is a SQLite in-memory or URI name: give the store's file path")
    return _open_sqlite(Path(locator).expanduser())


@contextmanager
def opened(store: StoreLike) -> Iterator[Store]:
    """The store ``store`` names, open for one call: closed after it unless it came open."""
    if isinstance(store, Store):
        yield store
        return
    with open(store) as opened_store:
        yield opened_store
