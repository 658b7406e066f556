"""Item texts: one sentence-like text per item row, the input of the sentence encoder.

`item_texts` turns each item row into one text: its title, its description if any, then "column: value" for each
non-empty attribute (category paths kept as 'a > b > c', multi-valued 'a|b' written 'a, b').
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import kg


# ---- item texts -------------------------------------------------------------------------------------------------
def _clean(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return " ".join(str(value).split())


def _attribute_value(value) -> str:
    """'a|b' -> 'a, b'; a category path 'a > b > c' stays as it is; blanks are dropped."""
    parts = [p for p in (_clean(v) for v in _clean(value).split("|")) if p]
    return ", ".join(parts)


def item_texts(items: pd.DataFrame) -> list[str]:
    """One text per row: title, then description if any, then 'column: value' for each non-empty attribute.

    Leading category levels that (nearly) every item of the same domain shares ('office products > office')
    are left out: they tell the encoder nothing about the item and cost about a tenth of its tokens."""
    if "domain" in items.columns and items["domain"].nunique() > 1:
        texts = pd.Series("", index=items.index, dtype=object)
        for _, part in items.groupby("domain", sort=False):
            texts[part.index] = item_texts(part.drop(columns="domain"))
        return texts.tolist()
    attributes = kg.attribute_columns(items)
    columns = [c for c in ("title", "description") if c in items.columns] + attributes
    items = items[columns].copy()
    for c in attributes:
        items[c] = without_shared_levels(items[c])
    texts = []
    for row in items.itertuples(index=False, name=None):
        values = dict(zip(columns, row))
        parts = [_clean(values.get("title")), _clean(values.get("description"))]
        parts += [f"{c}: {v}" for c in attributes if (v := _attribute_value(values[c]))]
        texts.append(_sentences(p for p in parts if p))
    return texts


def without_shared_levels(values: pd.Series, share: float = 0.9) -> pd.Series:
    """Drop the leading ' > ' levels that at least `share` of the category paths have in common (each path of a
    multi-valued 'a > b|c > d' on its own), keeping at least one level of every path."""
    paths = values.dropna().astype(str).str.split("|").explode().str.strip()
    paths = paths[paths.str.contains(" > ", regex=False)]
    if paths.empty:
        return values
    levels = paths.str.split(" > ")
    prefix = []
    while True:
        deeper = levels[levels.str.len() > len(prefix) + 1]  # a path keeps its last level
        top = deeper.str[len(prefix)].value_counts()
        if top.empty or top.iloc[0] < share * len(paths):
            break
        prefix.append(top.index[0])
    if not prefix:
        return values
    head = " > ".join(prefix) + " > "
    strip = lambda value: "|".join(p.strip()[len(head):] if p.strip().startswith(head) else p
                                   for p in value.split("|"))
    return values.map(lambda v: strip(v) if isinstance(v, str) else v)


def _sentences(parts) -> str:
    """Join parts as sentences: '. ' between them unless a part already ends in punctuation."""
    out = ""
    for part in parts:
        out = part if not out else out + (" " if out[-1] in ".!?;:" else ". ") + part
    return out
