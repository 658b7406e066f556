"""The Datasets page's profile through Streamlit's AppTest on a workspace built here: the long tail and
distributions, the most interacted items, the overlap of domains (a table for two, a heatmap by share for more),
and the item columns it lists (nothing mocked)."""
import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from engine import api

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def write_domain(folder: Path, name: str, users: range, popular: str) -> tuple[Path, Path]:
    """A domain's CSV files: each user has the `popular` item and one item of their own; no description column."""
    rows = [(f"u{u}", item) for u in users for item in (popular, f"{name}-own{u}")]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(timestamp=range(len(rows)))
    ids = [popular, *[f"{name}-own{u}" for u in users]]
    items = pd.DataFrame({"item_id": ids, "title": [f"the {i}" for i in ids], "brand": "acme"})
    inter.to_csv(folder / f"{name}_inter.csv", index=False)
    items.to_csv(folder / f"{name}_items.csv", index=False)
    return folder / f"{name}_inter.csv", folder / f"{name}_items.csv"


@pytest.fixture
def workspace_of(tmp_path, monkeypatch):
    """workspace_of({name: users}) -> the app's workspace, a fresh folder holding those domains."""
    def build(domains: dict[str, range]) -> Path:
        ws = tmp_path / "ws"
        monkeypatch.setenv("CROSSLENS_WORKSPACE", str(ws))
        for name, users in domains.items():
            api.ingest(name, *write_domain(tmp_path, name, users, f"{name}-hit"), workspace=ws)
        return ws
    return build


def datasets_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/datasets.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at


def charts(at: AppTest) -> dict[str, dict]:
    """The page's Plotly figures (as JSON) by title."""
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return {s["layout"]["title"]["text"]: s for s in specs}


def table_with(at: AppTest, column: str) -> pd.DataFrame:
    """The first table on the page with this column."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def array(value) -> np.ndarray:
    """A figure's array, which Plotly writes as base64 bytes ({dtype, bdata, shape}) when it is numeric."""
    if isinstance(value, dict):
        shape = [int(n) for n in str(value.get("shape", -1)).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), value["dtype"]).reshape(shape)
    return np.asarray(value)


def test_two_domains_show_distributions_top_items_and_an_overlap_table(workspace_of):
    workspace_of({"books": range(0, 8), "music": range(4, 10)})  # users u4-u7 in both
    at = datasets_page()
    figures = charts(at)
    assert set(figures) == {"Item columns filled", "Long tail of item popularity",
                            "Users by interactions and history length", "Items by interactions"}
    filled = array(figures["Item columns filled"]["data"][0]["y"])
    assert list(filled) == ["title", "brand"]  # no phantom description: none was uploaded
    head = figures["Long tail of item popularity"]["data"][-1]
    assert head["text"] == ["top 20 %: 56 %"]  # the top 2 of 9 items (the hit and one own) get 9 of 16 interactions
    top = table_with(at, "interactions")
    assert top.iloc[0][["item_id", "title", "interactions", "users"]].tolist() == ["books-hit", "the books-hit", 8, 8]
    overlap = table_with(at, "shared_users")
    assert overlap[["domain_a", "domain_b", "shared_users"]].values.tolist() == [["books", "music", 4]]
    assert overlap[["share_of_a_users", "share_of_b_users"]].values.tolist() == [[4 / 8, 4 / 6]]
    assert overlap[["interactions_in_a", "interactions_in_b"]].values.tolist() == [[8, 8]]
    words = "\n".join(c.value for c in at.caption)
    assert "Half the users have at most 2 interactions" in words and "every item has some" in words
    assert "Users shared by two domains" in [m.value.strip("*") for m in at.markdown]


def test_three_domains_colour_the_heatmap_by_share_of_the_row_domains_users(workspace_of):
    workspace_of({"books": range(0, 8), "music": range(4, 10), "games": range(0, 2)})
    heatmap = [f for title, f in charts(datasets_page()).items() if title.startswith("Colour: share")]
    assert len(heatmap) == 1
    trace = heatmap[0]["data"][0]
    assert list(trace["y"]) == ["books", "games", "music"]  # the rows, in name order like the columns
    shares = array(trace["z"])
    assert shares[0] == pytest.approx([1, 2 / 8, 4 / 8])  # books' 8 users: 2 play games, 4 listen to music
    assert shares[:, 0] == pytest.approx([1, 2 / 2, 4 / 6])  # each row by its own domain's users
    assert array(trace["text"])[0].tolist() == [8, 2, 4]


def test_one_domain_without_items_file_shows_its_top_items_and_no_overlap(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSLENS_WORKSPACE", str(tmp_path / "ws"))
    inter, _ = write_domain(tmp_path, "solo", range(0, 3), "solo-hit")
    api.ingest("solo", inter, workspace=tmp_path / "ws")
    at = datasets_page()
    top = table_with(at, "interactions")
    assert top.columns.tolist() == ["item_id", "interactions", "users", "share"]
    assert top.iloc[0]["item_id"] == "solo-hit"
    assert any("Only one domain" in i.value for i in at.info)
    assert len(charts(at)) == 3  # no coverage chart without items: long tail and the two distributions
