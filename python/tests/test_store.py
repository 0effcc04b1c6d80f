"""Opening stores: read-only on both backends, the host's choice of store, and errors that say
what to do."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

import hoststore
from conftest import built, write_query_runs
from hoststore._store import _split_postgres_url, resolve_locator


def test_reading_a_sqlite_store_leaves_its_file_unchanged_and_writes_fail(
    store_fixture_binary: Path, tmp_path: Path
) -> None:
    path = Path(write_query_runs(store_fixture_binary, str(tmp_path / "store.db")))
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    with hoststore.open(path) as store:
        assert len(hoststore.search_runs(store, filter="metrics.loss.min < 1 and tags.owner is not null")) == 2
        hoststore.metric_history(store, "a")
        hoststore.files(store, "a")
        hoststore.lineage(store, "a")
        with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|query_only"):
            store._connection.execute("DELETE FROM annotations")
        store._connection.execute("PRAGMA query_only = OFF")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store._connection.execute("CREATE TABLE mine (a)")
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_a_postgres_session_only_reads(postgres_query_store: str) -> None:
    import psycopg

    with hoststore.open(postgres_query_store) as store:
        for write in ("CREATE TABLE mine (a int)", "DELETE FROM annotations"):
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                store._connection.execute(write)
        with store.snapshot(), store.snapshot():
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                store._connection.execute("DELETE FROM annotations")
        assert len(hoststore.search_runs(store, filter="tags.owner = 'ana'")) == 2


def test_an_open_store_is_used_as_it_is_and_left_open(sqlite_query_store: str) -> None:
    with hoststore.open(sqlite_query_store) as store:
        assert hoststore.open(store) is store
        assert store.backend == "sqlite" and store.locator == sqlite_query_store
        hoststore.search_runs(store)
        assert len(hoststore.search_runs(store)) == 4, "still open"


def test_a_missing_store_is_named_with_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "provenance.db"
    with pytest.raises(hoststore.StoreError) as raised:
        hoststore.open(missing)
    assert str(raised.value) == (
        f"{missing}: no provenance store here; `host run` creates it, or give the store as a path, a postgres:// "
        "URL or HOST_DB"
    )
    assert not missing.parent.exists(), "nothing created"


def test_what_is_not_a_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(hoststore.StoreError, match="a folder, not a provenance store"):
        hoststore.open(tmp_path)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database, " * 100)
    with pytest.raises(hoststore.StoreError, match="garbage.db: cannot read the provenance store"):
        hoststore.open(garbage)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE runs (run_id TEXT)").connection.close()
    with pytest.raises(hoststore.StoreError, match=r"no read views \(runs_v1 \.\.\.\).*host runs list --db"):
        hoststore.open(other)
    mlflow_store = tmp_path / "mlflow.db"
    sqlite3.connect(mlflow_store).execute("CREATE TABLE alembic_version (version_num TEXT)").connection.close()
    with pytest.raises(hoststore.StoreError, match="this is an MLflow store, not a host provenance store"):
        hoststore.open(mlflow_store)


@pytest.mark.parametrize(
    "locator, message",
    [
        ("mysql://h/db", "unknown store URL scheme `mysql`; use postgres://user@host:port/database or a SQLite file"),
        ("postgres:/ana@h/db", "`postgres:...` is not a PostgreSQL URL: write postgres://user@host:port/database"),
        (":memory:", "`:memory:` is a SQLite in-memory or URI name"),
        ("file:runs.db?mode=memory", "is a SQLite in-memory or URI name"),
        ("  ", "no store given"),
    ],
)
def test_locators_the_host_refuses_are_refused(locator: str, message: str) -> None:
    with pytest.raises(hoststore.StoreError, match=message.replace("(", r"\(").replace(".", r"\.")):
        hoststore.open(locator)


def test_without_a_store_the_hosts_default_is_read(
    sqlite_query_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOST_DB", sqlite_query_store)
    assert list(hoststore.search_runs(None, filter="run = 'a'")["run_id"]) == ["a"]
    monkeypatch.delenv("HOST_DB")
    assert resolve_locator(None) == "provenance.db"
    config = tmp_path / "config" / "database_config.yaml"
    config.parent.mkdir()
    config.write_text("# the store\npath: 'stores/x.db'   # relative\ntimeout_seconds: 30\n")
    assert resolve_locator(None) == "stores/x.db"
    config.write_text("path: stores/x.db\n# url: postgres://nobody@h/db\nurl: postgres://ana@db:5432/runs\n")
    assert resolve_locator(None) == "postgres://ana@db:5432/runs", "url wins over path"
    config.unlink()
    with pytest.raises(hoststore.StoreError, match="^provenance.db: no provenance store here"):
        hoststore.open()


def test_without_psycopg_a_postgres_store_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(hoststore.StoreError, match=r"needs psycopg: pip install 'hoststore\[postgres\]'"):
        hoststore.open("postgres://ana@127.0.0.1:1/runs")


def test_an_unreachable_server_is_named_without_its_password() -> None:
    with pytest.raises(hoststore.StoreError) as raised:
        hoststore.open("postgresql://ana:s3cret@127.0.0.1:1/runs?connect_timeout=2")
    assert str(raised.value).startswith("postgres://ana@127.0.0.1:1/runs?connect_timeout=2: cannot connect")
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize(
    "url, shown, password",
    [
        (
            "postgresql://ana:s%40cr%3At@db.example:5433/runs?sslmode=require",
            "postgres://ana@db.example:5433/runs?sslmode=require",
            "s@cr:t",
        ),
        ("postgres://127.0.0.1:5432/db", "postgres://127.0.0.1:5432/db", None),
        ("postgres://dan:top/secret@127.0.0.1:5432/runs", "postgres://dan@127.0.0.1:5432/runs", "top/secret"),
        ("postgres://eve:a?b@h/db?sslmode=require", "postgres://eve@h/db?sslmode=require", "a?b"),
        ("postgres://bob@h:5/db?password=SECRETQ", "postgres://bob@h:5/db", "SECRETQ"),
        ("postgres://bob@h/db?sslmode=require&password=S%26Q&x=1", "postgres://bob@h/db?sslmode=require&x=1", "S&Q"),
    ],
)
def test_a_password_is_kept_apart_as_the_host_keeps_it(url: str, shown: str, password: str) -> None:
    assert _split_postgres_url(url) == (shown, password)


def test_a_missing_binary_names_the_build() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"no-such-binary is missing: run `cargo build --workspace`"):
        built("no-such-binary")


def test_a_malformed_escape_is_refused_without_showing_the_password() -> None:
    with pytest.raises(hoststore.StoreError) as raised:
        _split_postgres_url("postgres://ana:p%zzsecret@h/db")
    assert "secret" not in str(raised.value)

