"""The synthetic data generator: seeded, accepted by ingest, shaped like the shipped data, and with preferences that
the items' categories predict."""
import json

import numpy as np
import pandas as pd
import pytest

from engine import api
from engine.__main__ import main
from engine.errors import CrossLensError
from engine.generate import generate, topics

SCALE = 0.1  # about 21k interactions: big enough for 18 topics of ~100 items


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generated")
    return folder, generate(SCALE, folder, seed=1)


def frames(folder, domain):
    return pd.read_parquet(folder / f"{domain}.parquet"), pd.read_parquet(folder / f"{domain}_items.parquet")


def test_the_same_seed_writes_the_same_files_and_another_seed_others(generated, tmp_path):
    folder, _ = generated
    generate(SCALE, tmp_path / "again", seed=1)
    generate(SCALE, tmp_path / "other", seed=2)
    for domain in ("arts", "office"):
        for name in (f"{domain}.parquet", f"{domain}_items.parquet"):
            assert (folder / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
        inter, items = frames(folder, domain)
        pd.testing.assert_frame_equal(inter, frames(tmp_path / "again", domain)[0])
        other_inter, other_items = frames(tmp_path / "other", domain)
        assert not inter.equals(other_inter) and not items["title"].equals(other_items["title"])
    assert not list(tmp_path.glob("*/.*.tmp"))  # written atomically: no temporary file is left


def test_the_files_follow_the_upload_contract_and_ingest_takes_them_as_they_are(generated, tmp_path):
    folder, summary = generated
    for domain in ("arts", "office"):
        inter, items = frames(folder, domain)
        assert list(inter.columns) == ["user_id", "item_id", "timestamp", "rating"]
        assert list(items.columns) == ["item_id", "title", "description", "categories", "brand"]
        assert inter["timestamp"].dtype.kind == "i" and inter["rating"].between(1, 5).all()
        assert items["categories"].str.count(" > ").eq(3).all() and items["title"].nunique() > 0.9 * len(items)
        record = api.ingest(domain, folder / f"{domain}.parquet", folder / f"{domain}_items.parquet",
                            workspace=tmp_path / "ws")
        assert record["warnings"] == []
        counts = summary["domains"][domain]
        assert (record["n_users"], record["n_items"], record["n_interactions"]) == (
            counts["users"], counts["items"], counts["interactions"])


def test_users_are_shared_across_the_domains_and_sizes_follow_the_scale(generated):
    folder, summary = generated
    users = [set(frames(folder, d)[0]["user_id"]) for d in ("arts", "office")]
    assert len(users[0] & users[1]) == summary["shared_users"] == round(9577 * SCALE)
    interactions = sum(v["interactions"] for v in summary["domains"].values())
    assert abs(interactions - 208541 * SCALE) < 0.1 * 208541 * SCALE


def test_item_popularity_is_heavy_tailed_with_items_never_bought(generated):
    folder, _ = generated
    for domain in ("arts", "office"):
        inter, items = frames(folder, domain)
        counts = inter["item_id"].value_counts()  # of the items bought, as measured on the shipped data (44-50%)
        assert counts.iloc[: len(counts) // 10].sum() > 0.38 * counts.sum()  # small catalogues: a little flatter
        assert len(counts) < 0.95 * len(items)  # some are never bought
        per_user = inter.groupby("user_id").size()
        assert (per_user >= 5).mean() > 0.99  # the floor, but for a repeat that found no other item
        assert per_user.median() < per_user.mean() < per_user.max() / 3  # a long tail of heavy users


def test_categories_predict_what_a_user_buys_far_better_than_chance(generated):
    folder, _ = generated
    rng = np.random.default_rng(0)
    for domain in ("arts", "office"):
        inter, items = frames(folder, domain)
        line = inter["item_id"].map(items.set_index("item_id")["categories"].str.split(" > ").str[2])
        top_share = lambda lines: lines.groupby(inter["user_id"]).agg(lambda s: s.value_counts(normalize=True).iloc[0])
        shuffled = pd.Series(rng.permutation(line.to_numpy()), index=line.index)
        assert top_share(line).mean() > top_share(shuffled).mean() + 0.2  # ~0.57 against ~0.26


def test_a_users_topics_in_one_domain_predict_those_in_the_other(generated):
    folder, _ = generated
    favourite = {}
    for domain in ("arts", "office"):  # the n-th line of one domain's vocabulary is linked to the n-th of the other
        inter, items = frames(folder, domain)
        position = {line: n for n, (_, line, _) in enumerate(topics(domain)[1])}
        line = inter["item_id"].map(items.set_index("item_id")["categories"].str.split(" > ").str[2])
        favourite[domain] = line.map(position).groupby(inter["user_id"]).agg(lambda s: s.value_counts().index[0])
    same = (favourite["arts"] == favourite["office"].reindex(favourite["arts"].index)).mean()
    assert same > 0.25  # chance: about 1 in 18


def test_bad_arguments_are_refused_with_a_message(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for kwargs, words in [({"scale": 0}, "positive"), ({"scale": -1}, "positive"), ({"scale": 1e-5}, "at least"),
                          ({"out": tmp_path / "file"}, "existing file"), ({"domains": ["arts"]}, "two different"),
                          ({"domains": ["Arts", "office"]}, "two different")]:
        with pytest.raises(CrossLensError, match=words):
            generate(**{"scale": SCALE, "out": tmp_path / "out", **kwargs})
    assert not (tmp_path / "out").exists()
    assert main(["generate", "--scale", "0", "--out", str(tmp_path / "out")]) == 2
    assert "cannot generate" in capsys.readouterr().err
    assert main(["generate", "--scale", str(SCALE), "--out", str(tmp_path / "out"), "--domains", "a,b", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["domains"]) == {"a", "b"} and (tmp_path / "out" / "b_items.parquet").is_file()
