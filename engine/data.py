"""The upload contract: read one domain dataset (interactions, items, knowledge-graph triples) and validate it.

Everything is read as text first, so ids like `007` survive, and nothing is ever unpickled. Every problem found is
reported together, each naming the file, the rows, the column, what is wrong and how to fix it.
"""
from __future__ import annotations

import codecs
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

FORMATS = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".inter": "\t", ".item": "\t", ".kg": "\t", ".link": "\t",
           ".parquet": None}
ALIASES = {"user": "user_id", "userid": "user_id", "item": "item_id", "itemid": "item_id", "asin": "item_id",
           "time": "timestamp", "ts": "timestamp", "head_id": "head", "relation_id": "relation", "tail_id": "tail"}
REQUIRED = {"interactions": ("user_id", "item_id"), "items": ("item_id", "title"), "kg": ("head", "relation", "tail")}
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
SHOWN_ROWS = 5


@dataclass
class Problem:
    file: str
    rows: list[int]      # 1-based data rows (the header is not counted)
    column: str | None
    problem: str
    fix: str
    n_rows: int = 0      # how many rows are affected in all (rows lists the first few)

    def __str__(self) -> str:
        where = self.file
        if self.rows:
            more = self.n_rows - len(self.rows)
            listed = ", ".join(map(str, self.rows)) + (f" and {more} more" if more > 0 else "")
            where += f", row{'s' if self.n_rows > 1 else ''} {listed}"
        if self.column:
            where += f", column '{self.column}'"
        return f"{where}: {self.problem}. Fix: {self.fix}"


class DatasetError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__(" ".join(str(p) for p in problems))


@dataclass
class DomainData:
    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame | None
    kg: pd.DataFrame | None
    warnings: list[str] = field(default_factory=list)


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise DatasetError([Problem("dataset name", [], None, f"'{name}' is not a valid domain name",
                                    "use 1-40 lower-case letters, digits, '_' or '-', starting with a letter or digit, "
                                    "like 'books' or 'office-2024'")])
    return name


def _problem(file, mask: np.ndarray | pd.Series, column, problem, fix) -> Problem:
    rows = np.flatnonzero(np.asarray(mask)) + 1
    return Problem(file, rows[:SHOWN_ROWS].tolist(), column, problem, fix, n_rows=len(rows))


def read_table(path) -> pd.DataFrame:
    """Any accepted format as a frame of strings with normalised column names."""
    path = Path(path)
    name = path.name
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DatasetError([Problem(name, [], None, f"'{suffix or 'no extension'}' is not a supported file type",
                                    "upload .csv, .tsv, .parquet or RecBole atomic files (.inter, .item, .kg, .link)")])
    if not path.is_file():
        raise DatasetError([Problem(name, [], None, f"the file {path} does not exist", "check the path")])
    if suffix == ".parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for a corrupt file
            raise DatasetError([Problem(name, [], None, f"cannot be read as Parquet ({err})",
                                        "re-export the file as Parquet, or upload CSV")]) from None
        df = df.astype(str).where(df.notna(), "")
    else:
        text = _decode(path.read_bytes(), name)
        try:
            df = pd.read_csv(io.StringIO(text), sep=FORMATS[suffix], dtype=str, keep_default_na=False,
                             skipinitialspace=False)
        except pd.errors.EmptyDataError:
            df = pd.DataFrame()
        except pd.errors.ParserError as err:
            raise DatasetError([Problem(name, [], None, f"cannot be parsed as {suffix[1:].upper()} ({err})",
                                        "check that every row has as many fields as the header")]) from None
    if df.shape[1] == 0 or len(df) == 0:
        raise DatasetError([Problem(name, [], None, "the file is empty (no header or no data rows)",
                                    "upload a file with a header row and at least one data row")])
    df.columns = [_column_name(c) for c in df.columns]
    return df


def _column_name(raw) -> str:
    name = str(raw).strip().split(":")[0].strip().lower()  # RecBole headers are name:type
    return ALIASES.get(name, name)


def _decode(raw: bytes, name: str) -> str:
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            return raw.decode(encoding)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DatasetError([Problem(name, [], None, f"is not UTF-8 text (undecodable byte at line {line})",
                                    "re-save the file as UTF-8")]) from None


def _require(df: pd.DataFrame, kind: str, name: str) -> list[Problem]:
    missing = [c for c in REQUIRED[kind] if c not in df.columns]
    if not missing:
        return []
    return [Problem(name, [], missing[0], f"required column{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(repr(m) for m in missing)} missing (found: {', '.join(map(repr, df.columns))})",
                    f"a {kind} file needs the columns {', '.join(REQUIRED[kind])}; rename the header accordingly")]


def _strip_ids(df: pd.DataFrame, columns, name: str, problems: list[Problem]) -> None:
    for c in columns:
        df[c] = df[c].str.strip()
        blank = df[c] == ""
        if blank.any():
            problems.append(_problem(name, blank, c, "blank value", f"give every row a non-empty {c}, or drop the row"))


def _parse_timestamp(values: pd.Series, name: str, problems: list[Problem]) -> pd.Series:
    stripped = values.str.strip()
    numeric = pd.to_numeric(stripped, errors="coerce")
    if numeric.notna().all():
        return numeric.astype(np.float64)
    dates = pd.to_datetime(stripped.where(numeric.isna()), format="ISO8601", utc=True, errors="coerce")
    seconds = (dates - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    if numeric.notna().any() and dates.notna().any():  # a column is one kind or the other
        bad = numeric.notna() if numeric.notna().sum() < dates.notna().sum() else numeric.isna()
    else:
        bad = numeric.isna() & seconds.isna()
    if bad.any():
        example = stripped[bad].iloc[0]
        problems.append(_problem(name, bad, "timestamp", f"cannot parse '{example}' as a number or ISO-8601 date"
                                 + (" (the column mixes numbers and dates)" if numeric.notna().any() else ""),
                                 "use one kind throughout: epoch seconds, or ISO-8601 like 2024-01-31T12:00:00"))
    return numeric.where(numeric.notna(), seconds).astype(np.float64)


def _read_interactions(path, problems: list[Problem], warnings: list[str]) -> pd.DataFrame | None:
    name = Path(path).name
    df = read_table(path)
    missing = _require(df, "interactions", name)
    if missing:
        problems.extend(missing)
        return None
    df = df.reset_index(drop=True)
    _strip_ids(df, ("user_id", "item_id"), name, problems)
    if "timestamp" in df.columns:
        df["timestamp"] = _parse_timestamp(df["timestamp"], name, problems)
    else:
        df["timestamp"] = df.groupby("user_id", sort=False).cumcount().astype(np.float64)
        warnings.append(f"{name} has no timestamp column: each user's order is taken from the file's row order")
    if "rating" in df.columns:
        rating = pd.to_numeric(df["rating"].str.strip(), errors="coerce")
        if rating.isna().any():
            problems.append(_problem(name, rating.isna(), "rating", f"cannot parse "
                                     f"'{df['rating'][rating.isna()].iloc[0]}' as a number",
                                     "give every rating as a number, or remove the rating column"))
        df["rating"] = rating
    front = ["user_id", "item_id", "timestamp"] + (["rating"] if "rating" in df.columns else [])
    df = df[front + [c for c in df.columns if c not in front]]
    duplicated = df.duplicated()
    if duplicated.any():
        warnings.append(f"{name}: dropped {int(duplicated.sum())} exact duplicate interaction(s)")
        df = df[~duplicated].reset_index(drop=True)
    return df


def _read_items(path, problems: list[Problem], warnings: list[str]) -> pd.DataFrame | None:
    name = Path(path).name
    df = read_table(path)
    missing = _require(df, "items", name)
    if missing:
        problems.extend(missing)
        return None
    _strip_ids(df, ("item_id",), name, problems)
    df["title"] = df["title"].str.strip()
    blank = df["title"] == ""
    if blank.any():
        problems.append(_problem(name, blank, "title", "blank title", "give every item a title"))
    if "description" not in df.columns:
        df["description"] = ""
    df = df[["item_id", "title", "description"] + [c for c in df.columns if c not in ("item_id", "title", "description")]]
    repeated = df["item_id"].duplicated(keep=False) & (df["item_id"] != "")
    if repeated.any():
        titles = df[repeated].groupby("item_id")["title"].nunique()
        conflicting = df["item_id"].isin(titles.index[titles > 1])
        if conflicting.any():
            problems.append(_problem(name, conflicting, "title", "the same item_id appears with different titles "
                                     f"(e.g. '{df['item_id'][conflicting].iloc[0]}')",
                                     "keep one row per item_id, or give the items distinct ids"))
        else:
            dropped = df["item_id"].duplicated()
            warnings.append(f"{name}: kept the first of {int(dropped.sum())} repeated item row(s) with the same title")
            df = df[~dropped]
    return df.reset_index(drop=True)


def _read_kg(path, problems: list[Problem]) -> pd.DataFrame | None:
    path = Path(path)
    name = path.name
    df = read_table(path)
    missing = _require(df, "kg", name)
    if missing:
        problems.extend(missing)
        return None
    _strip_ids(df, ("head", "relation", "tail"), name, problems)
    link = path.with_suffix(".link")
    if path.suffix.lower() == ".kg" and link.is_file():  # RecBole: entities are linked to items by a .link file
        links = read_table(link)
        if {"item_id", "entity_id"} <= set(links.columns):
            to_item = dict(zip(links["entity_id"].str.strip(), links["item_id"].str.strip()))
            df["head"] = df["head"].map(lambda e: to_item.get(e, e))
            df["tail"] = df["tail"].map(lambda e: to_item.get(e, e))
        else:
            problems.append(Problem(link.name, [], "entity_id", "a .link file needs the columns item_id and entity_id",
                                    "use RecBole's header: item_id:token<TAB>entity_id:token"))
    return df[["head", "relation", "tail"]]


def read_domain(name: str, interactions, items=None, kg=None) -> DomainData:
    """Read and validate one domain; raises DatasetError listing every problem (and writes nothing)."""
    problems: list[Problem] = []
    warnings: list[str] = []
    inter = _read_interactions(interactions, problems, warnings)
    item_table = _read_items(items, problems, warnings) if items else None
    triples = _read_kg(kg, problems) if kg else None
    if inter is not None and item_table is not None:
        unknown = ~inter["item_id"].isin(item_table["item_id"]) & (inter["item_id"] != "")
        if unknown.any():
            examples = ", ".join(repr(i) for i in inter["item_id"][unknown].unique()[:3])
            problems.append(_problem(Path(interactions).name, unknown, "item_id",
                                     f"item(s) not in the items file {Path(items).name} (e.g. {examples})",
                                     "add these items to the items file or remove the interactions"))
    if problems:
        raise DatasetError(problems)
    return DomainData(name, inter, item_table, triples, warnings)
