import json
import sqlite3
from types import SimpleNamespace

import pandas as pd
import pytest

from engine import api, store as store_module
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
        api.ingest("tgt", inter, items, workspace=tmp_path)
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


def test_reingest_replaces_the_version_and_removes_old_files(tmp_path, domain_files):
    inter, items = domain_files["tgt"]
    first = api.ingest("tgt", inter, items, workspace=tmp_path)
    second = api.ingest("tgt", inter, items, workspace=tmp_path)
    assert first["version"] != second["version"]
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == [f"tgt-{second['version']}"]


def test_rejected_dataset_changes_nothing(tmp_path, domain_files):
    inter, items = domain_files["tgt"]
    api.ingest("tgt", inter, items, workspace=tmp_path)
    before = _registry_rows(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id\nu1,\n")
    with pytest.raises(ValueError):
        api.ingest("tgt", bad, items, workspace=tmp_path)
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
