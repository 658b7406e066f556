"""Entities and relations of items, from their attribute columns (and, later, uploaded triples)."""
from __future__ import annotations

import numpy as np
import pandas as pd

TEXT_COLUMNS = ("item_id", "title", "description")


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
