"""Tables shown or downloaded cannot run as formulas in a spreadsheet."""
import pandas as pd

from engine.spreadsheet import safe_table


def test_text_cells_that_a_spreadsheet_would_run_are_neutralised_and_numbers_kept():
    rows = pd.DataFrame({"title": ['=HYPERLINK("http://x","click")', "=1+1", "+1", "-2 pens", "@SUM(A1)",
                                   "\tcmd", "\rcmd", "a = b", "pen"],
                         "score": [-1.5, 2.0, 3.0, -4.0, 5.0, 6.0, 7.0, 8.0, 9.0]})
    safe = safe_table(rows)
    assert safe["title"].tolist() == ['\'=HYPERLINK("http://x","click")', "'=1+1", "'+1", "'-2 pens", "'@SUM(A1)",
                                      "'\tcmd", "'\rcmd", "a = b", "pen"]
    assert safe["score"].tolist() == rows["score"].tolist()
    assert rows["title"].iloc[1] == "=1+1"  # the caller's table is not changed
    csv = safe.to_csv(index=False)
    assert not any(line.startswith(("=", "+", "-", "@")) for line in csv.splitlines())


def test_rows_as_dicts_and_a_formula_column_name_are_neutralised_too():
    safe = safe_table([{"=cmd": "x", "n": 1}])
    assert list(safe.columns) == ["'=cmd", "n"] and safe["n"].tolist() == [1]
