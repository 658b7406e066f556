import pandas as pd

from engine import kg

ITEMS = pd.DataFrame({
    "item_id": ["a1", "a2", "o1"], "domain": ["arts", "arts", "office"],
    "title": ["brush", "paint", "pen"], "description": ["", "", ""],
    "categories": ["arts > painting > brushes", "arts > painting", "office > pens"],
    "brand": ["acme", "acme|zeta", ""],
})


def test_entities_from_attribute_columns():
    ent = kg.item_entities(ITEMS)
    assert set(ent["relation"]) == {"categories", "brand"}
    # every category-path prefix is an entity; multi-valued brands split
    assert set(ent.loc[ent["item"] == 0, "entity"]) == {
        "categories=arts", "categories=arts > painting", "categories=arts > painting > brushes", "brand=acme"}
    assert set(ent.loc[ent["item"] == 1, "entity"]) == {
        "categories=arts", "categories=arts > painting", "brand=acme", "brand=zeta"}
    assert set(ent.loc[ent["item"] == 2, "entity"]) == {"categories=office", "categories=office > pens"}
    assert ent["entity"].nunique() == 7 and len(ent) == 10
    # a brand sold in two items is one shared entity: a bridge
    assert (ent["entity"] == "brand=acme").sum() == 2


def test_entities_from_uploaded_triples_one_and_two_hops():
    triples = pd.DataFrame({"head": ["o1", "acme", "germany"], "relation": ["made_by", "based_in", "part_of"],
                            "tail": ["acme", "germany", "europe"], "domain": ["office", "arts", "arts"]})
    one = kg.item_graph(ITEMS, triples, hops=1)
    assert len(one) == 10 + 1  # o1 -made_by-> acme; the arts triples have no item at either end
    assert one[(one["item"] == 2) & (one["relation"] == "made_by")]["entity"].tolist() == ["acme"]
    two = kg.item_graph(ITEMS, triples, hops=2)
    # o1 reaches germany through acme; the arts items reach germany through their brand=acme attribute
    reached = two[two["entity"] == "germany"]
    assert set(reached["item"]) == {0, 1, 2}
    assert set(reached["relation"]) == {"made_by.based_in", "brand.based_in"}
    assert "europe" not in set(two["entity"])  # three hops away
    # and the arts items reach the office pen through the brand they share with it: a cross-domain bridge
    assert set(two.loc[two["entity"] == "o1", "item"]) == {0, 1}
    assert two["relation"].nunique() == 6


def test_the_second_hop_does_not_go_through_a_hub():
    """40 items in one category (a hub) and two in a small series, all as triples: the series' items reach each
    other in two hops, the category's do not (each would reach all 40: a graph quadratic in the hub)."""
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(40)], "domain": "d", "title": "x"})
    triples = pd.DataFrame({"head": [f"i{k}" for k in range(40)] + ["i0", "i1"],
                            "relation": ["category"] * 40 + ["series"] * 2,
                            "tail": ["pens"] * 40 + ["gel line"] * 2, "domain": "d"})
    assert kg.MAX_FANOUT < 40
    two = kg.item_graph(items, triples, hops=2)
    assert set(two.loc[two["item"] == 0, "entity"]) == {"pens", "gel line", "i1"}  # i1 through the series only
    assert len(two) == 40 + 2 + 2
