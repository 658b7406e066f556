import json
import sqlite3
from types import SimpleNamespace

import pandas as pd
import pytest

from engine import api, store as store_module
from engine.errors import CrossLensError
from engine.store import Store


def _registry_rows(workspace):
    db = sqlite3.connect(workspace / "registry.sqlite")
    try:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in ("datasets", "runs", "scenarios")}
    finally:
        db.close()


def test_ingest_then_load_round_trip(tmp_path, domain_files, domains):
    inter, items = domain_files["tgt"]
    record = api.ingest("tgt", inter, items, workspace=tmp_path)
    assert record["n_interactions"] == len(domains["tgt"][0]) and record["n_items"] == len(domains["tgt"][1])
    loaded = Store(tmp_path).load_table("tgt", "interactions")
    assert loaded["user_id"].tolist() == domains["tgt"][0]["user_id"].tolist()


def test_crash_mid_ingest_leaves_registry_and_files_unchanged(tmp_path, domain_files, monkeypatch):
    inter, items = domain_files["tgt"]
    api.ingest("tgt", inter, items, workspace=tmp_path)
    before_rows = _registry_rows(tmp_path)
    before_files = sorted(p.name for p in (tmp_path / "datasets").iterdir())

    calls = {"n": 0}
    real = pd.DataFrame.to_parquet

    def crash_on_second_table(self, *args, **kwargs):  # the disk "fails" after the first file is written
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("simulated crash mid-write")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash_on_second_table)
    with pytest.raises(OSError):
        api.ingest("tgt", inter, items, workspace=tmp_path, replace=True)
    monkeypatch.undo()
    assert _registry_rows(tmp_path) == before_rows
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == before_files
    assert len(Store(tmp_path).load_table("tgt", "items")) > 0


def test_crash_during_registry_commit_leaves_no_half_dataset(tmp_path, domain_files, monkeypatch):
    inter, items = domain_files["tgt"]

    def crash(*args, **kwargs):
        raise OSError("simulated crash inside the registry transaction")

    # json.dumps(info) is evaluated inside the transaction that inserts the dataset row
    monkeypatch.setattr(store_module, "json", SimpleNamespace(dumps=crash, loads=json.loads))
    with pytest.raises(OSError):
        api.ingest("tgt", inter, items, workspace=tmp_path)
    monkeypatch.undo()
    assert Store(tmp_path).datasets() == []
    assert list((tmp_path / "datasets").iterdir()) == []


def test_reingest_needs_replace_and_an_unused_old_version_is_removed(tmp_path, domain_files):
    inter, items = domain_files["tgt"]
    first = api.ingest("tgt", inter, items, workspace=tmp_path)
    before = _registry_rows(tmp_path), sorted((tmp_path / "datasets").iterdir())
    with pytest.raises(CrossLensError, match="'tgt' exists already .* --replace"):
        api.ingest("tgt", inter, items, workspace=tmp_path)
    assert (_registry_rows(tmp_path), sorted((tmp_path / "datasets").iterdir())) == before
    second = api.ingest("tgt", inter, items, workspace=tmp_path, replace=True)
    assert first["version"] != second["version"]
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == [f"tgt-{second['version']}"]


def test_a_run_keeps_the_version_it_was_trained_on_when_its_domain_is_replaced(tmp_path, domain_files, domains):
    for name, (inter, items) in domain_files.items():
        api.ingest(name, inter, items, workspace=tmp_path)
    run = api.train("src", "tgt", "itemknn", workspace=tmp_path)
    user = api.test_users(run["id"], workspace=tmp_path)[0]
    before = api.recommend(run["id"], user, workspace=tmp_path)
    fewer = tmp_path / "fewer.csv"
    domains["tgt"][0].iloc[: len(domains["tgt"][0]) // 2].to_csv(fewer, index=False)
    api.ingest("tgt", fewer, domain_files["tgt"][1], workspace=tmp_path, replace=True)
    assert api.recommend(run["id"], user, workspace=tmp_path) == before  # the old version, kept for this run
    assert len(list((tmp_path / "datasets").iterdir())) == 3  # src, tgt's old and new versions
    newer = api.train("src", "tgt", "itemknn", workspace=tmp_path)
    assert newer["scenario"]["versions"]["tgt"] != run["scenario"]["versions"]["tgt"]
    api.delete_dataset("tgt", workspace=tmp_path)  # explicit: every version goes
    assert len(list((tmp_path / "datasets").iterdir())) == 1
    with pytest.raises(CrossLensError, match="was deleted after run"):
        api.recommend(run["id"], user, workspace=tmp_path)


def test_of_two_racing_ingests_of_a_new_name_exactly_one_stores_it(tmp_path, domain_files):
    from concurrent.futures import ThreadPoolExecutor
    inter, items = domain_files["tgt"]

    def ingest(_):
        try:
            return api.ingest("tgt", inter, items, workspace=tmp_path)["version"]
        except CrossLensError as err:
            return str(err)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(ingest, range(2)))
    stored = Store(tmp_path).dataset("tgt")["version"]
    assert sorted(a == stored for a in answers) == [False, True]
    assert any("exists already" in a for a in answers)
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == [f"tgt-{stored}"]


def test_rejected_dataset_changes_nothing(tmp_path, domain_files):
    inter, items = domain_files["tgt"]
    api.ingest("tgt", inter, items, workspace=tmp_path)
    before = _registry_rows(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id\nu1,\n")
    with pytest.raises(ValueError):
        api.ingest("tgt", bad, items, workspace=tmp_path, replace=True)
    with pytest.raises(ValueError):
        api.ingest("other", bad, workspace=tmp_path)
    assert _registry_rows(tmp_path) == before
    assert len(list((tmp_path / "datasets").iterdir())) == 1


def test_run_folder_holds_every_artifact(tmp_path, domain_files):
    for name, (inter, items) in domain_files.items():
        api.ingest(name, inter, items, workspace=tmp_path)
    record = api.train("src", "tgt", "cmf", epochs=2, settings={"dim": 8}, workspace=tmp_path)
    folder = Store(tmp_path).run_dir(record["id"])
    assert {"config.json", "metrics.json", "per_user.parquet", "weights.safetensors", "item_vectors.parquet",
            "curves.parquet"} <= {p.name for p in folder.iterdir()}
    vectors = pd.read_parquet(folder / "item_vectors.parquet")
    assert set(vectors["domain"]) == {"src", "tgt"} and len(vectors["vector"].iloc[0]) == 8
    per_user = pd.read_parquet(folder / "per_user.parquet")
    assert len(per_user) == record["metrics"]["all"]["cases"]
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_delete_run_removes_the_run_its_metrics_and_files_but_not_a_running_one(tmp_path, domain_files):
    for name, (inter, items) in domain_files.items():
        api.ingest(name, inter, items, workspace=tmp_path)
    run = api.train("src", "tgt", "pop", workspace=tmp_path)
    store = Store(tmp_path)
    running = store.new_run(run["scenario"], "pop", {"params": {}})  # this process trains it: alive
    with pytest.raises(CrossLensError, match="still training"):
        api.delete_run(running["id"], tmp_path)
    api.delete_run(run["id"], tmp_path)
    assert [r["id"] for r in api.runs(tmp_path)] == [running["id"]]
    assert not (tmp_path / "runs" / run["id"]).exists()
    assert _registry_rows(tmp_path)["runs"] and not sqlite3.connect(tmp_path / "registry.sqlite").execute(
        "SELECT * FROM metrics WHERE run_id = ?", (run["id"],)).fetchall()
    with pytest.raises(CrossLensError, match="no run"):
        api.delete_run(run["id"], tmp_path)


def test_an_upload_is_staged_inside_the_workspace_and_a_dead_servers_upload_is_swept(tmp_path):
    import os
    import time
    with api.upload_folder(tmp_path) as folder:
        assert folder.parent == tmp_path / "uploads" and folder.is_dir()
        Store(tmp_path)  # a sweep while this process is still uploading leaves the folder alone
        assert folder.is_dir()
    assert not folder.exists()
    dead = tmp_path / "uploads" / ".staging-999999999-abc"  # no such process
    dead.mkdir()
    (dead / "interactions.csv").write_text("user_id,item_id\n")
    old = time.time() - 3600
    os.utime(dead, (old, old))
    Store(tmp_path)
    assert not dead.exists()
