"""Fixtures: the workspace's built binaries, a throwaway PostgreSQL cluster, the query
language's fixture runs on both backends, and stores holding real ``host run`` and ``host
sweep`` runs on both backends.

Nothing is skipped: a missing binary or a cluster that cannot start fails the tests that need
it, with the fix (``cargo build --workspace``; ``scripts/setup.sh`` installs PostgreSQL).
"""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Fresh databases the cluster makes at its start; tests take them one by one.
DATABASES = 12
#: How long the cluster may take to start, in seconds.
CLUSTER_START_SECONDS = 120
BACKENDS = ("sqlite", "postgres")


def target_dir() -> Path:
    """Cargo's target folder, as the Rust tests find it."""
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))


def built(name: str) -> Path:
    """A binary or library of the workspace's debug build; fails when it is missing."""
    path = target_dir() / "debug" / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `cargo build --workspace` (scripts/test.sh does)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The workspace's root folder."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def host_binary() -> Path:
    """``target/debug/host``."""
    return built("host")


@pytest.fixture(scope="session")
def store_fixture_binary() -> Path:
    """``target/debug/store-fixture``: writes fixture runs, runs a throwaway cluster."""
    return built("store-fixture")


class HostRunner:
    """Runs ``host`` as the Rust end-to-end tests do: the store given with ``--db``, digests
    cached in a folder of the test session's, no user settings from the environment."""

    def __init__(self, binary: Path, cache_dir: Path) -> None:
        self.binary = binary
        self.cache_dir = cache_dir

    def environment(self) -> Dict[str, str]:
        """The environment ``host`` runs in."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("HOST_DB", "HOST_LOG", "HOST_CLASS_MAPPING", "HOST_PLUGINS_DIR")
        }
        env.update({"XDG_CACHE_HOME": str(self.cache_dir), "RUST_BACKTRACE": "0"})
        return env

    def __call__(
        self, *args: str, cwd: Path, db: Optional[str] = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        """``host ARGS [--db DB]`` in ``cwd``; fails the test on a non-zero exit when ``check``."""
        command = [str(self.binary), *args, *(["--db", db] if db is not None else [])]
        done = subprocess.run(command, cwd=cwd, env=self.environment(), capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            pytest.fail(
                f"`host {' '.join(args)}` exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}",
                pytrace=False,
            )
        return done

    def json(self, *args: str, cwd: Path, db: Optional[str] = None) -> Any:
        """``host ARGS`` (which must print JSON), its output parsed."""
        return json.loads(self(*args, cwd=cwd, db=db).stdout)


@pytest.fixture(scope="session")
def run_host(host_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> HostRunner:
    """Runs ``host``: ``run_host("runs", "show", RUN, "--json", cwd=DIR, db=STORE)``; ``.json(...)``
    parses what it prints."""
    return HostRunner(host_binary, tmp_path_factory.mktemp("host-cache"))


class PostgresCluster:
    """The throwaway cluster ``store-fixture postgres`` runs, with fresh databases to hand out."""

    def __init__(self, process: subprocess.Popen, urls: List[str]) -> None:
        self.process = process
        self._urls = list(urls)

    def database(self) -> str:
        """A fresh, empty database's URL."""
        if not self._urls:
            pytest.fail(f"the test cluster's {DATABASES} databases are all taken: raise DATABASES in conftest.py")
        return self._urls.pop(0)


@pytest.fixture(scope="session")
def postgres_cluster(store_fixture_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster on 127.0.0.1 for the session, stopped and removed after it."""
    log = (tmp_path_factory.mktemp("postgres") / "store-fixture.log").open("w+")
    process = subprocess.Popen(
        [str(store_fixture_binary), "postgres", "--databases", str(DATABASES)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    lines: "queue.Queue[Optional[str]]" = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.strip())
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    urls: List[str] = []
    try:
        while True:
            line = lines.get(timeout=CLUSTER_START_SECONDS)
            if line is None or line == "ready":
                break
            urls.append(line)
    except queue.Empty:
        line = None
    if line != "ready":
        process.kill()
        process.wait()
        log.seek(0)
        pytest.fail(
            "cannot start the test PostgreSQL cluster with `store-fixture postgres` (scripts/setup.sh installs "
            f"PostgreSQL):\n{log.read()}",
            pytrace=False,
        )
    try:
        yield PostgresCluster(process, urls)
    finally:
        # Closing its standard input stops the cluster and removes its folder.
        process.stdin.close()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def write_query_runs(store_fixture: Path, locator: str) -> str:
    """Writes the query language's fixture runs ``a`` to ``d`` into the store at ``locator``."""
    done = subprocess.run(
        [str(store_fixture), "query-runs", "--db", locator], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        pytest.fail(f"`store-fixture query-runs --db {locator}` failed:\n{done.stderr}", pytrace=False)
    return locator


@pytest.fixture(scope="session")
def sqlite_query_store(store_fixture_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store holding the conformance runs ``a`` to ``d`` (store/query-conformance.json)."""
    return write_query_runs(store_fixture_binary, str(tmp_path_factory.mktemp("query") / "query.db"))


@pytest.fixture(scope="session")
def postgres_query_store(store_fixture_binary: Path, postgres_cluster: PostgresCluster) -> str:
    """A PostgreSQL store holding the conformance runs ``a`` to ``d``."""
    return write_query_runs(store_fixture_binary, postgres_cluster.database())


@pytest.fixture(params=BACKENDS)
def query_store(request: pytest.FixtureRequest) -> str:
    """The conformance runs' store on each backend in turn."""
    return request.getfixturevalue(f"{request.param}_query_store")


# Real runs ------------------------------------------------------------------------------------

RUN_CONFIG = """\
experiment_name: {experiment}
threads: 1
seed: {seed}
plugins: {{data_loader: TableLoader, model: MLPRegressor{report}}}
data_loader: {{path: data/table.csv, target_columns: [y]}}
data_splitting: {{use_predefined_test: false, train_ratio: 0.7, val_ratio: 0.15, test_ratio: 0.15}}
preprocessing: {{normalize: standardize}}
model: {{hidden_layers: [8]}}
training: {{epochs: 3, batch_size: 32, learning_rate: {learning_rate}}}
"""

SWEEP = """\
sweep:
  method: grid
  metric: validation.rmse
  direction: minimize
  parameters:
    training.learning_rate: [0.003, 0.03, 0.3]
"""


def make_project(folder: Path) -> Path:
    """A project folder: the plugins' class mapping (the workspace's debug builds), a small
    regression table (y = 3a - 2b + 10 + noise), run configs ``config/a.yaml`` and
    ``config/b.yaml`` and a three-trial sweep ``config/sweep.yaml``."""
    (folder / "config").mkdir(parents=True)
    (folder / "data").mkdir()
    tabular, linear = built("libtabular_plugin.so"), built("liblinear_plugin.so")
    (folder / "config" / "class_mapping_config.yaml").write_text(
        f"Loader:\n  TableLoader: {tabular}\n"
        f"Model:\n  MLPRegressor: {tabular}\n  LinearRegression: {linear}\n"
        f"ReportGenerator:\n  RegressionReport: {tabular}\n"
    )
    numbers = random.Random(7)
    rows = ["a,b,c,y"]
    for _ in range(160):
        a, b, c = (round(numbers.uniform(-10, 10), 2) for _ in range(3))
        rows.append(f"{a},{b},{c},{round(3 * a - 2 * b + 10 + numbers.gauss(0, 1), 3)}")
    (folder / "data" / "table.csv").write_text("\n".join(rows) + "\n")
    report = ", report_generator: RegressionReport"
    for name, seed, rate in (("a", 1, 0.01), ("b", 2, 0.05)):
        config = RUN_CONFIG.format(experiment="pytest_table", seed=seed, report=report, learning_rate=rate)
        (folder / "config" / f"{name}.yaml").write_text(config)
    sweep = RUN_CONFIG.format(experiment="pytest_sweep", seed=3, report="", learning_rate=0.01) + SWEEP
    (folder / "config" / "sweep.yaml").write_text(sweep)
    return folder


@dataclass
class RealStore:
    """A store on one backend holding real runs: ``run_ids`` (two ``host run``s of
    ``config/a.yaml`` and ``config/b.yaml``, in that order), and the trials of one sweep."""

    backend: str
    #: The store, as ``--db`` takes it.
    locator: str
    #: The project folder the runs ran in (their outputs are under ``runs/``).
    project: Path
    run_ids: List[str]
    sweep_id: str
    #: The sweep's trial runs, by trial number.
    trial_run_ids: List[str]
    #: Tagged ``owner=ana`` (and ``stage=draft``, then removed).
    tagged_run_id: str
    #: Checked by ``host verify`` (passed).
    verified_run_id: str

    @property
    def all_run_ids(self) -> List[str]:
        """Every run of the store."""
        return [*self.run_ids, *self.trial_run_ids]


@dataclass
class RealStores:
    """The real runs on both backends: ``sqlite`` is the SQLite store's path, ``postgres`` the
    PostgreSQL store's URL; ``stores[backend]`` (or ``real_stores[backend]``) the details."""

    sqlite: str
    postgres: str
    stores: Dict[str, RealStore] = field(default_factory=dict)

    def __getitem__(self, backend: str) -> RealStore:
        return self.stores[backend]


def record_real_runs(run_host: HostRunner, project: Path, backend: str, locator: str) -> RealStore:
    """Runs the project's two configs and its sweep into ``locator``, tags the first run and
    verifies the second."""
    run_ids = [
        run_host.json("run", f"config/{name}.yaml", "--json", cwd=project, db=locator)["run_id"] for name in "ab"
    ]
    sweep = run_host.json("sweep", "config/sweep.yaml", "--jobs", "2", "--json", cwd=project, db=locator)
    trials = sorted(sweep["trials"], key=lambda trial: trial["trial"])
    if any(trial["status"] != "completed" for trial in trials):
        pytest.fail(f"a sweep trial did not complete: {json.dumps(trials, indent=2)}", pytrace=False)
    run_host("runs", "tag", run_ids[0], "owner=ana", "stage=draft", cwd=project, db=locator)
    run_host("runs", "tag", run_ids[0], "stage=", cwd=project, db=locator)
    run_host("verify", run_ids[1], cwd=project, db=locator)
    return RealStore(
        backend=backend,
        locator=locator,
        project=project,
        run_ids=run_ids,
        sweep_id=sweep["sweep_id"],
        trial_run_ids=[trial["run_id"] for trial in trials],
        tagged_run_id=run_ids[0],
        verified_run_id=run_ids[1],
    )


@pytest.fixture(scope="session")
def real_stores(
    run_host: HostRunner, postgres_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> RealStores:
    """A SQLite and a PostgreSQL store, each holding two real runs (one tagged, one verified)
    and a three-trial sweep, recorded by ``host`` in a project folder of its own. Read-only for
    the tests: a test that changes runs or their files makes its own."""
    stores = {}
    for backend in BACKENDS:
        project = make_project(tmp_path_factory.mktemp(f"real-{backend}"))
        locator = str(project / "provenance.db") if backend == "sqlite" else postgres_cluster.database()
        stores[backend] = record_real_runs(run_host, project, backend, locator)
    return RealStores(sqlite=stores["sqlite"].locator, postgres=stores["postgres"].locator, stores=stores)


@pytest.fixture(params=BACKENDS)
def real_store(request: pytest.FixtureRequest, real_stores: RealStores) -> RealStore:
    """The real runs' store on each backend in turn."""
    return real_stores[request.param]


@pytest.fixture(params=BACKENDS)
def own_run(
    request: pytest.FixtureRequest, run_host: HostRunner, postgres_cluster: PostgresCluster, tmp_path: Path
) -> RealStore:
    """One real run of this test's own, in a fresh project and store on each backend, whose
    files the test may change."""
    project = make_project(tmp_path / "project")
    locator = str(project / "provenance.db") if request.param == "sqlite" else postgres_cluster.database()
    run_id = run_host.json("run", "config/a.yaml", "--json", cwd=project, db=locator)["run_id"]
    return RealStore(request.param, locator, project, [run_id], "", [], run_id, run_id)

