"""Tables the product shows or offers for download, made safe to open in a spreadsheet.

A spreadsheet runs a cell that begins with =, +, -, @, a tab or a carriage return as a formula (an uploaded title
like `=HYPERLINK(...)` would become a link, `=1+1` a sum). Every such text cell gets a leading apostrophe, which
spreadsheets show as plain text (OWASP's advice for CSV injection). Numbers are left as they are.
"""
from __future__ import annotations

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def safe_table(table) -> pd.DataFrame:
    """A copy of the table (a DataFrame, or rows as dicts) whose text cells cannot run as formulas."""
    table = pd.DataFrame(table).copy()
    for column in table.columns:
        if not pd.api.types.is_numeric_dtype(table[column]):
            table[column] = table[column].map(safe_cell)
    table.columns = [safe_cell(c) for c in table.columns]
    return table
