"""Runs as things an analyst manages: a name, tags and a note, kept in the registry, checked, shown everywhere."""
import sqlite3

import pytest

from engine import api
from engine.errors import CrossLensError
from engine.store import Store


@pytest.fixture
def run(tmp_path, ingested_workspace, domains):
    ws = ingested_workspace(tmp_path / "ws", domains)
    return ws, api.train("src", "tgt", "pop", workspace=ws)


def test_a_run_is_named_tagged_and_noted_and_the_table_shows_it(run):
    ws, record = run
    labelled = api.label_run(record["id"], name="Pop baseline", add_tags=["baseline", "q4"],
                             note="the floor\nevery model must clear", workspace=ws)
    assert (labelled["name"], labelled["tags"], labelled["note"]) == ("Pop baseline", ["baseline", "q4"],
                                                                     "the floor\nevery model must clear")
    again = api.label_run(record["id"], add_tags=["q4", "final"], remove_tags=["baseline"], workspace=ws)
    assert again["name"] == "Pop baseline" and again["tags"] == ["q4", "final"]  # unchanged unless given
    row = api.runs_table(ws).iloc[0]
    assert (row["name"], row["tags"], row["note"]) == ("Pop baseline", "q4, final", "the floor\nevery model must clear")
    cleared = api.label_run(record["id"], name="", note="", workspace=ws)
    assert cleared["name"] is None and cleared["note"] is None and cleared["tags"] == ["q4", "final"]


@pytest.mark.parametrize("options, message", [({"name": "x" * 81}, "at most 80"), ({"name": "two\nlines"}, "one line"),
                                              ({"add_tags": ["has space"]}, "tag"), ({"add_tags": [""]}, "tag"),
                                              ({"note": "n" * 2001}, "at most 2000")])
def test_a_bad_label_is_refused_and_changes_nothing(run, options, message):
    ws, record = run
    api.label_run(record["id"], name="kept", workspace=ws)
    with pytest.raises(CrossLensError, match=message):
        api.label_run(record["id"], **options, workspace=ws)
    assert api.run(record["id"], ws)["name"] == "kept" and api.run(record["id"], ws)["tags"] == []


def test_a_workspace_made_before_labels_gets_them(run):
    ws, record = run
    with sqlite3.connect(ws / "registry.sqlite") as db:
        for column in ("name", "tags", "note"):
            db.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    reopened = Store(ws)
    assert reopened.run(record["id"])["tags"] == [] and reopened.run(record["id"])["name"] is None
