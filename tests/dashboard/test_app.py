from pathlib import Path

from streamlit.testing.v1 import AppTest

from engine import api

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def test_empty_workspace_renders_guidance(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSLENS_WORKSPACE", str(tmp_path))
    at = AppTest.from_file(APP).run(timeout=30)
    assert not at.exception
    assert any("No datasets yet" in i.value for i in at.info)


def test_populated_workspace_lists_datasets_and_runs(tmp_path, monkeypatch, domain_files):
    monkeypatch.setenv("CROSSLENS_WORKSPACE", str(tmp_path))
    for name, (inter, items) in domain_files.items():
        api.ingest(name, inter, items)
    record = api.train("src", "tgt", "pop")
    at = AppTest.from_file(APP).run(timeout=30)
    assert not at.exception
    datasets, runs = (df.value for df in at.dataframe)
    assert set(datasets["name"]) == {"src", "tgt"}
    assert runs["run"].tolist() == [record["id"]]
    assert runs["warm ndcg@10"].iloc[0] == record["metrics"]["warm"]["ndcg@10"]
