"""What the facade offers the dashboard's pages beyond the run lifecycle: the model catalogue, long-form metrics."""
from engine import api


def test_the_catalogue_says_what_each_model_can_do():
    models = api.models()
    assert set(models) >= {"pop", "itemknn", "content", "bpr", "cmf", "emcdr", "lmkg"}
    assert all(about["description"] for about in models.values())
    assert [m for m, a in models.items() if a["explainable"]] == ["itemknn", "content", "lmkg"]
    assert {m for m, a in models.items() if a["item_vectors"]} == {"content", "bpr", "cmf", "emcdr", "lmkg"}
    assert models["lmkg"]["trains"] and not models["itemknn"]["trains"]
    assert models["lmkg"]["defaults"]["dim"] == 64


def test_long_metrics_hold_every_stored_figure_of_every_finished_run(trained_workspace):
    ws, runs = trained_workspace
    long = api.metrics_long(ws)
    for record in runs.values():
        mine = long[long["run"] == record["id"]]
        stored = {(s, m): v for s, values in record["metrics"].items() for m, v in values.items()}
        names = mine["metric"] + ("@" + mine["k"].astype(str)).where(mine["k"].notna(), "")
        assert dict(zip(zip(mine["segment"], names), mine["value"])) == stored
    assert long.loc[long["metric"] == "ndcg", "k"].min() >= 1
