"""`host export --format mlflow`: into a real `mlflow server` on 127.0.0.1 (started here) and into
an MLflow SQLite store, from a SQLite and a PostgreSQL host store holding real runs and a sweep.
Everything is read back with MLflow's own client and compared value by value with the store."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

# A missing mlflow is an error, never a skip: scripts/setup.sh installs it.
import mlflow
from mlflow.tracking import MlflowClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server on 127.0.0.1 with its artifact proxy, stopped at the end
    (with the worker processes it starts: it runs in a process group of its own)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    log = open(root / "server.log", "w")
    server = subprocess.Popen(
        [
            str(mlflow_cli), "server",
            "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
            "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture
def host(host_binary, tmp_path):
    """Runs the host binary: its standard output, or with check=False the finished process."""

    def run(*args: str, check: bool = True):
        env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
        env.pop("MLFLOW_TRACKING_URI", None)
        done = subprocess.run([str(host_binary), *args], capture_output=True, text=True, env=env)
        if not check:
            return done
        assert done.returncode == 0, f"host {' '.join(args)}: {done.stderr}"
        return done.stdout

    return run


def export(host, db: str, to: str, *args: str) -> dict:
    out = host("export", "--db", db, "--format", "mlflow", "--to", to, "--json", *args)
    return json.loads(out)


def host_record(host, db: str, run_id: str) -> dict:
    return json.loads(host("export", run_id, "--db", db, "--format", "json"))


def param_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def flat(prefix: str, value, out: dict) -> dict:
    """A nested mapping as dotted keys, as the store flattens a config and final metrics."""
    if isinstance(value, dict):
        for key, inner in value.items():
            flat(f"{prefix}.{key}" if prefix else key, inner, out)
    else:
        out[prefix] = value
    return out


def check_run(client: MlflowClient, mlflow_run, record: dict, db_kind: str) -> None:
    """One exported run against its host record, value by value."""
    data = mlflow_run.data
    assert data.tags["host.run_id"] == record["run_id"]
    assert data.tags["mlflow.runName"] == record["run_id"]
    assert data.tags["host.config_sha256"] == record["config_sha256"]
    assert data.tags["host.dataset_sha256"] == record["data"]["dataset_sha256"]
    assert data.tags["host.export"] == "complete"
    for plugin in record["plugins"]:
        kind = {"Loader": "loader", "Model": "model", "ReportGenerator": "report"}[plugin["kind"]]
        assert data.tags[f"host.plugin.{kind}.sha256"] == plugin["sha256"]
        assert data.tags[f"host.plugin.{kind}.class"] == plugin["class"]
    verified = record["verifications"][-1]["ok"] if record["verifications"] else None
    assert data.tags["host.verified"] == {True: "passed", False: "failed", None: "never"}[verified]
    for key, value in record["tags"].items():
        assert data.tags[key] == value
    assert mlflow_run.info.status == {"completed": "FINISHED", "failed": "FAILED"}.get(record["status"], "KILLED")

    # Parameters: every dotted config key, text as it is, the rest as JSON.
    expected_params = {k: param_text(v) for k, v in flat("", record["config"], {}).items() if not isinstance(v, dict)}
    # Empty mappings and lists stay one key each, as the store keeps them.
    assert {k: v for k, v in data.params.items()} == {
        k: v for k, v in expected_params.items() if k in data.params
    }, db_kind
    assert set(expected_params) - set(data.params) <= {k for k, v in expected_params.items() if v == "{}"}

    # Final metrics at step 0, every number of the record's metrics.
    finals = {k: v for k, v in flat("", record["metrics"] or {}, {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert finals, "the run has final metrics"
    for key, value in finals.items():
        assert data.metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    # Per-epoch metrics at step = epoch, whole histories.
    epochs = record["history"]
    assert epochs, "the run has a history"
    names = {name for values in epochs.values() for name in values}
    for name in names:
        history = client.get_metric_history(mlflow_run.info.run_id, name)
        got = {m.step: m.value for m in history}
        want = {int(epoch): values[name] for epoch, values in epochs.items() if name in values}
        assert len(history) == len(want), f"{name}: no duplicate points"
        for step, value in want.items():
            assert (math.isnan(got[step]) and math.isnan(value)) or got[step] == pytest.approx(value, rel=1e-12), name

    # Data sets: the whole set and each split, with their SHA-256 and rows.
    inputs = {i.dataset.name: i for i in mlflow_run.inputs.dataset_inputs}
    digests = {json.loads(i.dataset.profile)["sha256"]: i for i in inputs.values()}
    assert record["data"]["dataset_sha256"] in digests
    for split, recorded in record["data"]["splits"].items():
        dataset_input = digests[recorded["sha256"]]
        assert json.loads(dataset_input.dataset.profile)["rows"] == recorded["rows"]
        assert dataset_input.dataset.digest == recorded["sha256"][:32]
        assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == split


def check_files(client: MlflowClient, mlflow_run_id: str, record: dict, tmp_path: Path) -> None:
    """Every recorded artifact was uploaded and downloads with its recorded SHA-256."""
    output_dir = Path(record["output_dir"])
    for artifact in record["artifacts"]:
        relative = Path(artifact["path"]).relative_to(output_dir)
        local = client.download_artifacts(mlflow_run_id, f"files/{relative}", str(tmp_path))
        assert hashlib.sha256(Path(local).read_bytes()).hexdigest() == artifact["sha256"], relative
    run_json = client.download_artifacts(mlflow_run_id, "host/run.json", str(tmp_path))
    assert json.loads(Path(run_json).read_text())["run_id"] == record["run_id"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_runs_and_a_sweep_reach_an_mlflow_server_whole_and_only_once(
    backend, real_stores, postgres_cluster, host, mlflow_server, tmp_path
):
    # A copy of the real store: this test tags a run.
    source = real_stores[backend]
    db = str(tmp_path / "copy.db") if backend == "sqlite" else postgres_cluster.database()
    host("store", "copy", "--from", source.locator, "--to", db)
    experiment = f"exported-from-{backend}"
    summary = export(host, db, mlflow_server, "--filter", "status != 'running'", "--experiment", experiment)
    outcomes = {r["run_id"]: r["outcome"] for r in summary["runs"]}
    assert set(outcomes.values()) == {"exported"}, outcomes
    host_ids = set(source.all_run_ids)
    assert set(outcomes) == host_ids
    assert all(r["files"] >= 1 and not r["files_left_out"] for r in summary["runs"]), summary

    mlflow.set_tracking_uri(mlflow_server)
    client = MlflowClient(mlflow_server)
    frame = mlflow.search_runs(experiment_names=[experiment])
    # One MLflow run per host run, and one for the sweep.
    assert len(frame) == len(host_ids) + 1
    by_host_id = {row["tags.host.run_id"]: row for _, row in frame.iterrows() if isinstance(row.get("tags.host.run_id"), str)}
    assert set(by_host_id) == host_ids
    parents = frame[frame["tags.host.kind"] == "sweep"]
    assert len(parents) == 1
    parent = parents.iloc[0]
    assert parent["tags.host.sweep_id"] == source.sweep_id
    assert parent["tags.host.sweep.best_run"] in source.trial_run_ids
    assert summary["sweeps"] == {source.sweep_id: parent["run_id"]}

    for run_id in host_ids:
        record = host_record(host, db, run_id)
        mlflow_run = client.get_run(by_host_id[run_id]["run_id"])
        check_run(client, mlflow_run, record, backend)
        # search_runs shows the same values (MLflow's DataFrame, column by column).
        row = by_host_id[run_id]
        for key, value in mlflow_run.data.params.items():
            assert row[f"params.{key}"] == value
        for key, value in mlflow_run.data.metrics.items():
            assert row[f"metrics.{key}"] == pytest.approx(value)
        if run_id in source.trial_run_ids:
            assert mlflow_run.data.tags["mlflow.parentRunId"] == parent["run_id"]
            assert mlflow_run.data.tags["host.sweep_id"] == source.sweep_id
            assert mlflow_run.data.tags["host.trial"] == str(record["trial"]["trial"])
        else:
            assert "mlflow.parentRunId" not in mlflow_run.data.tags
    assert client.get_run(by_host_id[source.tagged_run_id]["run_id"]).data.tags["owner"] == "ana"
    assert "stage" not in client.get_run(by_host_id[source.tagged_run_id]["run_id"]).data.tags
    assert client.get_run(by_host_id[source.verified_run_id]["run_id"]).data.tags["host.verified"] == "passed"
    for run_id in (source.run_ids[0], source.trial_run_ids[0]):
        check_files(client, by_host_id[run_id]["run_id"], host_record(host, db, run_id), tmp_path / run_id)

    # Again: nothing new. Then a tag and a verification change: brought up to date, still once.
    again = export(host, db, mlflow_server, "--filter", "status != 'running'", "--experiment", experiment)
    assert {r["outcome"] for r in again["runs"]} == {"unchanged"}
    assert len(mlflow.search_runs(experiment_names=[experiment])) == len(host_ids) + 1
    tagged = source.run_ids[1]
    host("runs", "tag", tagged, f"exported=twice-{backend}", "--db", db)
    updated = export(host, db, mlflow_server, tagged, "--experiment", experiment)
    assert [r["outcome"] for r in updated["runs"]] == ["updated"]
    assert client.get_run(by_host_id[tagged]["run_id"]).data.tags["exported"] == f"twice-{backend}"
    assert len(mlflow.search_runs(experiment_names=[experiment])) == len(host_ids) + 1
    # A tag removed in the host is removed in MLflow too.
    host("runs", "tag", tagged, "exported=", "--db", db)
    removed = export(host, db, mlflow_server, tagged, "--experiment", experiment)
    assert [r["outcome"] for r in removed["runs"]] == ["updated"]
    assert "exported" not in client.get_run(by_host_id[tagged]["run_id"]).data.tags

    # The sweep's run ends when its last trial did.
    trial_ends = [host_record(host, db, run)["finished_at"] for run in source.trial_run_ids]
    latest = max(trial_ends).replace("Z", "+00:00")
    from datetime import datetime

    assert client.get_run(parent["run_id"]).info.end_time == int(datetime.fromisoformat(latest).timestamp() * 1000)
    assert client.get_run(parent["run_id"]).info.status == "FINISHED"

    # An export cut short (no completion tag) is replaced, not duplicated.
    cut_short = by_host_id[source.trial_run_ids[-1]]["run_id"]
    client.delete_tag(cut_short, "host.export")
    redone = export(host, db, mlflow_server, source.trial_run_ids[-1], "--experiment", experiment)
    assert [r["outcome"] for r in redone["runs"]] == ["exported again"]
    assert redone["runs"][0]["parent_run_id"] == parent["run_id"], "the sweep's run is found again"
    frame = mlflow.search_runs(experiment_names=[experiment])
    assert len(frame) == len(host_ids) + 1
    assert cut_short not in set(frame["run_id"])
    assert client.get_run(cut_short).info.lifecycle_stage == "deleted"

    # Two exports at once may each make a run: the next export keeps one.
    twin = client.create_run(
        frame["experiment_id"].iloc[0],
        tags={"host.run_id": source.run_ids[0], "host.export": "complete", "mlflow.runName": source.run_ids[0]},
    )
    client.set_terminated(twin.info.run_id)
    healed = export(host, db, mlflow_server, source.run_ids[0], "--experiment", experiment)
    assert healed["duplicates_removed"] == 1
    left = mlflow.search_runs(experiment_names=[experiment], filter_string=f"tags.`host.run_id` = '{source.run_ids[0]}'")
    assert len(left) == 1


def test_runs_reach_an_mlflow_sqlite_store_readable_by_mlflow(real_stores, host, tmp_path):
    store = tmp_path / "mlflow.db"
    uri = f"sqlite:///{store}"
    # host writes only into a store MLflow made, and says how to make one.
    source = real_stores["sqlite"]
    refused = host("export", source.run_ids[0], "--db", real_stores.sqlite, "--format", "mlflow", "--to", uri, check=False)
    assert refused.returncode != 0 and f"mlflow db upgrade {uri}" in refused.stderr
    subprocess.run([str(Path(sys.executable).with_name("mlflow")), "db", "upgrade", uri], check=True, capture_output=True)

    summary = export(host, real_stores.sqlite, uri, "--filter", "status != 'running'")
    assert summary["runs"] and {r["outcome"] for r in summary["runs"]} == {"exported"}
    again = export(host, real_stores.sqlite, uri, "--filter", "status != 'running'")
    assert {r["outcome"] for r in again["runs"]} == {"unchanged"}

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    # Files go beside the store, in a folder named after it.
    assert any((tmp_path / "mlflow.db.artifacts").rglob("run.json"))
    experiments = sorted(set(summary["experiments"]))
    frame = mlflow.search_runs(experiment_names=experiments)
    assert len(frame) == len(summary["runs"]) + len(summary["sweeps"])
    for exported in summary["runs"]:
        record = host_record(host, real_stores.sqlite, exported["run_id"])
        check_run(client, client.get_run(exported["mlflow_run_id"]), record, "mlflow-sqlite")
    assert {r["run_id"] for r in summary["runs"]} == set(source.all_run_ids)
    first = next(r for r in summary["runs"] if r["run_id"] == source.run_ids[0])
    check_files(client, first["mlflow_run_id"], host_record(host, real_stores.sqlite, first["run_id"]), tmp_path)

    # An experiment whose files a server keeps: refused before any run is made.
    client.create_experiment("served", artifact_location="mlflow-artifacts:/served")
    refused = host("export", source.run_ids[0], "--db", real_stores.sqlite, "--format", "mlflow", "--to", uri,
                   "--experiment", "served", check=False)
    assert refused.returncode != 0 and "keeps its files at mlflow-artifacts:/served" in refused.stderr
    assert len(mlflow.search_runs(experiment_names=["served"])) == 0


def mlflow_sqlite_store(path: Path) -> str:
    """A fresh MLflow SQLite store, made by MLflow; its URI."""
    uri = f"sqlite:///{path}"
    subprocess.run([str(Path(sys.executable).with_name("mlflow")), "db", "upgrade", uri], check=True, capture_output=True)
    return uri


def test_files_not_as_recorded_are_named_and_a_dead_run_is_exported_as_killed(
    own_run, store_fixture_binary, host, tmp_path
):
    uri = mlflow_sqlite_store(tmp_path / "mlflow.db")
    # The query fixture (a store of this test's own: the CLI settles its dead run): runs whose
    # files were never on this machine, and `d`, recorded running by a process long gone.
    fixture = str(tmp_path / "query.db")
    subprocess.run([str(store_fixture_binary), "query-runs", "--db", fixture], check=True)
    summary = export(host, fixture, uri, "--filter", "run_id in ('c', 'd')")
    outcomes = {r["run_id"]: r for r in summary["runs"]}
    assert outcomes["c"]["outcome"] == "exported" and outcomes["c"]["files"] == 0
    assert len(outcomes["c"]["files_left_out"]) == 2
    assert all("No such file" in line for line in outcomes["c"]["files_left_out"])
    client = MlflowClient(uri)
    dead = client.get_run(outcomes["d"]["mlflow_run_id"])
    assert (dead.info.status, dead.data.tags["host.status"]) == ("KILLED", "interrupted")

    # A file changed since its run is not exported as the run's; the others are.
    record = host_record(host, own_run.locator, own_run.run_ids[0])
    model = next(Path(a["path"]) for a in record["artifacts"] if a["kind"] == "model")
    model.write_bytes(model.read_bytes() + b"tampered")
    summary = export(host, own_run.locator, uri, own_run.run_ids[0])
    [exported] = summary["runs"]
    assert exported["outcome"] == "exported"
    assert exported["files_left_out"] == [f"{model}: changed since the run (`host verify`)"]
    assert exported["files"] == len(record["artifacts"]) - 1
    names = {f.path for f in client.list_artifacts(exported["mlflow_run_id"], f"files/{model.parent.name}")}
    assert f"files/{model.parent.name}/{model.name}" not in names and names


def test_a_run_still_running_is_skipped_and_once_killed_exported_with_its_epochs(own_run, host_binary, host, tmp_path):
    """A run whose process is alive is left for later: its metrics are not final yet. Killed,
    it is exported as KILLED with the epochs it wrote."""
    project = own_run.project
    config = (project / "config" / "a.yaml").read_text().replace("epochs: 3", "epochs: 1000000")
    (project / "config" / "long.yaml").write_text(config)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    running = subprocess.Popen(
        [str(host_binary), "run", "config/long.yaml", "--db", own_run.locator],
        cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            listed = json.loads(host("runs", "list", "--db", own_run.locator, "--json", "--filter", "status = 'running'"))
            if listed or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(listed) == 1, "the long run started"
        uri = mlflow_sqlite_store(tmp_path / "mlflow.db")
        summary = export(host, own_run.locator, uri, listed[0]["run_id"])
        [skipped] = summary["runs"]
        assert skipped["outcome"] == "skipped" and skipped["mlflow_run_id"] is None
        assert skipped["note"] == "still running; export it once it ends"
        client = MlflowClient(uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        assert experiments == [] or client.search_runs(experiments) == []
        # Killed in training: its record has no history, only the epochs it wrote as they
        # happened; the export takes those.
        import hoststore

        deadline = time.monotonic() + 60
        while len(hoststore.metric_history(own_run.locator, [listed[0]["run_id"]])) < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
        running.kill()
        running.wait(timeout=60)
        summary = export(host, own_run.locator, uri, listed[0]["run_id"])
        [dead] = summary["runs"]
        assert dead["outcome"] == "exported", dead
        run = client.get_run(dead["mlflow_run_id"])
        assert (run.info.status, run.data.tags["host.status"]) == ("KILLED", "interrupted")
        stored = hoststore.metric_history(own_run.locator, [listed[0]["run_id"]])
        for name in set(stored["name"]):
            want = {int(r.step): r.value for r in stored[stored["name"] == name].itertuples()}
            got = {m.step: m.value for m in client.get_metric_history(run.info.run_id, name)}
            assert got == want and len(want) >= 3, name
    finally:
        if running.poll() is None:
            running.send_signal(signal.SIGTERM)
            running.wait(timeout=60)


def test_an_unreachable_server_or_a_bad_target_is_one_clear_error(real_stores, host, tmp_path):
    run = real_stores["sqlite"].run_ids[0]
    done = host("export", run, "--db", real_stores.sqlite, "--format", "mlflow", "--to", f"http://127.0.0.1:{free_port()}", check=False)
    assert done.returncode != 0
    assert "cannot reach the MLflow server at http://127.0.0.1:" in done.stderr and "is it running there?" in done.stderr
    done = host("export", run, "--db", real_stores.sqlite, "--format", "mlflow", check=False)
    assert done.returncode != 0 and "--to is required with --format mlflow" in done.stderr
    # A host store is no MLflow store, and is said to be one.
    done = host("export", run, "--db", real_stores.sqlite, "--format", "mlflow", "--to", f"sqlite:///{real_stores.sqlite}", check=False)
    assert done.returncode != 0 and "this is a host provenance store, not an MLflow store" in done.stderr
    # A web server that is no MLflow: its page is an error, never read as "no runs there".
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        (tmp_path / "api" / "2.0" / "mlflow" / "experiments").mkdir(parents=True)
        (tmp_path / "api" / "2.0" / "mlflow" / "experiments" / "get-by-name").write_text("<html>hello</html>")
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the web server started"
                time.sleep(0.2)
        done = host("export", run, "--db", real_stores.sqlite, "--format", "mlflow", "--to", f"http://ana:s3cret@127.0.0.1:{port}", check=False)
        assert done.returncode != 0
        assert "with something other than JSON" in done.stderr and "is this an MLflow tracking server?" in done.stderr
        assert "s3cret" not in done.stderr, "credentials in the URL are never shown"
    finally:
        web.terminate()
        web.wait(timeout=10)
    done = host("export", "--db", real_stores.sqlite, "--format", "mlflow", "--to", "sqlite:///x.db", check=False)
    assert done.returncode != 0 and "name the runs to export" in done.stderr
