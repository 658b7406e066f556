"""The content-based baseline on small generated data (real MiniLM text embeddings through the cache)."""
import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from engine import evaluate, scenario as scenarios
from engine.explain import Explainer
from engine.models import MODELS, content

THEMES = {  # theme: (target titles, source titles); a user buys within one theme in both domains
    "watercolor": (["watercolor paint set", "watercolor brush pack", "cold press watercolor paper pad"],
                   ["watercolor sketchbook", "watercolor mixing palette", "round sable watercolor brushes"]),
    "stapler": (["heavy duty desk stapler", "box of standard staples", "staple remover"],
                ["long reach stapler for booklets", "mini stapler", "staple gun for upholstery"]),
    "ink": (["black printer ink cartridge", "laser toner cartridge", "inkjet refill kit"],
            ["fountain pen ink bottle", "calligraphy ink set", "india ink for drawing"]),
    "notebook": (["spiral notebook college ruled", "composition notebook", "legal notepad yellow"],
                 ["dot grid journal", "hardcover sketch journal", "pocket memo book"]),
    "tape": (["clear packing tape rolls", "double sided tape", "masking tape"],
             ["washi tape set", "artist tape white", "drafting tape roll"]),
    "scissors": (["office scissors stainless", "paper trimmer guillotine", "rotary paper cutter"],
                 ["fabric scissors", "pinking shears", "craft knife with blades"]),
}
VARIANTS = ("", "pack of 2", "large", "value pack")
NEW_ITEM = "watercolor paint set with brushes and a watercolor paper pad"


def themed_domains(n_users=120, with_new_item=True, seed=0):
    """'src' (arts) and 'tgt' (office) items whose titles name their theme; each user buys 4 target and 3 source
    items of their own theme. With with_new_item the target also has NEW_ITEM, a watercolor item nobody bought."""
    rng = np.random.default_rng(seed)
    tables = {}
    for d, domain in enumerate(("src", "tgt")):
        titles = [(theme, f"{title} {v}".strip()) for theme, pair in THEMES.items() for title in pair[d]
                  for v in VARIANTS]
        items = pd.DataFrame({"item_id": [f"{domain}{i}" for i in range(len(titles))], "title": [t for _, t in titles],
                              "category": [f"{domain} > {theme}" for theme, _ in titles]})
        rows = []
        for u in range(n_users):
            theme = list(THEMES)[u % len(THEMES)]
            own = np.flatnonzero(items["category"].str.endswith(theme))
            for t, i in enumerate(rng.choice(own, 4 if domain == "tgt" else 3, replace=False)):
                rows.append((f"u{u}", f"{domain}{i}", float(t + 10 * d)))  # source items first
        if domain == "tgt" and with_new_item:
            items.loc[len(items)] = ["tgt_new", NEW_ITEM, "tgt > watercolor"]
        tables[domain] = (pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items)
    return tables


@pytest.fixture(scope="module")
def fitted(small_scenario):
    return MODELS["content"]().fit(small_scenario)


def test_beats_pop_on_warm_and_cold_users(fitted, small_scenario):
    ours = evaluate.evaluate(fitted, small_scenario).summary
    pop = evaluate.evaluate(MODELS["pop"]().fit(small_scenario), small_scenario).summary
    for segment in ("warm", "cold"):
        assert ours[segment]["ndcg@10"] > 1.2 * pop[segment]["ndcg@10"], (segment, ours[segment], pop[segment])


def test_a_new_item_reaches_the_top_10_of_the_users_whose_history_it_resembles():
    sc = scenarios.split(themed_domains(), scenarios.scenario_spec(["src"], "tgt", seed=0, cold_fraction=0.2))
    new = int(np.flatnonzero(sc.items["item_id"].iloc[: sc.n_target] == "tgt_new")[0])
    assert not (sc.train["item"] == new).any()  # nobody bought it
    model = MODELS["content"]().fit(sc)
    top = evaluate.evaluate(model, sc).top[:, :10]
    watercolor = np.array([int(u[1:]) % len(THEMES) == 0 for u in sc.users[sc.test.user]])
    has_new = (top == new).any(1)
    for segment in ("warm", "cold"):
        mine = sc.test.segment == segment
        assert (watercolor & mine).any(), segment
        assert has_new[watercolor & mine].all(), segment  # from target history, and from source history alone
    assert has_new[~watercolor].mean() < 0.1  # the history's text decides, not the item alone


def test_save_load_gives_identical_scores_without_storing_item_vectors(fitted, small_scenario, tmp_path):
    state = fitted.state()
    path = str(tmp_path / "weights.safetensors")
    save_file(state, path)  # as api stores a run
    again = MODELS["content"].from_state(fitted.params, small_scenario, load_file(path))
    assert again.chosen_ == fitted.chosen_
    batch = small_scenario.batch(small_scenario.test, np.arange(len(small_scenario.test)))
    with torch.no_grad():
        assert torch.equal(fitted.score(batch), again.score(batch))
    # the chosen settings and whitening transforms; the item text vectors come back from the cache
    assert set(state) == {"chosen", "valid_ndcg", *(f"whitening.{s}.{k}" for s in ("warm", "cold")
                                                    for k in ("mean", "projection"))}


def test_unset_settings_are_the_best_grid_point_on_the_validation_cases(fitted, small_scenario):
    sc = small_scenario
    grid = list(itertools.product(content.POWERS, content.DECAYS, content.ENTITY_WEIGHTS))
    fixed = {point: MODELS["content"](**dict(zip(content.SETTINGS, point))).fit(sc) for point in grid}
    for segment in ("warm", "cold"):
        explicit = {point: evaluate.validation_ndcg(model, sc, segment) for point, model in fixed.items()}
        chosen = tuple(fitted.chosen_[segment][s] for s in content.SETTINGS)
        assert explicit[chosen] == pytest.approx(max(explicit.values()))
        assert fitted.valid_ndcg_[segment] == pytest.approx(max(explicit.values()))


def test_the_test_cases_play_no_part_in_the_choice(fitted, small_scenario):
    test = small_scenario.test
    shuffled = scenarios.Ragged(test.relevant.indptr, np.random.default_rng(1).permutation(test.relevant.values))
    tampered = dataclasses.replace(small_scenario, test=dataclasses.replace(test, relevant=shuffled))
    again = MODELS["content"]().fit(tampered)
    assert again.chosen_ == fitted.chosen_ and again.valid_ndcg_ == fitted.valid_ndcg_


def test_fixed_settings_are_kept_and_bad_ones_name_the_setting(small_scenario, tmp_path):
    model = MODELS["content"](power=0.0, decay=0.7, entity_weight=0.25).fit(small_scenario)
    assert model.chosen_["warm"] == model.chosen_["cold"] == {"power": 0.0, "decay": 0.7, "entity_weight": 0.25}
    save_file(model.state(), str(tmp_path / "weights.safetensors"))  # one power for both segments: no shared memory
    for bad in ({"decay": -0.5}, {"decay": 0}, {"power": 2}, {"entity_weight": -1}, {"power": "half"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            MODELS["content"](**bad)


def test_titles_only_items_work_without_an_entity_part(domains):
    titles_only = {d: (inter, items[["item_id", "title"]]) for d, (inter, items) in domains.items()}
    sc = scenarios.split(titles_only, scenarios.scenario_spec(["src"], "tgt", seed=0, cold_fraction=0.2))
    model = MODELS["content"]().fit(sc)
    assert model.entities_ is None
    assert all(c["entity_weight"] == 0 for c in model.chosen_.values())
    ours = evaluate.evaluate(model, sc).summary
    pop = evaluate.evaluate(MODELS["pop"]().fit(sc), sc).summary
    assert ours["all"]["ndcg@10"] > pop["all"]["ndcg@10"], (ours["all"], pop["all"])


def test_uploaded_triples_give_titles_only_items_their_entity_part(domains):
    """The categories uploaded as knowledge-graph triples instead of an item column: the entity part reads them
    (one entity per item here, so two items' entity cosine is 1 exactly when they share a category)."""
    tables = {d: (inter, items[["item_id", "title"]],
                  pd.DataFrame({"head": items["item_id"], "relation": "category", "tail": items["category"]}))
              for d, (inter, items) in domains.items()}
    sc = scenarios.split(tables, scenarios.scenario_spec(["src"], "tgt", seed=0, cold_fraction=0.2))
    model = MODELS["content"](power=0.5, decay=1.0, entity_weight=1.0).fit(sc)
    category = pd.concat([items.assign(domain=d) for d, (_, items) in domains.items()]).set_index(
        ["domain", "item_id"])["category"].reindex(pd.MultiIndex.from_frame(sc.items[["domain", "item_id"]]))
    entities = model.entities_.toarray()
    same = category.to_numpy()[:, None] == category.to_numpy()[None, :]
    assert np.allclose(entities @ entities.T, same, atol=1e-6)


def test_perturbed_scores_are_the_scores_of_the_shortened_history_and_explain_works(fitted, small_scenario):
    sc = small_scenario
    row = int(np.flatnonzero(sc.test.segment == "warm")[0])
    history = torch.as_tensor(sc.test.history[row], dtype=torch.long)
    keep = torch.rand(6, len(history), generator=torch.Generator().manual_seed(0)) > 0.4
    keep[0] = True
    keep[1, : len(history) - 1] = False  # only the most recent item left
    item = 3
    got = fitted.score_perturbed(history, item, keep, torch.zeros(6, 0, dtype=torch.bool))
    for p in range(len(keep)):
        shorter = history[keep[p]] if keep[p].any() else torch.tensor([-1])
        expected = fitted.score(scenarios.Batch(torch.tensor([0]), shorter[None]))[0, item]
        assert got[p] == pytest.approx(float(expected), abs=1e-5)
    with pytest.raises(ValueError, match="entity"):
        fitted.score_perturbed(history, item, keep, torch.ones(6, 2, dtype=torch.bool))
    result = Explainer(sc, fitted).explain(sc.users[sc.test.user[row]], sc.items["item_id"].iloc[item], "both",
                                           nsamples=200, lime_samples=200)
    assert result["entities"] == 0 and result["shap"]["additivity_error"] < 1e-4


def test_scores_are_the_text_cosine_plus_the_weighted_entity_cosine_in_warm_and_cold_rows(small_scenario, monkeypatch):
    # score() accumulates one product of the text and shared-entity profiles plus a sparse add of the rare entities;
    # recomputed here from the definition, on a batch that mixes warm and cold rows (each with its own settings)
    sc = small_scenario
    monkeypatch.setattr(content, "SHARED_ENTITIES", 2)  # the small data's few entities: some dense, some sparse
    model = MODELS["content"](power=0.5, decay=0.7, entity_weight=0.5).fit(sc)
    assert model.entities_.shape[1] > 2 and model.rare_targets_.nnz
    rows = np.concatenate([np.flatnonzero(sc.test.segment == s)[:6] for s in ("warm", "cold")])
    history = sc.batch(sc.test, rows).history
    vectors = model._vectors(0.5)[0]
    entities = model.entities_.toarray()
    expected = np.zeros((len(rows), sc.n_target), np.float32)
    for r, h in enumerate(history.numpy()):
        h = h[h >= 0]
        weights = 0.7 ** np.arange(len(h))[::-1]  # the most recent item weighs 1
        text = weights @ vectors[h]
        ent = weights @ entities[h]
        expected[r] = (vectors[: sc.n_target] @ (text / np.linalg.norm(text))
                       + 0.5 * entities[: sc.n_target] @ (ent / max(np.linalg.norm(ent), 1e-12)))
    got = model.score(scenarios.Batch(torch.zeros(len(rows), dtype=torch.long), history))
    assert np.allclose(got.numpy(), expected, atol=1e-4)
    scale = torch.linspace(0.5, 2.0, len(rows))
    added = model.add_scores(torch.ones(len(rows), sc.n_target), history, scale)
    assert np.allclose(added.numpy(), 1 + scale.numpy()[:, None] * expected, atol=1e-4)
