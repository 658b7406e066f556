"""Entities and relations of items, from their attribute columns (and, later, uploaded triples)."""
from __future__ import annotations

import numpy as np
import pandas as pd

TEXT_COLUMNS = ("item_id", "title", "description")
MAX_FANOUT = 32  # the second hop goes through entities with at most this many triples


def attribute_columns(items: pd.DataFrame) -> list[str]:
    return [c for c in items.columns if c not in TEXT_COLUMNS and c != "domain"]


def item_entities(items: pd.DataFrame) -> pd.DataFrame:
    """One row per (item position, relation, entity) from the attribute columns.

    Multi-valued cells ('a|b') give one entity per value; a category path ('a > b > c') gives one entity per
    prefix ('a', 'a > b', 'a > b > c'), so items that share only the top levels still meet at those entities.
    """
    frames = []
    for column in attribute_columns(items):
        values = items[column].fillna("").astype(str).str.split("|").explode().str.strip()
        values = values[values != ""]
        parts = values.str.split(r"\s*>\s*", regex=True)
        depth = parts.str.len().fillna(0).astype(int)
        if (depth > 1).any():  # hierarchical column: expand each path into its prefixes
            rows = np.repeat(values.index.to_numpy(), depth.to_numpy())
            prefixes = [" > ".join(p[: i + 1]) for p in parts for i in range(len(p))]
            values = pd.Series(prefixes, index=rows)
        frames.append(pd.DataFrame({"item": values.index.to_numpy(), "relation": column,
                                    "entity": column + "=" + values.to_numpy()}))
    if not frames:
        return pd.DataFrame({"item": pd.Series(dtype=np.int64), "relation": pd.Series(dtype=str),
                             "entity": pd.Series(dtype=str)})
    return pd.concat(frames, ignore_index=True).drop_duplicates(ignore_index=True)


def item_graph(items: pd.DataFrame, triples: pd.DataFrame | None = None, hops: int = 2,
               pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every (item position, relation, entity) the model may attend over.

    From the attribute columns (see item_entities) plus uploaded triples whose head or tail is an item of the same
    domain (item_id = head -> (relation, tail); item_id = tail -> (relation^-1, head)). With hops=2 an item also
    reaches the entities one triple further ("brand=x" -> made_in -> "germany" gives (item, brand.made_in, germany)),
    through entities with at most MAX_FANOUT triples.
    triples: head, relation, tail, domain. pairs: item_entities(items), when the caller has them already.
    """
    pairs = item_entities(items) if pairs is None else pairs
    if triples is None or triples.empty:
        return pairs
    key = pd.Series(np.arange(len(items)), index=pd.MultiIndex.from_arrays([items["domain"], items["item_id"]]))
    t = triples.astype({"head": str, "relation": str, "tail": str})
    forward = pd.DataFrame({"domain": t["domain"], "item_id": t["head"], "relation": t["relation"], "entity": t["tail"]})
    backward = pd.DataFrame({"domain": t["domain"], "item_id": t["tail"], "relation": t["relation"] + "^-1",
                             "entity": t["head"]})
    linked = pd.concat([forward, backward], ignore_index=True)
    linked["item"] = key.reindex(pd.MultiIndex.from_arrays([linked["domain"], linked["item_id"]])).to_numpy()
    direct = linked.dropna(subset=["item"]).astype({"item": np.int64})[["item", "relation", "entity"]]
    frames = [pairs, direct]
    if hops >= 2:  # entities reached through an entity the item already has (uploaded or attribute-derived)
        edges = pd.concat([t.rename(columns={"head": "src", "tail": "dst"})[["src", "relation", "dst"]],
                           t.rename(columns={"tail": "src", "head": "dst"}).assign(relation=t["relation"] + "^-1")
                           [["src", "relation", "dst"]]])
        # a hub (a category every item of a department links to) is not gone through: each of its items would
        # reach all the others, a graph quadratic in the hub's size that says little about any one item
        degree = edges["src"].map(edges["src"].value_counts())
        edges = edges[degree <= MAX_FANOUT]
        first = pd.concat([pairs, direct])
        # an attribute entity 'brand=acme' continues through triples about 'acme'
        value = first["entity"].str.split("=", n=1).str[-1]
        first = first.assign(src=np.where(first["entity"].isin(edges["src"]), first["entity"], value))
        second = first.merge(edges, on="src", suffixes=("", "_2"))
        second = second[second["dst"] != items["item_id"].to_numpy()[second["item"]]]  # not back to itself
        frames.append(pd.DataFrame({"item": second["item"], "relation": second["relation"] + "." + second["relation_2"],
                                    "entity": second["dst"]}))
    return pd.concat(frames, ignore_index=True).drop_duplicates(ignore_index=True)
