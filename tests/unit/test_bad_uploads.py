"""A corpus of bad uploads: each is refused with exit 2 and one message, and leaves the workspace byte for byte as
it was."""
import hashlib

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine import __main__ as cli
from engine import api


def snapshot(ws):
    """Every file's bytes but SQLite's shared-memory index (-shm), which every reader rewrites."""
    return {str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(ws.rglob("*")) if p.is_file() and not p.name.endswith("-shm")}


def bad_uploads(folder):
    """(name, file) of uploads that must be refused, one per kind of problem."""
    files = {
        "ragged.csv": "user_id,item_id\nu1,a\nu2,b,c\n",
        "twice.csv": "user_id,item_id,item_id\nu1,a,b\n",
        "no_item.csv": "user_id,product\nu1,a\n",
        "blank.csv": "user_id,item_id\nu1,\n",
        "absurd.csv": "user_id,item_id,timestamp\nu1,a,-1e23\n",
        "junk_time.csv": "user_id,item_id,timestamp\nu1,a,yesterday\n",
        "open_quote.csv": 'user_id,item_id\nu1,"a\nu2,b\n',
        "empty.csv": "",
        "header_only.csv": "user_id,item_id\n",
        "latin1.csv": "user_id,item_id\nu1,caf\xe9\n".encode("latin-1"),
        "utf16_no_bom.csv": "user_id,item_id\nu1,a\n".encode("utf-16-le"),
        "notes.docx": "user_id,item_id\nu1,a\n",
    }
    paths = []
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        paths.append(path)
    pq.write_table(pa.table({"user_id": ["u1"], "item_id": pa.array([["a", "b"]])}), folder / "nested.parquet")
    pq.write_table(pa.table({"user_id": pa.array([b"\xff"]), "item_id": ["a"]}), folder / "bytes.parquet")
    (folder / "broken.parquet").write_bytes(b"PAR1 not really")
    return [*paths, folder / "nested.parquet", folder / "bytes.parquet", folder / "broken.parquet"]


def test_every_bad_upload_is_refused_and_changes_no_byte(tmp_path, domain_files, capsys):
    ws = tmp_path / "ws"
    inter, items = domain_files["tgt"]
    api.ingest("tgt", inter, items, workspace=ws)
    before = snapshot(ws)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for path in bad_uploads(uploads):
        for domain, extra in (("fresh", []), ("tgt", ["--replace"])):
            code = cli.main(["ingest", "--domain", domain, "--interactions", str(path), *extra, "--workspace", str(ws)])
            err = capsys.readouterr().err
            assert code == 2 and err.startswith("error: ") and "Traceback" not in err, (path.name, err)
            assert path.name in err or "dataset name" in err, (path.name, err)  # the message names the file
    assert cli.main(["ingest", "--domain", "Bad Name!", "--interactions", str(inter), "--workspace", str(ws)]) == 2
    assert snapshot(ws) == before
