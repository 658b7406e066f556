"""The on-disk cache of item text vectors: each distinct text is encoded once per encoder.

`EmbeddingCache` keeps vectors (float16) in one SQLite file per workspace, keyed by the encoder's `key` (model
content + max_seq_length + precision path) and a hash of the text. Writes are transactions (WAL journal): a crash
leaves the cache as it was before the interrupted batch; readers may read while another process writes.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from pathlib import Path

import numpy as np

from .. import distributed
from .encoder import Progress, TextEncoder, _normalise



# ---- the cache --------------------------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS encoders (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, dim INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (encoder INTEGER NOT NULL REFERENCES encoders(id), text_hash BLOB NOT NULL,
                                    vec BLOB NOT NULL, PRIMARY KEY (encoder, text_hash));
CREATE TABLE IF NOT EXISTS item_tables (fingerprint BLOB PRIMARY KEY, hashes BLOB NOT NULL);
"""


def text_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class EmbeddingCache:
    """Vectors per (encoder key, text hash) in <root>/embeddings.sqlite, stored as float16.

    Stats count distinct texts: `misses` were computed now (once each, however often they repeat in the call),
    `hits` were already stored.
    """

    FILE = "embeddings.sqlite"
    CHUNK = 4096  # texts encoded (and committed) per step: an interrupted run keeps what it finished

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / self.FILE
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _db(self):
        db = sqlite3.connect(self.path, timeout=60)
        try:
            _wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
            with db:
                yield db
        finally:
            db.close()

    def _encoder_id(self, db, key: str, dim: int) -> int:
        db.execute("INSERT OR IGNORE INTO encoders (key, dim) VALUES (?, ?)", (key, dim))
        return db.execute("SELECT id FROM encoders WHERE key = ?", (key,)).fetchone()[0]

    def lookup(self, key: str, dim: int, hashes: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with self._db() as db:
            row = db.execute("SELECT id FROM encoders WHERE key = ?", (key,)).fetchone()
            if row is None:
                return found
            for start in range(0, len(hashes), 900):
                chunk = hashes[start:start + 900]
                marks = ",".join("?" * len(chunk))
                for h, blob in db.execute(f"SELECT text_hash, vec FROM vectors WHERE encoder = ? AND text_hash IN "
                                          f"({marks})", (row[0], *chunk)):
                    vec = np.frombuffer(blob, np.float16)
                    if len(vec) == dim:
                        found[h] = vec
        return found

    def store(self, key: str, hashes: list[bytes], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, np.float16)
        with self._db() as db:
            eid = self._encoder_id(db, key, vectors.shape[1])
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                           ((eid, h, v.tobytes()) for h, v in zip(hashes, vectors)))

    def table_hashes(self, fingerprint: bytes) -> list[bytes] | None:
        """The text hashes, row by row, of the item table with this fingerprint (table_fingerprint), if stored."""
        with self._db() as db:
            row = db.execute("SELECT hashes FROM item_tables WHERE fingerprint = ?", (fingerprint,)).fetchone()
        return None if row is None else [row[0][i:i + 16] for i in range(0, len(row[0]), 16)]

    def store_table(self, fingerprint: bytes, hashes: list[bytes]) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO item_tables VALUES (?, ?)", (fingerprint, b"".join(hashes)))

    def cached(self, key_prefix: str, hashes: list[bytes]) -> tuple[np.ndarray, str] | None:
        """(embeddings of the texts with these hashes (text_hash), as get_or_compute returns them, their key) when
        every one is cached under one key starting with `key_prefix`, else None: a model trained earlier is rebuilt
        without loading the encoder."""
        unique = list(dict.fromkeys(hashes))
        with self._db() as db:
            keys = db.execute("SELECT key, dim FROM encoders WHERE substr(key, 1, ?) = ? ORDER BY id DESC",
                              (len(key_prefix), key_prefix)).fetchall()
        for key, dim in keys:
            found = self.lookup(key, dim, unique)
            if len(found) == len(unique):
                out = np.stack([found[h] for h in hashes]).astype(np.float32) if hashes else np.zeros((0, dim),
                                                                                                     np.float32)
                return _normalise(out), key
        return None

    def get_or_compute(self, encoder: TextEncoder, texts: list[str],
                       progress: Progress = None) -> tuple[np.ndarray, dict]:
        """Embeddings of `texts` in input order ((n, dim) float32, L2-normalised); computes only the misses.

        Under torchrun (engine.distributed; every process calls it with the same texts) the processes share out
        the encoding of the misses (TextEncoder.encode), rank 0 alone writes them, and every process returns the
        same vectors, exactly one process's."""
        started = time.perf_counter()
        rank, world = distributed.rank_world()
        hashes = [text_hash(str(t)) for t in texts]
        first: dict[bytes, str] = {}
        for h, t in zip(hashes, texts):
            first.setdefault(h, str(t))
        unique = list(first)
        found = self.lookup(encoder.key, encoder.dim, unique)
        missing = [h for h in unique if h not in found]
        if world > 1:  # all encode the same chunks: a text that any process misses is missing
            missed = set().union(*distributed.all_gather(missing))
            missing = [h for h in unique if h in missed]
        for start in range(0, len(missing), self.CHUNK):
            chunk = missing[start:start + self.CHUNK]
            step = None if progress is None else (lambda done, _n, s=start: progress(s + done, len(missing)))
            vectors = encoder.encode([first[h] for h in chunk], progress=step, shared=world > 1).astype(np.float16)
            if rank == 0:
                self.store(encoder.key, chunk, vectors)
            found.update(zip(chunk, vectors))
        out = np.zeros((len(texts), encoder.dim), np.float32)
        if texts:
            out[:] = np.stack([found[h] for h in hashes]).astype(np.float32)
        stats = {"hits": len(unique) - len(missing), "misses": len(missing), "texts": len(texts),
                 "seconds": time.perf_counter() - started, "key": encoder.key}
        return _normalise(out), stats


def _wal(db: sqlite3.Connection, tries: int = 100) -> None:
    """Put the cache in WAL mode: readers never block on (or see half of) a write. Two processes that open a new
    cache at once can get "database is locked" here at once, without SQLite's busy timeout being applied (seen
    under torchrun): the switch is retried briefly."""
    for attempt in range(tries):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == tries - 1:  # only the race is waited out
                raise
            time.sleep(0.05)
