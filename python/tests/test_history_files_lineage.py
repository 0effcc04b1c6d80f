"""metric_history, files (rehashed) and lineage on real runs, both backends, against what the
host itself reports: ``host runs show --json``, ``host verify --json`` and ``host export
--format json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

import hoststore
from conftest import HostRunner, RealStore


def shown(run_host: HostRunner, real_store: RealStore, run_id: str) -> Dict[str, Any]:
    return run_host.json("runs", "show", run_id, "--json", cwd=real_store.project, db=real_store.locator)


def test_metric_history_is_the_runs_epochs(real_store: RealStore, run_host: HostRunner) -> None:
    run_ids = [real_store.trial_run_ids[1], real_store.run_ids[0]]
    history = hoststore.metric_history(real_store.locator, run_ids)
    assert list(history.columns) == ["run_id", "name", "step", "value"]
    expected: List[Tuple[str, str, int, float]] = []
    for run_id in run_ids:
        epochs = shown(run_host, real_store, run_id)["history"]
        rows = [(run_id, name, int(epoch), value) for epoch, values in epochs.items() for name, value in values.items()]
        expected.extend(sorted(rows, key=lambda row: (row[1], row[2])))
    assert [tuple(row) for row in history.itertuples(index=False)] == expected, "runs as given, names, epochs"
    assert {"loss", "val_loss"} <= set(history["name"])


def test_metric_history_keeps_the_names_asked_for(real_store: RealStore) -> None:
    run_id = real_store.run_ids[1]
    loss = hoststore.metric_history(real_store.locator, [run_id], names="loss")
    assert set(loss["name"]) == {"loss"} and list(loss["step"]) == [1, 2, 3]
    both = hoststore.metric_history(real_store.locator, run_id, names=["loss", "val_loss"])
    assert len(both) == 6 and all(math.isfinite(value) for value in both["value"])


def test_metric_history_of_an_unknown_run_names_it(real_store: RealStore) -> None:
    with pytest.raises(hoststore.StoreError, match="no run nope-1, nope-2; `host runs list` lists the runs"):
        hoststore.metric_history(real_store.locator, [real_store.run_ids[0], "nope-1", "nope-2"])


def test_files_are_what_the_run_recorded(real_store: RealStore, run_host: HostRunner) -> None:
    run_id = real_store.run_ids[0]
    record = shown(run_host, real_store, run_id)
    found = hoststore.files(real_store.locator, run_id)
    on_disk = {(f.path, f.sha256, f.size) for f in found if f.on_disk}
    recorded = {(a["path"], a["sha256"], a["size"]) for a in record["artifacts"] + record["source_files"]}
    assert on_disk == recorded
    in_memory = [f for f in found if not f.on_disk]
    assert {f.sha256 for f in in_memory if f.kind == "dataset"} == {record["data"]["dataset_sha256"]}
    splits = {split["sha256"] for split in record["data"]["splits"].values()}
    assert {f.sha256 for f in in_memory if f.kind == "split"} >= splits
    assert all(f.path is None and f.size is None for f in in_memory)
    assert {f.kind for f in found} >= {"raw", "dataset", "split", "model", "metrics", "predictions", "report"}
    assert found == sorted(found, key=lambda f: (f.role, f.path or "", f.sha256))


def test_data_held_in_memory_is_not_a_file_to_rehash(real_store: RealStore) -> None:
    dataset = next(f for f in hoststore.files(real_store.locator, real_store.run_ids[0]) if f.kind == "dataset")
    with pytest.raises(hoststore.NotAFileError, match="is data held in memory, not a file"):
        dataset.verify()


def test_files_of_an_unknown_run_are_an_error(real_store: RealStore) -> None:
    with pytest.raises(hoststore.StoreError, match="no run nope"):
        hoststore.files(real_store.locator, "nope")


def host_states(run_host: HostRunner, run: RealStore) -> Dict[str, str]:
    """``host verify --json``'s state of each of the run's files, by path."""
    done = run_host("verify", run.run_ids[0], "--json", cwd=run.project, db=run.locator, check=False)
    return {check["path"]: check["state"] for check in json.loads(done.stdout)["files"]}


def test_verify_rehashes_and_finds_what_changed_as_host_verify_does(own_run: RealStore, run_host: HostRunner) -> None:
    run_id = own_run.run_ids[0]
    checks = hoststore.verify_files(own_run.locator, run_id)
    assert checks and all(checks) and all(check.state == "ok" for check in checks)
    assert all(check.found_sha256 == check.file.sha256 for check in checks)
    by_role = {f.role: f for f in hoststore.files(own_run.locator, run_id) if f.on_disk}

    # The same size, another byte: the digest differs.
    metrics = Path(by_role["metrics"].path)
    text = bytearray(metrics.read_bytes())
    text[-2] = ord(" ") if text[-2] != ord(" ") else ord("\t")
    metrics.write_bytes(bytes(text))
    changed = by_role["metrics"].verify()
    assert not changed and changed.state == "changed"
    assert changed.found_size == by_role["metrics"].size
    assert changed.found_sha256 not in (None, by_role["metrics"].sha256)
    assert by_role["metrics"].sha256 in changed.detail

    # Longer: the size differs.
    predictions = Path(by_role["predictions"].path)
    predictions.write_bytes(predictions.read_bytes() + b"1,2\n")
    grown = by_role["predictions"].verify()
    assert grown.state == "changed" and grown.found_size == by_role["predictions"].size + 4
    assert f"size {by_role['predictions'].size} recorded" in grown.detail

    # Gone.
    Path(by_role["history"].path).unlink()
    missing = by_role["history"].verify()
    assert missing.state == "missing" and missing.found_size is None and not missing

    ours = {check.file.path: check.state for check in hoststore.verify_files(own_run.locator, run_id)}
    theirs = host_states(run_host, own_run)
    assert ours == {path: state for path, state in theirs.items() if path in ours}
    assert sorted(ours.values()).count("ok") == len(ours) - 3


def test_lineage_is_the_edges_host_export_reports(real_store: RealStore, run_host: HostRunner) -> None:
    for run_id in (real_store.run_ids[0], real_store.trial_run_ids[0]):
        exported = run_host.json(
            "export", run_id, "--format", "json", cwd=real_store.project, db=real_store.locator
        )["lineage"]
        edges = hoststore.lineage(real_store.locator, run_id)
        assert list(edges.columns) == ["relation", "subject", "object", "activity", "parameters"]
        rows = [
            {k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in row.items()}
            for row in edges.to_dict("records")
        ]
        assert rows == exported
        assert {"used", "wasGeneratedBy", "wasDerivedFrom", "wasAssociatedWith"} == set(edges["relation"])
        assert any(isinstance(p, dict) and p for p in edges["parameters"]), "fitted parameters decoded"
