"""The upload contract: every format reads, every rejection names file, rows, column and fix."""
import pandas as pd
import pytest

from engine import data
from engine.data import DatasetError, Problem, read_domain, read_table, validate_name


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def problems(err: DatasetError, file=None):
    return [p for p in err.value.problems if file is None or p.file == file]


ITEMS = "item_id,title,categories,brand\n007,red pen,office > pens,bic\ni2,blue pad,office > paper,\n"


def test_csv_keeps_ids_as_strings_and_parses_numbers(tmp_path):
    inter = write(tmp_path, "i.csv", "user_id,item_id,timestamp,rating,extra\n001,007,5,4.5,x\n001,i2,7,3,y\n")
    dd = read_domain("d", inter, write(tmp_path, "items.csv", ITEMS))
    assert dd.interactions["user_id"].tolist() == ["001", "001"]
    assert dd.interactions["item_id"].tolist() == ["007", "i2"]
    assert dd.interactions["timestamp"].tolist() == [5.0, 7.0]
    assert dd.interactions["rating"].tolist() == [4.5, 3.0]
    assert dd.interactions["extra"].tolist() == ["x", "y"]  # other columns are kept
    assert dd.items.columns[:3].tolist() == ["item_id", "title", "description"]
    assert dd.items["brand"].tolist() == ["bic", ""]
    assert dd.warnings == []


def test_tsv_parquet_and_iso_timestamps(tmp_path):
    tsv = write(tmp_path, "i.tsv", "user_id\titem_id\ttimestamp\nu1\ta\t2024-01-01T00:00:00\nu1\tb\t2024-01-01T00:01:00Z\n")
    dd = read_domain("d", tsv)
    assert dd.interactions["timestamp"].diff().iloc[1] == pytest.approx(60.0)
    pq = tmp_path / "i.parquet"
    pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["a", "b"], "timestamp": [1, 2]}).to_parquet(pq)
    assert read_domain("d", pq).interactions["timestamp"].tolist() == [1.0, 2.0]


def test_recbole_atomic_files_with_link(tmp_path):
    inter = write(tmp_path, "d.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\nu1\ti1\t5\t10\n")
    items = write(tmp_path, "d.item", "item_id:token\ttitle:token_seq\tgenre:token_seq\ni1\tthe book\tdrama\n")
    kg = write(tmp_path, "d.kg", "head_id:token\trelation_id:token\ttail_id:token\nm.1\tfilm.genre\tm.drama\n")
    write(tmp_path, "d.link", "item_id:token\tentity_id:token\ni1\tm.1\n")
    dd = read_domain("d", inter, items, kg)
    assert dd.interactions.columns[:4].tolist() == ["user_id", "item_id", "timestamp", "rating"]
    assert dd.items["genre"].tolist() == ["drama"]
    assert dd.kg.values.tolist() == [["i1", "film.genre", "m.drama"]]  # the entity became its item


def test_aliases_are_accepted(tmp_path):
    inter = write(tmp_path, "i.csv", "User,ASIN,Time\nu1,a,1\n")
    assert read_domain("d", inter).interactions[["user_id", "item_id"]].values.tolist() == [["u1", "a"]]


def test_missing_timestamp_takes_file_order_per_user_with_warning(tmp_path):
    inter = write(tmp_path, "i.csv", "user_id,item_id\nu1,a\nu2,a\nu1,b\n")
    dd = read_domain("d", inter)
    assert dd.interactions["timestamp"].tolist() == [0.0, 0.0, 1.0]
    assert any("row order" in w for w in dd.warnings)


def test_missing_required_column_names_what_was_found(tmp_path):
    inter = write(tmp_path, "i.csv", "person,item_id\nu1,a\n")
    with pytest.raises(DatasetError) as err:
        read_domain("d", inter)
    (p,) = problems(err)
    assert p.file == "i.csv" and p.column == "user_id" and "person" in p.problem and p.fix


@pytest.mark.parametrize("text", ["", "user_id,item_id\n"])
def test_empty_file_rejected(tmp_path, text):
    with pytest.raises(DatasetError, match="empty"):
        read_domain("d", write(tmp_path, "i.csv", text))


def test_unreadable_encoding_names_the_line(tmp_path):
    inter = write(tmp_path, "i.csv", "user_id,item_id\nu1,a\nu2,caf\xe9\n", encoding="latin-1")
    with pytest.raises(DatasetError) as err:
        read_domain("d", inter)
    assert "line 3" in str(err.value) and "UTF-8" in str(err.value)


def test_encoding_checked_block_by_block(tmp_path, monkeypatch):
    """Large uploads are checked in blocks: characters split across blocks are fine, and a bad byte in a later
    block is still named by its line."""
    monkeypatch.setattr(data, "BLOCK", 5)
    good = write(tmp_path, "g.csv", "user_id,item_id\nu1,café\nu2,naïve\n")
    assert read_domain("d", good).interactions["item_id"].tolist() == ["café", "naïve"]
    bad = write(tmp_path, "b.csv", "user_id,item_id\nu1,a\nu2,bb\nu3,caf\xe9\n", encoding="latin-1")
    with pytest.raises(DatasetError) as err:
        read_domain("d", bad)
    assert "line 4" in str(err.value)


def test_utf16_with_bom_is_read(tmp_path):
    inter = write(tmp_path, "i.csv", "user_id,item_id\nu1,café\n", encoding="utf-16")
    assert read_domain("d", inter).interactions["item_id"].tolist() == ["café"]


def test_blank_ids_rejected_with_rows(tmp_path):
    inter = write(tmp_path, "i.csv", "user_id,item_id,timestamp\nu1,a,1\n  ,b,2\nu3,,3\n")
    with pytest.raises(DatasetError) as err:
        read_domain("d", inter)
    by_column = {p.column: p.rows for p in problems(err)}
    assert by_column == {"user_id": [2], "item_id": [3]}


def test_unparsable_timestamps_and_ratings_listed_together(tmp_path):
    rows = "".join(f"u{i},a{i},{'yesterday' if i % 2 else i},{'x' if i == 4 else 1}\n" for i in range(20))
    inter = write(tmp_path, "i.csv", "user_id,item_id,timestamp,rating\n" + rows)
    with pytest.raises(DatasetError) as err:
        read_domain("d", inter)
    ts = next(p for p in problems(err) if p.column == "timestamp")
    rating = next(p for p in problems(err) if p.column == "rating")
    assert ts.rows == [2, 4, 6, 8, 10] and ts.n_rows == 10 and "and 5 more" in str(ts)
    assert rating.rows == [5]


def test_interactions_with_unknown_items_rejected(tmp_path):
    inter = write(tmp_path, "i.csv", "user_id,item_id\nu1,007\nu1,ghost\n")
    with pytest.raises(DatasetError) as err:
        read_domain("d", inter, write(tmp_path, "items.csv", ITEMS))
    (p,) = problems(err)
    assert p.file == "i.csv" and p.rows == [2] and p.column == "item_id" and "'ghost'" in p.problem


def test_conflicting_duplicate_items_rejected_and_same_title_kept_once(tmp_path):
    bad = write(tmp_path, "items.csv", "item_id,title\na,pen\na,pencil\nb,pad\n")
    with pytest.raises(DatasetError) as err:
        read_domain("d", write(tmp_path, "i.csv", "user_id,item_id\nu1,a\n"), bad)
    (p,) = problems(err, "items.csv")
    assert p.rows == [1, 2] and p.column == "title"
    ok = write(tmp_path, "items2.csv", "item_id,title\na,pen\na,pen\n")
    dd = read_domain("d", write(tmp_path, "i.csv", "user_id,item_id\nu1,a\n"), ok)
    assert len(dd.items) == 1 and dd.warnings


def test_kg_requires_its_columns(tmp_path):
    kg = write(tmp_path, "t.csv", "head,relation\na,b\n")
    with pytest.raises(DatasetError, match="tail"):
        read_domain("d", write(tmp_path, "i.csv", "user_id,item_id\nu1,a\n"), kg=kg)


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="supported"):
        read_table(write(tmp_path, "i.xlsx", "x"))
    with pytest.raises(DatasetError, match="does not exist"):
        read_table(tmp_path / "nope.csv")


def test_problems_in_several_files_are_reported_together(tmp_path):
    inter = write(tmp_path, "i.csv", "user_id,item_id,timestamp\nu1,a,soon\n")
    items = write(tmp_path, "items.csv", "item_id,title\na,\n")
    with pytest.raises(DatasetError) as err:
        read_domain("d", inter, items)
    assert {p.file for p in problems(err)} == {"i.csv", "items.csv"}


@pytest.mark.parametrize("name", ["Books", "", "a b", "x" * 41, "../etc", "_x", "books\n"])
def test_bad_dataset_names(name):
    with pytest.raises(DatasetError):
        validate_name(name)


@pytest.mark.parametrize("name", ["books", "office-2024", "a_b", "7", "x" * 40])
def test_good_dataset_names(name):
    assert validate_name(name) == name


def test_problem_reads_as_one_sentence():
    p = Problem("interactions.csv", [3, 7], "timestamp", "cannot parse 'yesterday' as a number or ISO-8601 date",
                "use epoch seconds or ISO-8601 like 2024-01-31T12:00:00")
    assert str(p) == ("interactions.csv, rows 3, 7, column 'timestamp': cannot parse 'yesterday' as a number or "
                      "ISO-8601 date. Fix: use epoch seconds or ISO-8601 like 2024-01-31T12:00:00.")
    many = Problem("i.csv", [3, 7, 9, 12, 15], "x", "bad", "fix it", n_rows=45)
    assert str(many) == "i.csv, rows 3, 7, 9, 12, 15 and 40 more, column 'x': bad. Fix: fix it."
    assert str(Problem("i.csv", [], None, "empty", "add rows")) == "i.csv: empty. Fix: add rows."


def test_headers_are_normalised_and_bom_dropped(tmp_path):
    df = read_table(write(tmp_path, "i.txt", "\ufeff User_ID:token \tItem_ID\tNote:Free\n007\t a \tx:y\n"))
    assert df.columns.tolist() == ["user_id", "item_id", "note:free"]  # only RecBole types are stripped
    assert df.values.tolist() == [["007", " a ", "x:y"]]


def test_items_attributes_kept_as_strings(tmp_path):
    items = write(tmp_path, "items.tsv", "item_id\ttitle\tgenre\tcategory\tyear\n"
                  "1\tA\tdrama|comedy\tbooks > fiction\t1999\n2\tB\t\tbooks\tNA\n")
    dd = read_domain("d", write(tmp_path, "i.csv", "user_id,item_id\nu,1\n"), items)
    assert dd.items.to_dict("list") == {"item_id": ["1", "2"], "title": ["A", "B"], "description": ["", ""],
                                        "genre": ["drama|comedy", ""], "category": ["books > fiction", "books"],
                                        "year": ["1999", "NA"]}


def test_parquet_with_numbers_and_nulls_reads_as_strings(tmp_path):
    pq = tmp_path / "items.parquet"
    pd.DataFrame({"item_id": [7, 8], "title": ["a", None], "price": [1.5, None],
                  "stock": pd.array([None, 3], dtype="Int64")}).to_parquet(pq)
    df = read_table(pq)
    assert df.values.tolist() == [["7", "a", "1.5", ""], ["8", "", "", "3"]]


def test_mixed_iso_and_numeric_timestamps_report_the_numbers(tmp_path):
    inter = write(tmp_path, "i.csv", "user_id,item_id,timestamp\nu,a,2024-01-01\nu,b,1700000000\nu,c,2024-02-01\n")
    with pytest.raises(DatasetError) as err:
        read_domain("d", inter)
    (p,) = problems(err)
    assert p.rows == [2] and p.column == "timestamp" and "1700000000" in p.problem and "mixes" in p.problem


def test_blank_timestamps_and_ratings_are_problems(tmp_path):
    inter = write(tmp_path, "i.csv", "user_id,item_id,timestamp,rating\nu,a,1,5\nu,b,,4\nu,c,3,\n")
    with pytest.raises(DatasetError) as err:
        read_domain("d", inter)
    assert {(p.column, tuple(p.rows)) for p in problems(err)} == {("timestamp", (2,)), ("rating", (3,))}


def test_duplicates_dropped_before_file_order_is_used(tmp_path):
    dd = read_domain("d", write(tmp_path, "i.csv", "user_id,item_id\nu1,a\nu1,a\nu1,b\n"))
    assert dd.interactions[["item_id", "timestamp"]].values.tolist() == [["a", 0.0], ["b", 1.0]]
    assert dd.interactions.index.tolist() == [0, 1]


def test_unknown_item_rows_count_dropped_duplicates(tmp_path):
    inter = write(tmp_path, "i.csv", "user_id,item_id\nu1,007\nu1,007\nu1,ghost\n")
    with pytest.raises(DatasetError) as err:
        read_domain("d", inter, write(tmp_path, "items.csv", ITEMS))
    assert problems(err)[0].rows == [3]  # the row as the user sees it in the file


def test_alias_is_ignored_when_the_real_column_exists(tmp_path):
    dd = read_domain("d", write(tmp_path, "i.csv", "user,user_id,item_id\nnick,u1,a\n"))
    assert dd.interactions[["user_id", "user"]].values.tolist() == [["u1", "nick"]]


def test_header_names_repeated_after_normalising_are_rejected(tmp_path):
    with pytest.raises(DatasetError, match="'title' more than once"):
        read_table(write(tmp_path, "items.csv", "item_id,Title,title\na,b,c\n"))


def test_row_with_too_many_fields_names_the_row(tmp_path):
    with pytest.raises(DatasetError) as err:
        read_table(write(tmp_path, "i.csv", "user_id,item_id\nu1,a\nu2,b,extra\n"))
    assert problems(err)[0].rows == [2]


def test_short_rows_read_as_blank_ids(tmp_path):
    with pytest.raises(DatasetError) as err:
        read_domain("d", write(tmp_path, "i.csv", "user_id,item_id\nu1,a\nu2\n"))
    (p,) = problems(err)
    assert p.column == "item_id" and p.rows == [2]


@pytest.mark.parametrize("raw", ["user_id,item_id\nu1,a\n".encode("utf-16-le"),  # no BOM
                                 "\ufeffuser_id,item_id\nu1,a\n".encode("utf-16-le") + b"x"])  # odd length
def test_broken_utf16_rejected(tmp_path, raw):
    with pytest.raises(DatasetError, match="re-save the file as UTF-8"):
        read_table(write(tmp_path, "i.csv", raw))


def test_unreadable_file_does_not_hide_problems_in_other_files(tmp_path):
    inter = write(tmp_path, "i.csv", "user_id,item_id\nu1,caf\xe9\n", encoding="latin-1")
    items = write(tmp_path, "items.csv", "item_id,name\na,pen\n")
    kg = write(tmp_path, "t.tsv", "head\trelation\ttail\na\t\tb\n")
    with pytest.raises(DatasetError) as err:
        read_domain("Bad Name", inter, items, kg)
    assert [(p.file, p.column) for p in problems(err)] == [
        ("dataset name", None), ("i.csv", None), ("items.csv", "title"), ("t.tsv", "relation")]


def test_kg_entities_that_are_not_items_are_kept(tmp_path):
    kg = write(tmp_path, "d.kg", "head_id:token\trelation_id:token\ttail_id:token\nm.1\tr\tm.2\nm.3\tr\tm.1\n")
    write(tmp_path, "d.link", "item_id:token\tentity_id:token\ni1\tm.1\n")
    dd = read_domain("d", write(tmp_path, "d.inter", "user_id:token\titem_id:token\nu\ti1\n"), kg=kg)
    assert dd.kg.values.tolist() == [["i1", "r", "m.2"], ["m.3", "r", "i1"]]


def test_a_field_left_open_names_its_row(tmp_path):
    with pytest.raises(DatasetError) as err:
        read_table(write(tmp_path, "i.csv", 'user_id,item_id\nu1,a\nu2,"b\nu3,c\n'))
    assert problems(err)[0].rows == [2]


def test_exactly_repeated_header_names_are_rejected_in_text_and_parquet(tmp_path):
    with pytest.raises(DatasetError, match="'user_id' more than once"):
        read_table(write(tmp_path, "i.csv", "user_id,item_id,user_id\nu1,a,u2\n"))
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table([pa.array(["u1"]), pa.array(["a"]), pa.array(["x"])],
                            names=["user_id", "item_id", "item_id"]), tmp_path / "i.parquet")
    with pytest.raises(DatasetError, match="'item_id' more than once"):
        read_table(tmp_path / "i.parquet")


def test_parquet_binary_and_nested_columns_name_the_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"user_id": pa.array([b"u1", b"u2"]), "item_id": ["a", "b"]}), tmp_path / "text.parquet")
    assert read_table(tmp_path / "text.parquet")["user_id"].tolist() == ["u1", "u2"]  # bytes that are UTF-8 text
    pq.write_table(pa.table({"user_id": pa.array([b"u1", b"\xff\xfe"]), "item_id": pa.array([["a"], ["b", "c"]]),
                             "meta": pa.array([{"k": 1}, {"k": 2}])}), tmp_path / "bad.parquet")
    with pytest.raises(DatasetError) as err:
        read_table(tmp_path / "bad.parquet")
    found = {p.column: p for p in problems(err)}
    assert set(found) == {"user_id", "item_id", "meta"} and found["user_id"].rows == [2]
    assert "nested values" in found["item_id"].problem and "not UTF-8" in found["user_id"].problem


@pytest.mark.parametrize("stamp", ["-1e23", "1e17", "inf"])
def test_a_timestamp_that_is_no_point_in_time_is_rejected(tmp_path, stamp):
    with pytest.raises(DatasetError) as err:
        read_domain("d", write(tmp_path, "i.csv", f"user_id,item_id,timestamp\nu1,a,5\nu1,b,{stamp}\n"))
    (p,) = problems(err)
    assert p.column == "timestamp" and p.rows == [2]
    ok = read_domain("d", write(tmp_path, "j.csv", "user_id,item_id,timestamp\nu1,a,1700000000123\nu1,b,-5\n"))
    assert ok.interactions["timestamp"].tolist() == [1700000000123.0, -5.0]  # milliseconds, positions: times


def test_unicode_twins_are_one_id_after_nfc_with_a_warning(tmp_path):
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    dd = read_domain("d", write(tmp_path, "i.csv", f"user_id,item_id\nu1,{nfc}\nu2,{nfd}\n"),
                     write(tmp_path, "items.csv", f"item_id,title\n{nfc},coffee\n"))
    assert dd.interactions["item_id"].tolist() == [nfc, nfc]
    assert any("normalised to NFC" in w for w in dd.warnings)


def test_a_kg_without_its_link_and_triples_that_reach_no_item_are_warned_of(tmp_path):
    inter = write(tmp_path, "d.inter", "user_id:token\titem_id:token\nu\ti1\n")
    kg = write(tmp_path, "d.kg", "head_id:token\trelation_id:token\ttail_id:token\nm.1\tr\tm.2\ni1\tr\tm.3\n")
    dd = read_domain("d", inter, kg=kg)
    assert any("no d.link beside it" in w for w in dd.warnings)
    assert any("1 of 2 triple(s) name no item" in w for w in dd.warnings)


def test_exact_duplicate_rows_dropped_keeping_the_first(tmp_path):
    inter = write(tmp_path, "i.csv", "user_id,item_id,timestamp,note\nu1,a,1,x\nu1,a,1,y\nu2,a,1,x\nu1,a,1,x\n"
                                     "u1,a,2,x\nu2,a,1,x\n")
    dd = read_domain("d", inter)
    assert dd.interactions[["user_id", "timestamp", "note"]].values.tolist() == [
        ["u1", 1.0, "x"], ["u1", 1.0, "y"], ["u2", 1.0, "x"], ["u1", 2.0, "x"]]
    assert any("dropped 2 exact duplicate" in w for w in dd.warnings)


def test_html_entities_in_item_text_are_unescaped_with_a_warning(tmp_path):
    inter = write(tmp_path, "i.csv", "user_id,item_id\nu1,a\nu1,b\n")
    items = write(tmp_path, "items.csv", "item_id,title,brand\na,Black &amp; Decker drill,B&amp;D\n"
                                         "b,AT&T phone &foo; &#233;t&eacute;,AT&T\n")
    dd = read_domain("d", inter, items)
    assert dd.items["title"].tolist() == ["Black & Decker drill", "AT&T phone &foo; été"]
    assert dd.items["brand"].tolist() == ["B&D", "AT&T"]
    assert any("3 value(s) held HTML entities" in w for w in dd.warnings)


def test_items_with_titles_only_and_no_triples_are_told_their_knowledge_graph_is_empty(tmp_path):
    inter = write(tmp_path, "i.csv", "user_id,item_id\nu1,a\n")
    titles = write(tmp_path, "t.csv", "item_id,title\na,a pen\n")
    assert any("no attribute columns" in w for w in read_domain("d", inter, titles).warnings)
    attributed = write(tmp_path, "a.csv", "item_id,title,category\na,a pen,office > pens\n")
    assert not any("no attribute columns" in w for w in read_domain("d", inter, attributed).warnings)
    triples = write(tmp_path, "k.csv", "head,relation,tail\na,category,pens\n")
    assert not any("no attribute columns" in w for w in read_domain("d", inter, titles, triples).warnings)
