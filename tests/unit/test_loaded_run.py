"""One loaded run shared by threads (as the dashboard's sessions share it) answers as it does alone."""
from concurrent.futures import ThreadPoolExecutor

from engine import api


def answers(loaded, users, item):
    """Every user's top 5, and an explanation of one item for the first two users (small, seeded samples): the
    recommended ids and scores, and each explanation's score, SHAP and LIME values per feature."""
    recs = [[(r["item_id"], r["score"]) for r in loaded.recommend(u, 5)["recommendations"]] for u in users]
    why = [loaded.explain(u, item, "both", nsamples=64, lime_samples=64, seed=1) for u in users[:2]]
    return recs, [(w["score"], [(f["label"], f["shap"], f["lime"]) for f in w["features"]]) for w in why]


def test_two_threads_scoring_and_explaining_one_lmkg_run_agree_with_one_thread(trained_workspace):
    ws, runs = trained_workspace
    run_id = runs["lmkg"]["id"]
    users = api.test_users(run_id, workspace=ws)[:6]
    alone_run = api.LoadedRun(run_id, ws)
    item = alone_run.recommend(users[0], 1)["recommendations"][0]["item_id"]
    # Worker threads both times: torch gives a new thread its own intra-op thread count, and another count sums
    # in another order (a difference in the 7th digit that says nothing about sharing).
    with ThreadPoolExecutor(1) as pool:
        alone = pool.submit(answers, alone_run, users, item).result()
    assert alone[1][0][1], "the explanation has features to compare"
    shared = api.LoadedRun(run_id, ws)  # fresh: its explainer is made by whichever thread comes first
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda _: answers(shared, users, item), range(2)))
    assert together == [alone, alone]


def test_a_loaded_lmkg_run_prepares_everything_scoring_reads(trained_workspace):
    """Scoring only reads after the load: the frozen-text channel's whitened vectors of every chosen power are
    there before the first recommendation, and no recommendation or explanation adds one (threads share them)."""
    ws, runs = trained_workspace
    loaded = api.LoadedRun(runs["lmkg"]["id"], ws)
    semantic = loaded.model.semantic_
    prepared = set(semantic._whitened)
    assert prepared == {c["power"] for c in semantic.chosen_.values()}
    users = api.test_users(loaded.id, workspace=ws)
    cold = api.test_users(loaded.id, "cold", workspace=ws)
    for user in (users[0], *cold[:1]):
        item = loaded.recommend(user, 1)["recommendations"][0]["item_id"]
        loaded.explain(user, item, "both", nsamples=16, lime_samples=16)
    assert set(semantic._whitened) == prepared
