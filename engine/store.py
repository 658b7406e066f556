"""The workspace: a SQLite registry plus files (Parquet datasets, run folders).

The registry is the single source of truth. Files are written under a temporary name and renamed into place
before the registry row that points to them is committed, so a crash at any moment leaves either the old state
or the new one, never a half-registered dataset or run (orphan folders are swept on open).
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from .errors import CrossLensError

DEFAULT_WORKSPACE = "workspace"
TEXT_CACHE = "text_cache"  # the folder of the item-text embedding cache (engine.text), in every workspace

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY, version TEXT NOT NULL, created REAL NOT NULL,
    n_users INTEGER, n_items INTEGER, n_interactions INTEGER, n_triples INTEGER,
    path TEXT NOT NULL, info TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS scenarios (
    id TEXT PRIMARY KEY, spec TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, scenario_id TEXT NOT NULL REFERENCES scenarios(id), model TEXT NOT NULL,
    config TEXT NOT NULL, status TEXT NOT NULL, created REAL NOT NULL, finished REAL,
    train_seconds REAL, eval_seconds REAL, metrics TEXT, path TEXT NOT NULL, error TEXT);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, segment TEXT NOT NULL, metric TEXT NOT NULL,
    value REAL, PRIMARY KEY (run_id, segment, metric));
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, run_id TEXT, pid INTEGER, status TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0,
    message TEXT, updated REAL NOT NULL, log_path TEXT);
"""
JOB_COLUMNS = {"spec": "TEXT NOT NULL DEFAULT '{}'", "created": "REAL", "finished": "REAL"}
JOB_ACTIVE = ("starting", "running")


def workspace_path(workspace: str | os.PathLike | None = None) -> Path:
    return Path(workspace or os.environ.get("CROSSLENS_WORKSPACE") or DEFAULT_WORKSPACE)


def write_atomic(path: Path, write) -> None:
    """write(tmp) into a hidden temporary file beside `path`, then rename it into place: a reader sees the old
    file or the new one, never half of one (the temporary file is removed if writing fails)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    write_atomic(path, lambda tmp: df.to_parquet(tmp, index=False, compression="zstd"))


def write_json(obj, path: Path) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=str)))


def write_text(text: str, path: Path) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


_OPEN: dict[Path, "Store"] = {}


def open_workspace(workspace: "str | os.PathLike | Store | None" = None) -> "Store":
    """The workspace's Store, opened (schema, migrations, orphan sweep) once per process and then shared: a Store
    is passed through as it is, a path (default ./workspace or $CROSSLENS_WORKSPACE) opens or finds its Store.
    Every method opens its own SQLite connection, so one Store serves any number of threads."""
    if isinstance(workspace, Store):
        return workspace
    root = workspace_path(workspace).resolve()
    store = _OPEN.get(root)
    if store is None or not (root / "registry.sqlite").exists():  # a folder deleted since is opened afresh
        store = _OPEN[root] = Store(root)
    return store


class Store:
    def __init__(self, workspace: str | os.PathLike | None = None):
        self.root = workspace_path(workspace)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "datasets").mkdir(exist_ok=True)
        (self.root / "runs").mkdir(exist_ok=True)
        (self.root / "jobs").mkdir(exist_ok=True)
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")  # the dashboard reads while training processes write
            db.executescript(SCHEMA)
            have = {r["name"] for r in db.execute("PRAGMA table_info(jobs)")}
            for column, declaration in JOB_COLUMNS.items():  # workspaces made before jobs carried these
                if column not in have:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {declaration}")
        self._sweep_orphans()

    @contextmanager
    def _db(self):
        """One transaction: committed on success, rolled back on any exception."""
        db = sqlite3.connect(self.root / "registry.sqlite", timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        try:
            with db:
                yield db
        finally:
            db.close()

    def _sweep_orphans(self) -> None:
        """Remove dataset folders no registry row points to (left by a crash between rename and commit)."""
        with self._db() as db:
            live = {r["path"] for r in db.execute("SELECT path FROM datasets")}
        for folder in (self.root / "datasets").iterdir():
            rel = f"datasets/{folder.name}"
            if rel not in live and time.time() - folder.stat().st_mtime > 60:
                shutil.rmtree(folder, ignore_errors=True)

    # ---- datasets -------------------------------------------------------------------------------------------
    def put_dataset(self, name: str, tables: dict[str, pd.DataFrame], stats: dict, info: dict) -> dict:
        """Store a new version of dataset `name` (tables: interactions, items?, kg?), replacing any previous one."""
        version = uuid.uuid4().hex[:12]
        rel = f"datasets/{name}-{version}"
        staging = self.root / "datasets" / f".staging-{version}"
        staging.mkdir()
        try:
            for table, df in tables.items():
                if df is not None:
                    df.to_parquet(staging / f"{table}.parquet", index=False, compression="zstd")
            os.replace(staging, self.root / rel)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            with self._db() as db:
                old = db.execute("SELECT path FROM datasets WHERE name = ?", (name,)).fetchone()
                db.execute(
                    "INSERT OR REPLACE INTO datasets VALUES (?,?,?,?,?,?,?,?,?)",
                    (name, version, time.time(), stats["n_users"], stats["n_items"], stats["n_interactions"],
                     stats.get("n_triples", 0), rel, json.dumps(info)))
        except BaseException:
            shutil.rmtree(self.root / rel, ignore_errors=True)
            raise
        if old:
            shutil.rmtree(self.root / old["path"], ignore_errors=True)
        return self.dataset(name)

    def dataset(self, name: str) -> dict | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM datasets WHERE name = ?", (name,)).fetchone()
        return _dataset_record(row) if row else None

    def require_dataset(self, name: str) -> dict:
        """The dataset's record, or a readable error that lists the datasets there are."""
        record = self.dataset(name)
        if record is None:
            known = ", ".join(d["name"] for d in self.datasets()) or "none yet"
            raise CrossLensError(f"no dataset named '{name}' in workspace {self.root} (datasets: {known}); "
                                 f"add it with `python -m engine ingest --domain {name} --interactions FILE`.")
        return record

    def datasets(self) -> list[dict]:
        with self._db() as db:
            return [_dataset_record(r) for r in db.execute("SELECT * FROM datasets ORDER BY name")]

    def load_table(self, name: str, table: str) -> pd.DataFrame | None:
        record = self.dataset(name)
        if record is None:
            raise KeyError(name)
        path = self.root / record["path"] / f"{table}.parquet"
        return pd.read_parquet(path) if path.exists() else None

    def delete_dataset(self, name: str) -> None:
        with self._db() as db:
            row = db.execute("SELECT path FROM datasets WHERE name = ?", (name,)).fetchone()
            db.execute("DELETE FROM datasets WHERE name = ?", (name,))
        if row:
            shutil.rmtree(self.root / row["path"], ignore_errors=True)

    # ---- scenarios and runs ---------------------------------------------------------------------------------
    def scenario_id(self, spec: dict) -> str:
        """The id of a scenario spec (same spec -> same id), registering it on first use."""
        text = json.dumps(spec, sort_keys=True)
        with self._db() as db:
            row = db.execute("SELECT id FROM scenarios WHERE spec = ?", (text,)).fetchone()
            if row:
                return row["id"]
            sid = "s-" + uuid.uuid4().hex[:8]
            db.execute("INSERT INTO scenarios VALUES (?,?,?)", (sid, text, time.time()))
            return sid

    def scenarios(self) -> list[dict]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM scenarios ORDER BY created").fetchall()
        return [{"id": r["id"], **json.loads(r["spec"]), "created": r["created"]} for r in rows]

    def new_run(self, scenario: dict, model: str, config: dict) -> dict:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        rel = f"runs/{run_id}"
        (self.root / rel).mkdir()
        write_json({"scenario": scenario, "model": model, "config": config}, self.root / rel / "config.json")
        sid = self.scenario_id(scenario)
        with self._db() as db:
            db.execute("INSERT INTO runs (id, scenario_id, model, config, status, created, path) VALUES (?,?,?,?,?,?,?)",
                       (run_id, sid, model, json.dumps(config), "running", time.time(), rel))
        return self.run(run_id)

    def finish_run(self, run_id: str, metrics: dict, train_seconds: float, eval_seconds: float) -> dict:
        """Mark a run done; its files must already be in its folder."""
        write_json(metrics, self.run_dir(run_id) / "metrics.json")
        rows = [(run_id, seg, m, v) for seg, values in metrics.items() for m, v in values.items()]
        with self._db() as db:
            db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            db.executemany("INSERT INTO metrics VALUES (?,?,?,?)", rows)
            db.execute("UPDATE runs SET status='done', finished=?, train_seconds=?, eval_seconds=?, metrics=? "
                       "WHERE id=?", (time.time(), train_seconds, eval_seconds, json.dumps(metrics), run_id))
        return self.run(run_id)

    def fail_run(self, run_id: str, status: str, error: str) -> None:
        with self._db() as db:
            db.execute("UPDATE runs SET status=?, finished=?, error=? WHERE id=?", (status, time.time(), error, run_id))

    def run(self, run_id: str) -> dict | None:
        with self._db() as db:
            row = db.execute("SELECT runs.*, scenarios.spec FROM runs JOIN scenarios ON scenarios.id = scenario_id "
                             "WHERE runs.id = ?", (run_id,)).fetchone()
        return _run_record(row) if row else None

    def require_run(self, run_id: str) -> dict:
        """The run's record, or a readable error."""
        record = self.run(run_id)
        if record is None:
            raise CrossLensError(f"no run '{run_id}' in this workspace; `python -m engine runs` lists them.")
        return record

    def runs(self) -> list[dict]:
        with self._db() as db:
            rows = db.execute("SELECT runs.*, scenarios.spec FROM runs JOIN scenarios ON scenarios.id = scenario_id "
                              "ORDER BY created").fetchall()
        return [_run_record(r) for r in rows]

    @property
    def text_cache(self) -> Path:
        return self.root / TEXT_CACHE

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    # ---- jobs -----------------------------------------------------------------------------------------------
    def new_job(self, spec: dict) -> dict:
        job_id = "j-" + time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.job_dir(job_id).mkdir()
        now = time.time()
        with self._db() as db:
            db.execute("INSERT INTO jobs (id, status, progress, message, updated, log_path, spec, created) "
                       "VALUES (?,?,?,?,?,?,?,?)",
                       (job_id, "starting", 0.0, "starting", now, f"jobs/{job_id}/log.txt", json.dumps(spec), now))
        return self.job(job_id)

    def update_job(self, job_id: str, only_if_active: bool = False, **fields) -> bool:
        """Set some of run_id, pid, status, progress, message, finished; with only_if_active, only while the job
        is starting or running (so a late report cannot undo a cancel). Returns whether the row changed."""
        fields["updated"] = time.time()
        sql = f"UPDATE jobs SET {', '.join(f'{k}=?' for k in fields)} WHERE id=?"
        if only_if_active:
            sql += f" AND status IN ({','.join('?' * len(JOB_ACTIVE))})"
        with self._db() as db:
            return db.execute(sql, (*fields.values(), job_id, *(JOB_ACTIVE if only_if_active else ()))).rowcount > 0

    def job(self, job_id: str) -> dict | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job_record(row) if row else None

    def jobs(self) -> list[dict]:
        with self._db() as db:
            return [_job_record(r) for r in db.execute("SELECT * FROM jobs ORDER BY created")]

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id


def _dataset_record(row: sqlite3.Row) -> dict:
    record = dict(row)
    record["info"] = json.loads(record["info"])
    return record


def _job_record(row: sqlite3.Row) -> dict:
    record = dict(row)
    record["spec"] = json.loads(record["spec"] or "{}")
    return record


def _run_record(row: sqlite3.Row) -> dict:
    record = dict(row)
    record["scenario"] = json.loads(record.pop("spec"))
    record["config"] = json.loads(record["config"])
    record["metrics"] = json.loads(record["metrics"]) if record["metrics"] else None
    return record
