"""The upload contract: read one domain dataset (interactions, items, knowledge-graph triples) and validate it.

Everything is read as text first, so ids like `007` survive, and nothing is ever unpickled. Every problem found in
every file is reported together, each naming the file, the rows, the column, what is wrong and how to fix it. This
module never writes anything, so a rejected dataset has no side effects.
"""
from __future__ import annotations

import codecs
import html
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .kg import attribute_columns

try:  # jemalloc hands an upload's freed buffers back to the system; mimalloc (Arrow's default) keeps them
    pa.set_memory_pool(pa.jemalloc_memory_pool())
except NotImplementedError:  # a pyarrow built without it
    pass

SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".inter": "\t", ".item": "\t", ".kg": "\t", ".link": "\t",
              ".parquet": None}
REQUIRED = {"interactions": ("user_id", "item_id"), "items": ("item_id", "title"), "kg": ("head", "relation", "tail")}
ALIASES = {  # per kind of file: canonical name -> other spellings accepted when the canonical one is absent
    "interactions": {"user_id": ("user", "userid"), "item_id": ("item", "itemid", "asin"),
                     "timestamp": ("time", "ts")},
    "items": {"item_id": ("item", "itemid", "asin")},
    "kg": {"head": ("head_id",), "relation": ("relation_id",), "tail": ("tail_id",)},  # RecBole .kg headers
}
RECBOLE_TYPE = re.compile(r":\s*(token|token_seq|float|float_seq)$")
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
SHOWN_ROWS = 5
TIMESTAMP_FIX = "use epoch seconds or ISO-8601 like 2024-01-31T12:00:00, the same kind in every row"
TEXT = "string[pyarrow]"  # how uploaded text is held while it is checked
BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
BLOCK = 1 << 24  # bytes read at a time while an upload's encoding is checked
HTML_ENTITY = r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});"
TIMESTAMP_LIMIT = 1e16  # |t| beyond this is no time: epoch microseconds reach it only in the year 2286


@dataclass
class Problem:
    file: str
    rows: list[int]      # 1-based data rows (the header is not counted); [] when not row-specific
    column: str | None
    problem: str
    fix: str
    n_rows: int = 0      # how many rows are affected in all, when more than `rows` lists

    def __str__(self) -> str:
        where = self.file
        if self.rows:
            total = max(self.n_rows, len(self.rows))
            more = f" and {total - len(self.rows)} more" if total > len(self.rows) else ""
            where += f", row{'s' if total > 1 else ''} {', '.join(map(str, self.rows))}{more}"
        if self.column:
            where += f", column '{self.column}'"
        return f"{where}: {self.problem.rstrip('.')}. Fix: {self.fix.rstrip('.')}."


class DatasetError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__(" ".join(map(str, self.problems)))


@dataclass
class DomainData:
    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame | None
    kg: pd.DataFrame | None
    warnings: list[str] = field(default_factory=list)


def _problem(file: str, mask: pd.Series, column, problem: str, fix: str) -> Problem:
    """A problem on the rows where `mask` is true; the mask's index labels are 0-based positions in the file."""
    rows = (mask.index[mask.to_numpy(dtype=bool)] + 1).tolist()
    return Problem(file, rows[:SHOWN_ROWS], column, problem, fix, n_rows=len(rows))


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise DatasetError([Problem("dataset name", [], None, f"{name!r} is not a valid domain name",
                                    "use 1-40 lower-case letters, digits, '_' or '-', starting with a letter or digit, "
                                    "like 'books' or 'office-2024'")])
    return name


# ---- reading ----------------------------------------------------------------------------------------------------
def read_table(path) -> pd.DataFrame:
    """Any accepted format as a frame of strings ('' for missing) with normalised column names."""
    path = Path(path)
    name, suffix = path.name, path.suffix.lower()
    if suffix not in SEPARATORS:
        _fail(name, f"'{suffix or 'no extension'}' is not a supported file type",
              "upload .csv, .tsv (or tab-separated .txt), .parquet or RecBole atomic files (.inter, .item, .kg, .link)")
    if not path.is_file():
        _fail(name, f"the file {path} does not exist", "check the path and upload the file again")
    df = _read_parquet(path) if suffix == ".parquet" else _read_text(path, SEPARATORS[suffix])
    if df.shape[1] == 0 or len(df) == 0:
        _fail(name, "the file is empty (no header or no data rows)",
              "upload a file with a header row and at least one data row")
    df.columns = _column_names(df.columns, name)
    return df


def _column_names(names, file: str) -> list[str]:
    """Header names without RecBole's type suffix, stripped and lower-cased; each must be distinct."""
    names = [RECBOLE_TYPE.sub("", str(c).strip()).strip().lower() for c in names]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        _fail(file, f"the header names {', '.join(map(repr, repeated))} more than once (names are case-insensitive)",
              "give every column a distinct name")
    return names


def _fail(name: str, problem: str, fix: str, rows=()):
    raise DatasetError([Problem(name, list(rows), None, problem, fix)])


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        table = pq.ParquetFile(path).read()
    except Exception as err:  # pyarrow raises several types for a corrupt or foreign file
        _fail(path.name, f"cannot be read as Parquet ({err})", "re-export the file as Parquet, or upload a CSV")
    problems = []
    for i, f in enumerate(table.schema):
        if pa.types.is_nested(f.type):
            problems.append(Problem(path.name, [], f.name, f"the column holds nested values ({f.type}), not text or "
                                    f"numbers", "flatten it to one text or number per row (a list as 'a|b')"))
        elif pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) or pa.types.is_fixed_size_binary(f.type):
            column = table.column(i)
            try:
                table = table.set_column(i, f.name, column.cast(pa.string()))  # raw bytes that are UTF-8 text
            except pa.ArrowInvalid:
                bad = _first_non_utf8(column.to_pylist())
                problems.append(Problem(path.name, [bad + 1], f.name, "the column holds raw bytes that are not "
                                        "UTF-8 text", "store the column as text (UTF-8 strings)"))
    if problems:
        raise DatasetError(problems)
    columns = [_parquet_text(table.column(i)) for i in range(table.num_columns)]
    return pd.concat(columns, axis=1, keys=range(len(columns))).set_axis(table.column_names, axis=1)


def _parquet_text(column: pa.ChunkedArray) -> pd.Series:
    """One Parquet column as text, '' where missing: text and integers stay in Arrow (a quarter of the memory of
    Python strings); other types are written as pandas writes them (1.5, 2024-01-31 12:00:00)."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_integer(column.type):
        return pd.Series(pd.arrays.ArrowStringArray(pc.fill_null(column.cast(pa.string()), "")))
    values = column.to_pandas()
    return values.astype(str).where(values.notna(), "")


def _first_non_utf8(values: list) -> int:
    for row, value in enumerate(values):
        if value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return row
    return 0


def _read_text(path: Path, sep: str) -> pd.DataFrame:
    """Header and rows as text. The header is read as a row (so repeated names stay visible, not renamed); a row
    with more fields than the header is refused naming it, a shorter one reads as blanks (checked later)."""
    encoding = _encoding(path)
    fix = "make every row have as many fields as the header, quoting fields that contain the separator"
    try:  # Arrow strings: a quarter of the memory Python strings take (uploads can be hundreds of MB)
        raw = pd.read_csv(path, encoding=encoding, sep=sep, dtype=TEXT, keep_default_na=False,
                          header=None, index_col=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except pd.errors.ParserError as err:
        line, start = re.search(r"line (\d+)", str(err)), re.search(r"starting at row (\d+)", str(err))
        row = int(line.group(1)) - 1 if line else int(start.group(1)) if start else 0  # data rows count from 1
        rows = [row] if row > 0 else []
        saw = re.search(r"Expected (\d+) fields .* saw (\d+)", str(err))
        what = f"a row has {saw.group(2)} fields where the header has {saw.group(1)}" if saw else str(err).strip()
        _fail(path.name, f"cannot be split into columns ({what})", fix, rows)
    df = raw.iloc[1:].reset_index(drop=True).fillna("")  # a short row's missing fields: blanks
    df.columns = raw.iloc[0].fillna("").tolist()
    return df


def _encoding(path: Path) -> str:
    """The codec that reads the file: UTF-8 (with or without BOM) or UTF-16 with BOM. Anything else is rejected
    naming the first bad line. Checked in blocks, so a large upload is never held twice in memory."""
    with path.open("rb") as f:
        head = f.read(3)
        f.seek(0)
        encoding = next((enc for bom, enc in BOMS if head.startswith(bom)), "utf-8")
        decoder, line = codecs.getincrementaldecoder(encoding)(), 1
        try:
            while block := f.read(BLOCK):
                text = decoder.decode(block)
                if "\0" in text:  # UTF-16 without a BOM decodes as UTF-8 full of NUL characters
                    line += text[: text.index("\0")].count("\n")
                    _fail(path.name, f"line {line} (the header is line 1) contains NUL characters (UTF-16 without "
                          f"a BOM?)", "re-save the file as UTF-8")
                line += text.count("\n")
            block = decoder.getstate()[0]  # bytes of an unfinished character at the end
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as err:  # err.start counts from the block, or from bytes left over from it
            line += block[: err.start].decode(encoding, errors="replace").count("\n")
            byte = block[min(err.start, len(block) - 1)]
            _fail(path.name, f"line {line} (the header is line 1) is not valid {encoding.upper()} text "
                  f"(byte 0x{byte:02x})", "re-save the file as UTF-8")
    return {"utf-8": "utf-8-sig", "utf-16-le": "utf-16", "utf-16-be": "utf-16"}[encoding]  # the -sig/16 drop BOMs


def _canonical(df: pd.DataFrame, kind: str, name: str) -> Problem | None:
    """Rename accepted aliases in place; a problem naming the columns found when a required one is still missing."""
    for column, aliases in ALIASES[kind].items():
        present = [a for a in aliases if a in df.columns]
        if column not in df.columns and len(present) == 1:
            df.rename(columns={present[0]: column}, inplace=True)
    missing = [c for c in REQUIRED[kind] if c not in df.columns]
    if not missing:
        return None
    return Problem(name, [], missing[0],
                   f"required column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} not found "
                   f"(found: {', '.join(map(repr, df.columns))})",
                   f"{kind} files need the columns {', '.join(REQUIRED[kind])}; rename the header accordingly")


def _load(path, kind: str, problems: list[Problem]) -> pd.DataFrame | None:
    """The file read and its columns named, or None (with the problems recorded) when it cannot be checked further."""
    try:
        df = read_table(path)
    except DatasetError as err:
        problems.extend(err.problems)
        return None
    missing = _canonical(df, kind, Path(path).name)
    if missing:
        problems.append(missing)
        return None
    return df


# ---- checks -----------------------------------------------------------------------------------------------------
def _strip_ids(df: pd.DataFrame, columns, name: str, problems: list[Problem], warnings: list[str]) -> None:
    """Ids without surrounding spaces, in Unicode NFC (one id typed as 'é' or as 'e' + accent is one id)."""
    for c in columns:
        df[c] = df[c].str.strip()
        other = df[c][df[c].str.contains(r"[^\x00-\x7f]", regex=True)]  # ASCII is NFC already
        nfc = other.map(lambda v: unicodedata.normalize("NFC", v))
        changed = nfc != other
        if changed.any():
            df.loc[changed.index[changed], c] = nfc[changed]
            warnings.append(f"{name}: {int(changed.sum())} {c} value(s) written in another Unicode form were "
                            f"normalised to NFC (e.g. {other[changed].iloc[0]!r}), so values that look equal are equal")
        blank = df[c] == ""
        if blank.any():
            problems.append(_problem(name, blank, c, f"blank {c}", f"give every row a non-empty {c}, or drop the row"))


def _numbers(values: pd.Series) -> pd.Series:
    """Finite numbers, NaN where a value is not one."""
    try:  # Arrow parses a column of numbers in place; pandas' fallback goes through Python objects
        numeric = pd.Series(pc.cast(pa.array(values), pa.float64()).to_numpy(zero_copy_only=False), values.index)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        numeric = pd.to_numeric(values, errors="coerce").astype(np.float64)
    return numeric.where(np.isfinite(numeric))


def _parse_timestamp(values: pd.Series, name: str, problems: list[Problem]) -> pd.Series:
    """Float seconds: numeric if every value is a number, else ISO-8601 dates (then numbers in the column are errors)."""
    text = values.str.strip()
    blank = text == ""
    if blank.any():
        problems.append(_problem(name, blank, "timestamp", "blank timestamp",
                                 "fill in every timestamp, or remove the column to use the file's row order"))
    numeric = _numbers(text.where(~blank))
    if numeric[~blank].notna().all():
        return _within_limit(numeric, name, problems)
    dates = pd.to_datetime(text.where(~blank), format="ISO8601", utc=True, errors="coerce")
    if dates.isna().all():  # no dates at all: a numeric column with some junk
        parsed, mixed = numeric, False
    else:
        parsed, mixed = (dates - pd.Timestamp(0, tz="UTC")).dt.total_seconds(), numeric.notna().any()
    bad = parsed.isna() & ~blank
    if bad.any():
        problems.append(_problem(name, bad, "timestamp", f"cannot parse '{text[bad].iloc[0]}' as a number or "
                                 f"ISO-8601 date{' (the column mixes dates and numbers)' if mixed else ''}",
                                 TIMESTAMP_FIX))
    return _within_limit(parsed.astype(np.float64), name, problems)


def _within_limit(seconds: pd.Series, name: str, problems: list[Problem]) -> pd.Series:
    absurd = seconds.abs() > TIMESTAMP_LIMIT
    if absurd.any():
        problems.append(_problem(name, absurd, "timestamp", f"{seconds[absurd].iloc[0]:g} is no point in time "
                                 f"(beyond ±{TIMESTAMP_LIMIT:g})", TIMESTAMP_FIX))
    return seconds


def _parse_rating(values: pd.Series, name: str, problems: list[Problem]) -> pd.Series:
    text = values.str.strip()
    rating = _numbers(text)
    bad = rating.isna()
    if bad.any():
        example = text[bad].iloc[0]
        problems.append(_problem(name, bad, "rating", f"cannot parse '{example}' as a number" if example else
                                 "blank rating", "give every rating as a number, or remove the rating column"))
    return rating


def _read_interactions(path, problems: list[Problem], warnings: list[str]) -> pd.DataFrame | None:
    """Interactions in file order minus exact duplicates; the index keeps each row's 0-based position in the file."""
    name = Path(path).name
    df = _load(path, "interactions", problems)
    if df is None:
        return None
    _strip_ids(df, ("user_id", "item_id"), name, problems, warnings)
    has_time = "timestamp" in df.columns
    if has_time:
        df["timestamp"] = _parse_timestamp(df["timestamp"], name, problems)
    if "rating" in df.columns:
        df["rating"] = _parse_rating(df["rating"], name, problems)
    duplicated = _repeated_rows(df)
    if duplicated.any():
        warnings.append(f"{name}: dropped {int(duplicated.sum())} exact duplicate interaction row(s), keeping the first")
        df = df[~duplicated]
    if not has_time:  # after dropping duplicates, so positions count each interaction once
        df = df.assign(timestamp=df.groupby("user_id", sort=False).cumcount().astype(np.float64))
        warnings.append(f"{name} has no timestamp column: each user's order was taken from the file's row order")
    front = ["user_id", "item_id", "timestamp"] + (["rating"] if "rating" in df.columns else [])
    return df[front + [c for c in df.columns if c not in front]]


def _repeated_rows(df: pd.DataFrame) -> np.ndarray:
    """Rows equal in every column to an earlier row: df.duplicated() in a third of its memory (uploads are large).
    Rows are sorted by their columns' codes; equal rows end up side by side, in file order (the sort is stable)."""
    keys = [df[c].to_numpy() if pd.api.types.is_float_dtype(df[c]) else _codes(df[c]) for c in df.columns]
    order = np.lexsort(keys[::-1])
    same = np.ones(max(len(df) - 1, 0), bool)
    for key in keys:
        ordered = key[order]
        same &= ordered[1:] == ordered[:-1]
    repeated = np.zeros(len(df), bool)
    repeated[order[1:][same]] = True
    return repeated


def _codes(values: pd.Series) -> np.ndarray:
    """One integer per distinct text value."""
    encoded = pc.dictionary_encode(pa.array(values))
    if isinstance(encoded, pa.ChunkedArray):  # Arrow-backed columns: the chunks share one dictionary
        encoded = encoded.combine_chunks()
    return encoded.indices.to_numpy()


def _read_items(path, problems: list[Problem], warnings: list[str],
                with_triples: bool = False) -> pd.DataFrame | None:
    name = Path(path).name
    df = _load(path, "items", problems)
    if df is None:
        return None
    _strip_ids(df, ("item_id", "title"), name, problems, warnings)
    if "description" not in df.columns:
        df["description"] = ""
    front = ["item_id", "title", "description"]
    df = df[front + [c for c in df.columns if c not in front]]
    _unescape_html(df, [c for c in df.columns if c != "item_id"], name, warnings)
    if not attribute_columns(df) and not with_triples:  # uploaded triples give the items their entities
        warnings.append(f"{name} has no attribute columns (category, brand, ...) besides the title: this domain's "
                        f"items get no knowledge-graph entities, so models read their text alone (add attribute "
                        f"columns, or a .kg file of triples, to give them some)")
    repeated = df["item_id"].duplicated(keep=False) & (df["item_id"] != "")
    if not repeated.any():
        return df
    titles = df[repeated].groupby("item_id")["title"].nunique()
    conflicting = df["item_id"].isin(titles.index[titles > 1])
    if conflicting.any():
        problems.append(_problem(name, conflicting, "title", "the same item_id appears with different titles "
                                 f"(e.g. '{df['item_id'][conflicting].iloc[0]}')",
                                 "keep one row per item_id, or give the items distinct ids"))
        return df
    dropped = df["item_id"].duplicated()
    warnings.append(f"{name}: kept the first of each repeated item_id with the same title "
                    f"({int(dropped.sum())} row(s) dropped)")
    return df[~dropped].reset_index(drop=True)


def _unescape_html(df: pd.DataFrame, columns: list[str], name: str, warnings: list[str]) -> None:
    """Text with HTML entities (scraped catalogues: 'Black &amp; Decker') unescaped in place, with a warning."""
    changed, example = 0, None
    for c in columns:
        marked = df[c][df[c].str.contains(HTML_ENTITY, regex=True)]
        plain = marked.map(html.unescape)
        real = plain != marked  # '&foo;' is no entity and stays
        if real.any():
            example = example or marked[real].iloc[0]
            df.loc[real.index[real], c] = plain[real]
            changed += int(real.sum())
    if changed:
        warnings.append(f"{name}: {changed} value(s) held HTML entities (e.g. {example[:60]!r}); they were "
                        f"unescaped, so '&amp;' reads '&'")


def _read_kg(path, problems: list[Problem], warnings: list[str]) -> pd.DataFrame | None:
    path = Path(path)
    df = _load(path, "kg", problems)
    if df is None:
        return None
    _strip_ids(df, ("head", "relation", "tail"), path.name, problems, warnings)
    link = path.with_suffix(".link")
    if path.suffix.lower() == ".kg":  # RecBole links entities to items in a .link file
        if not link.is_file():
            warnings.append(f"{path.name} has no {link.name} beside it: its entity ids were matched to item ids "
                            f"as they are (RecBole's .link maps entities to items; upload it with the same name)")
        else:
            links = _link_table(link, problems)
            if links is not None:
                for c in ("head", "tail"):
                    df[c] = df[c].map(links).fillna(df[c])
    return df[["head", "relation", "tail"]]


def _link_table(path: Path, problems: list[Problem]) -> pd.Series | None:
    """entity_id -> item_id from a RecBole .link file."""
    try:
        links = read_table(path)
    except DatasetError as err:
        problems.extend(err.problems)
        return None
    if not {"item_id", "entity_id"} <= set(links.columns):
        problems.append(Problem(path.name, [], "entity_id", "a .link file needs the columns item_id and entity_id "
                                f"(found: {', '.join(map(repr, links.columns))})",
                                "use RecBole's header: item_id:token<TAB>entity_id:token"))
        return None
    links = links.apply(lambda column: column.str.strip()).drop_duplicates("entity_id")
    return links.set_index("entity_id")["item_id"]


def read_histories(path) -> tuple[pd.DataFrame, list[str]]:
    """(rows, warnings) of a file of user histories: the interactions contract (user_id, item_id, optional
    timestamp) plus an optional `domain` column, checked like an upload."""
    problems: list[Problem] = []
    warnings: list[str] = []
    rows = _read_interactions(path, problems, warnings)
    if problems:
        raise DatasetError(problems)
    if "domain" in rows.columns:
        rows["domain"] = rows["domain"].str.strip()
    return rows.reset_index(drop=True), warnings


def ingest(store, domain: str, interactions, items=None, kg=None, replace: bool = False) -> dict:
    """Validate one domain dataset and store it in `store` (engine.store.Store); api.ingest's work. An existing name
    needs `replace`. Nothing is written on error."""
    validate_name(domain)
    if not replace:
        store.refuse_existing(domain)  # before the (slow) read
    dd = read_domain(domain, interactions, items, kg)
    inter = dd.interactions
    stats = {"n_users": int(inter["user_id"].nunique()),
             "n_items": int(len(dd.items) if dd.items is not None else inter["item_id"].nunique()),
             "n_interactions": int(len(inter)), "n_triples": int(len(dd.kg) if dd.kg is not None else 0)}
    info = {"sources": {k: str(v) for k, v in (("interactions", interactions), ("items", items), ("kg", kg)) if v},
            "warnings": dd.warnings}
    record = store.put_dataset(domain, {"interactions": inter, "items": dd.items, "kg": dd.kg}, stats, info, replace)
    return {**record, "warnings": dd.warnings}


def read_domain(name: str, interactions, items=None, kg=None) -> DomainData:
    """Read and validate one domain; raises DatasetError listing every problem in every file (and writes nothing)."""
    problems: list[Problem] = []
    warnings: list[str] = []
    try:
        validate_name(name)
    except DatasetError as err:
        problems.extend(err.problems)
    inter = _read_interactions(interactions, problems, warnings)
    item_table = _read_items(items, problems, warnings, with_triples=bool(kg)) if items else None
    triples = _read_kg(kg, problems, warnings) if kg else None
    if inter is not None and item_table is not None:
        unknown = ~inter["item_id"].isin(item_table["item_id"]) & (inter["item_id"] != "")
        if unknown.any():
            examples = ", ".join(map(repr, inter["item_id"][unknown].unique()[:3]))
            problems.append(_problem(Path(interactions).name, unknown, "item_id",
                                     f"item_id(s) not in the items file {Path(items).name} (e.g. {examples})",
                                     "add these items to the items file or remove the interactions"))
    if triples is not None and inter is not None:
        known = set(item_table["item_id"] if item_table is not None else inter["item_id"])
        dangling = ~(triples["head"].isin(known) | triples["tail"].isin(known))
        if dangling.any():
            warnings.append(f"{Path(kg).name}: {int(dangling.sum())} of {len(triples)} triple(s) name no item of "
                            f"the domain as head or tail (e.g. {triples['head'][dangling].iloc[0]!r}); they reach "
                            f"items only through other triples' entities, if at all")
    if problems:
        raise DatasetError(problems)
    return DomainData(name, inter.reset_index(drop=True), item_table, triples, warnings)
