"""engine.profile on stored datasets built here: distributions against numpy, the long tail and top items of a
hand-counted shop, the item columns a profile lists, and what pairs of domains share."""
import numpy as np
import pandas as pd
import pytest

from engine import api, profile

# u0 buys i1 twice; i0 is everyone's, i5 is nobody's. Interactions per item: 6, 4, 2, 1, 1, 0 (14 in all).
SHOP_PAIRS = [("u0", "i0"), ("u0", "i1"), ("u0", "i1"), ("u1", "i0"), ("u1", "i1"), ("u1", "i4"), ("u2", "i0"),
              ("u2", "i1"), ("u3", "i0"), ("u3", "i2"), ("u4", "i0"), ("u4", "i2"), ("u5", "i0"), ("u5", "i3")]


def interactions(pairs) -> pd.DataFrame:
    return pd.DataFrame(pairs, columns=["user_id", "item_id"]).assign(timestamp=np.arange(len(pairs), dtype=float))


def catalogue(n_items: int, prefix: str = "i", **columns) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"{prefix}{i}" for i in range(n_items)],
                         "title": [f"title of {prefix}{i}" for i in range(n_items)],
                         "category": ["kind"] * n_items, **columns})


@pytest.fixture(scope="module")
def shop(tmp_path_factory, ingested_workspace):
    """A workspace with the shop (items uploaded without a description) and 'notes' (with a half-filled one)."""
    return ingested_workspace(tmp_path_factory.mktemp("shop"), {
        "shop": (interactions(SHOP_PAIRS), catalogue(6)),
        "notes": (interactions([("u0", "n0"), ("u1", "n1")]), catalogue(2, "n", description=["a note", ""]))})


def test_top_items_and_long_tail_follow_the_hand_counts(shop):
    prof = api.dataset_profile("shop", shop)
    top = prof["top_items"]
    assert top["item_id"].tolist() == ["i0", "i1", "i2", "i3", "i4", "i5"]
    assert top.iloc[0]["title"] == "title of i0"
    assert top[["interactions", "users"]].values.tolist() == [[6, 6], [4, 3], [2, 2], [1, 1], [1, 1], [0, 0]]
    assert top.iloc[0]["share"] == pytest.approx(6 / 14)
    tail = prof["long_tail"]
    assert tail["head_share"] == pytest.approx(6 / 14)  # the top 20 % of 6 items: one item, i0
    assert tail["tail_item_share"] == pytest.approx(3 / 6)  # i5, i3, i4 get 2 of 14, within the last 20 %
    assert tail["items_without_interactions"] == 1
    curve = tail["curve"]
    assert curve["interactions_pct"].iloc[[0, -1]].tolist() == pytest.approx([0, 100])
    assert curve["interactions_pct"].is_monotonic_increasing
    assert prof["n_distinct_pairs"] == 13
    assert prof["sparsity"] == pytest.approx(1 - 13 / (6 * 6))  # unchanged: distinct pairs of users x items


def test_distributions_equal_numpys_percentiles_on_generated_data(domains, tmp_path, ingested_workspace):
    ws = ingested_workspace(tmp_path / "ws", {"tgt": domains["tgt"]})
    inter, items = domains["tgt"]
    prof = api.dataset_profile("tgt", ws)
    per_item = inter["item_id"].value_counts().reindex(items["item_id"], fill_value=0)
    expected = {"interactions_per_user": inter["user_id"].value_counts(),
                "items_per_user": inter.drop_duplicates(["user_id", "item_id"])["user_id"].value_counts(),
                "interactions_per_item": per_item,
                "users_per_item": inter.drop_duplicates(["user_id", "item_id"])["item_id"].value_counts()
                .reindex(items["item_id"], fill_value=0)}
    for what, counts in expected.items():
        summary = prof["distributions"][what]
        assert [summary[k] for k in ("p25", "median", "p75", "p90", "p99")] == pytest.approx(
            np.percentile(counts, [25, 50, 75, 90, 99])), what
        assert (summary["min"], summary["max"], summary["mean"]) == pytest.approx(
            (counts.min(), counts.max(), counts.mean())), what
        bins = prof["histograms"][what]
        assert bins["count"].sum() == len(counts), what
        inside = [((counts >= lo) & (counts <= hi)).sum() for lo, hi in zip(bins["low"], bins["high"])]
        assert bins["count"].tolist() == inside, what
    ranked = np.sort(per_item.to_numpy())[::-1]
    assert prof["long_tail"]["head_share"] == pytest.approx(ranked[:round(0.2 * len(ranked))].sum() / ranked.sum())
    assert prof["top_items"].iloc[0]["item_id"] == per_item.idxmax()


def test_power_of_two_bins_label_their_ranges():
    bins = profile._power_of_two_bins(np.array([0, 1, 2, 3, 4, 5, 9, 16]))
    assert bins["bin"].tolist() == ["0", "1", "2", "3–4", "5–8", "9–16"]
    assert bins["count"].tolist() == [1, 1, 1, 2, 1, 2]
    assert profile._power_of_two_bins(np.array([5, 6, 17]))["bin"].tolist() == ["5–8", "9–16", "17–32"]


def test_an_added_empty_description_is_left_out_but_an_uploaded_one_is_kept(shop):
    assert list(api.dataset_profile("shop", shop)["attribute_coverage"]) == ["title", "category"]
    assert api.dataset_profile("notes", shop)["attribute_coverage"] == {"title": 1.0, "description": 0.5,
                                                                        "category": 1.0}


def test_domain_overlap_shares_and_shared_users_interactions(tmp_path, ingested_workspace):
    # a: u0-u9, one interaction each but u5 with two; b: u5-u14, two each; c: users of its own
    a = interactions([(f"u{u}", "a0") for u in range(10)] + [("u5", "a1")])
    b = interactions([(f"u{u}", f"b{k}") for u in range(5, 15) for k in range(2)])
    c = interactions([("x0", "c0"), ("x1", "c0")])
    ws = ingested_workspace(tmp_path / "ws", {"a": (a, catalogue(2, "a")), "b": (b, catalogue(2, "b")),
                                              "c": (c, catalogue(1, "c"))})
    overlap = profile.domain_overlap(ws).set_index(["domain_a", "domain_b"])
    assert overlap.index.tolist() == [("a", "b"), ("a", "c"), ("b", "c")]
    ab = overlap.loc[("a", "b")]
    assert ab["shared_users"] == 5
    assert (ab["share_of_a_users"], ab["share_of_b_users"]) == pytest.approx((5 / 10, 5 / 10))
    assert (ab["interactions_in_a"], ab["interactions_in_b"]) == (6, 10)  # u5-u9 in a (u5 twice), and in b
    assert (ab["share_of_a_interactions"], ab["share_of_b_interactions"]) == pytest.approx((6 / 11, 10 / 20))
    assert overlap.loc[("a", "c"), ["shared_users", "interactions_in_a", "share_of_b_users"]].tolist() == [0, 0, 0]
    shared = api.shared_users(ws)
    assert shared.loc["a", "b"] == 5 and shared.loc["b", "b"] == 10 and shared.loc["a", "c"] == 0
