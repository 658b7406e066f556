"""The workspace: a SQLite registry plus files (Parquet datasets, run folders).

The registry is the single source of truth. Files are written under a temporary name and renamed into place
before the registry row that points to them is committed, so a crash at any moment leaves either the old state
or the new one, never a half-registered dataset or run (orphan folders are swept on open).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import threading
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
CREATE TABLE IF NOT EXISTS dataset_versions (
    name TEXT NOT NULL, version TEXT NOT NULL, path TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (name, version));
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
RUN_COLUMNS = {"pid": "INTEGER", "process_start": "TEXT",  # the process that trains the run, to see it died
               "name": "TEXT", "tags": "TEXT NOT NULL DEFAULT '[]'", "note": "TEXT"}  # the analyst's labels
LABEL_LIMITS = {"name": 80, "note": 2000}  # characters
TAG = re.compile(r"[\w.+-]{1,30}")
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
_OPENING = threading.Lock()


def open_workspace(workspace: "str | os.PathLike | Store | None" = None) -> "Store":
    """The workspace's Store, opened (schema, migrations, orphan sweep) once per process and then shared: a Store
    is passed through as it is, a path (default ./workspace or $CROSSLENS_WORKSPACE) opens or finds its Store.
    Every method opens its own SQLite connection, so one Store serves any number of threads."""
    if isinstance(workspace, Store):
        return workspace
    root = workspace_path(workspace).resolve()
    with _OPENING:  # threads opening one new workspace at once: one creates it
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
        (self.root / "studies").mkdir(exist_ok=True)
        with self._db() as db:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # set once: it stays with the file
                db.execute("PRAGMA journal_mode=WAL")  # the dashboard reads while training processes write
            db.executescript(SCHEMA)
            for table, columns in (("jobs", JOB_COLUMNS), ("runs", RUN_COLUMNS)):  # workspaces made before these
                have = {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}
                for column, declaration in columns.items():
                    if column not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            # workspaces made before versions were kept: their current versions are the stored ones
            db.execute("INSERT OR IGNORE INTO dataset_versions SELECT name, version, path, created FROM datasets")
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
        """Remove dataset folders no registry row points to (left by a crash between rename and commit), but never
        the staging folder of an ingest whose process is still alive."""
        with self._db() as db:
            live = {r["path"] for r in db.execute("SELECT path FROM dataset_versions")}
        uploads = self.root / "uploads"
        for folder in [*(self.root / "datasets").iterdir(), *(uploads.iterdir() if uploads.is_dir() else [])]:
            rel = f"{folder.parent.name}/{folder.name}"
            owner = folder.name.split("-")[1] if folder.name.startswith(".staging-") else ""
            if owner.isdigit() and pid_alive(int(owner)):
                continue
            if rel not in live and time.time() - folder.stat().st_mtime > 60:
                shutil.rmtree(folder, ignore_errors=True)

    @contextmanager
    def upload_folder(self):
        """A private folder inside the workspace for uploaded files while they are read, removed afterwards; the
        sweep removes one whose process died (a server killed mid-upload)."""
        folder = self.root / "uploads" / f".staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # ---- datasets -------------------------------------------------------------------------------------------
    def put_dataset(self, name: str, tables: dict[str, pd.DataFrame], stats: dict, info: dict,
                    replace: bool = False) -> dict:
        """Store dataset `name` (tables: interactions, items?, kg?). An existing name needs `replace`: the upload
        becomes its current version, and the old version is kept while runs were trained on it. Of two ingests
        of one new name at the same moment, exactly one stores it; the other is refused."""
        version = uuid.uuid4().hex[:12]
        rel = f"datasets/{name}-{version}"
        staging = self.root / "datasets" / f".staging-{os.getpid()}-{version}"
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
                db.execute("BEGIN IMMEDIATE")  # the write lock first: racing ingests of one name run one by one
                old = db.execute("SELECT version, path FROM datasets WHERE name = ?", (name,)).fetchone()
                if old and not replace:
                    raise self._exists(db, name, old["version"])
                now = time.time()
                db.execute("INSERT OR REPLACE INTO datasets VALUES (?,?,?,?,?,?,?,?,?)",
                           (name, version, now, stats["n_users"], stats["n_items"], stats["n_interactions"],
                            stats.get("n_triples", 0), rel, json.dumps(info)))
                db.execute("INSERT INTO dataset_versions VALUES (?,?,?,?)", (name, version, rel, now))
                unused = old is not None and not self._runs_on(db, name, old["version"])
                if unused:
                    db.execute("DELETE FROM dataset_versions WHERE name = ? AND version = ?", (name, old["version"]))
        except BaseException:
            shutil.rmtree(self.root / rel, ignore_errors=True)
            raise
        if unused:
            shutil.rmtree(self.root / old["path"], ignore_errors=True)
        return self.dataset(name)

    def refuse_existing(self, name: str) -> None:
        """Raise unless `name` is free (checked before an upload is read; put_dataset checks again, atomically)."""
        with self._db() as db:
            old = db.execute("SELECT version FROM datasets WHERE name = ?", (name,)).fetchone()
            if old:
                raise self._exists(db, name, old["version"])

    def _exists(self, db, name: str, version: str) -> CrossLensError:
        runs = self._runs_on(db, name, version)
        named = f": {', '.join(runs[:5])}{' and more' if len(runs) > 5 else ''}" if runs else ""
        return CrossLensError(
            f"a dataset named '{name}' exists already ({len(runs)} run(s) trained on it{named}); ingest with "
            f"--replace (the dashboard asks to confirm) to make this upload its new version, which keeps the old one "
            f"for those runs, or choose another name.")

    @staticmethod
    def _runs_on(db, name: str, version: str) -> list[str]:
        """Ids of the runs whose scenario reads this version of the dataset."""
        rows = db.execute("SELECT runs.id, scenarios.spec FROM runs JOIN scenarios ON scenarios.id = scenario_id")
        return [r["id"] for r in rows if json.loads(r["spec"]).get("versions", {}).get(name) == version]

    def has_version(self, name: str, version: str) -> bool:
        with self._db() as db:
            return db.execute("SELECT 1 FROM dataset_versions WHERE name = ? AND version = ?",
                              (name, version)).fetchone() is not None

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

    def load_table(self, name: str, table: str, version: str | None = None) -> pd.DataFrame | None:
        """A table of the dataset's current version, or of the stored `version`."""
        query = ("SELECT path FROM dataset_versions WHERE name = ? AND version = ?", (name, version)) if version \
            else ("SELECT path FROM datasets WHERE name = ?", (name,))
        with self._db() as db:
            row = db.execute(*query).fetchone()
        if row is None:
            raise KeyError(name)
        path = self.root / row["path"] / f"{table}.parquet"
        if not path.exists():
            return None
        df = pd.read_parquet(path)  # text as plain Python strings, however the upload held it while checked
        return df.astype({c: object for c, t in df.dtypes.items() if isinstance(t, pd.StringDtype)})

    def delete_dataset(self, name: str) -> None:
        """Remove the dataset and every stored version of it."""
        with self._db() as db:
            rows = db.execute("SELECT path FROM dataset_versions WHERE name = ?", (name,)).fetchall()
            db.execute("DELETE FROM datasets WHERE name = ?", (name,))
            db.execute("DELETE FROM dataset_versions WHERE name = ?", (name,))
        for row in rows:
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
            db.execute("INSERT INTO runs (id, scenario_id, model, config, status, created, path, pid, process_start) "
                       "VALUES (?,?,?,?,?,?,?,?,?)", (run_id, sid, model, json.dumps(config), "running", time.time(),
                                                      rel, os.getpid(), process_start(os.getpid())))
        return self.run(run_id)

    def finish_run(self, run_id: str, metrics: dict, train_seconds: float, eval_seconds: float,
                   status: str = "done") -> dict:
        """Mark a run done (or, evaluated on validation only, a tuning "trial"); its files must already be in its
        folder."""
        write_json(metrics, self.run_dir(run_id) / "metrics.json")
        rows = [(run_id, seg, m, v) for seg, values in metrics.items() for m, v in values.items()]
        with self._db() as db:
            db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            db.executemany("INSERT INTO metrics VALUES (?,?,?,?)", rows)
            db.execute("UPDATE runs SET status=?, finished=?, train_seconds=?, eval_seconds=?, metrics=? WHERE id=?",
                       (status, time.time(), train_seconds, eval_seconds, json.dumps(metrics), run_id))
        return self.run(run_id)

    def fail_run(self, run_id: str, status: str, error: str) -> None:
        with self._db() as db:
            db.execute("UPDATE runs SET status=?, finished=?, error=? WHERE id=?", (status, time.time(), error, run_id))

    def label_run(self, run_id: str, name: str | None = None, add_tags=(), remove_tags=(),
                  note: str | None = None) -> dict:
        """Name, tag or note a run: a name or note of None stays as it is, "" clears it; tags are added and removed
        (each 1-30 letters, digits or . + - _). Checked before anything is written."""
        record = self.require_run(run_id)
        for field, value in (("name", name), ("note", note)):
            if value is not None and len(value) > LABEL_LIMITS[field]:
                raise CrossLensError(f"a run's {field} is at most {LABEL_LIMITS[field]} characters; this one has "
                                     f"{len(value)}.")
        if name and ("\n" in name or "\r" in name):
            raise CrossLensError("a run's name is one line; put the rest in its note.")
        bad = [t for t in (*add_tags, *remove_tags) if not TAG.fullmatch(t)]
        if bad:
            raise CrossLensError(f"the tag {bad[0]!r} is not a tag: use 1-30 letters, digits or . + - _, no spaces.")
        tags = [t for t in dict.fromkeys([*record["tags"], *add_tags]) if t not in remove_tags]
        changes = {"tags": json.dumps(tags)}
        changes.update({f: (v.strip() or None) for f, v in (("name", name), ("note", note)) if v is not None})
        with self._db() as db:
            db.execute(f"UPDATE runs SET {', '.join(f'{c} = ?' for c in changes)} WHERE id = ?",
                       (*changes.values(), record["id"]))
        return self.run(record["id"])

    def run(self, run_id: str) -> dict | None:
        self._settle_dead_runs()
        with self._db() as db:
            row = db.execute("SELECT runs.*, scenarios.spec FROM runs JOIN scenarios ON scenarios.id = scenario_id "
                             "WHERE runs.id = ?", (run_id,)).fetchone()
        return _run_record(row) if row else None

    def _settle_dead_runs(self) -> None:
        """Mark failed every run still 'running' whose process is gone (killed, or the machine restarted)."""
        with self._db() as db:
            running = db.execute("SELECT id, pid, process_start FROM runs WHERE status = 'running'").fetchall()
        for r in running:
            if r["pid"] and not same_process(r["pid"], r["process_start"]):
                with self._db() as db:
                    db.execute("UPDATE runs SET status='failed', finished=?, error=? WHERE id=? AND status='running'",
                               (time.time(), "the process that trained it ended before it finished (killed?)", r["id"]))

    def delete_run(self, run_id: str) -> None:
        """Remove a run, its metrics and its folder; a run still training is refused (cancel it first)."""
        record = self.require_run(run_id)
        if record["status"] == "running":
            raise CrossLensError(f"run {run_id} is still training; cancel its job (or stop its process) first.")
        with self._db() as db:
            db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            db.execute("UPDATE jobs SET run_id = NULL WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def require_run(self, run_id: str) -> dict:
        """The run's record, or a readable error."""
        record = self.run(run_id)
        if record is None:
            raise CrossLensError(f"no run '{run_id}' in this workspace; `python -m engine runs` lists them.")
        return record

    def runs(self) -> list[dict]:
        self._settle_dead_runs()
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

    def claim_job_slot(self, job_id: str, limit: int, pid: int) -> int:
        """Mark job `job_id` running (with its pid) if fewer than `limit` jobs run and no job started before it
        waits, and return 0; else return how many jobs run or wait before it (at least 1). One transaction with
        the write lock, so two waiting jobs never take one free slot."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute("SELECT id, status FROM jobs WHERE status IN ('starting', 'running') "
                              "ORDER BY created, id").fetchall()
            ids = [r["id"] for r in rows]
            if job_id not in ids:  # cancelled meanwhile
                return 1
            running = sum(r["status"] == "running" for r in rows)
            waiting = sum(r["status"] == "starting" for r in rows[: ids.index(job_id)])
            if waiting or running >= limit:
                return max(running + waiting, 1)
            db.execute("UPDATE jobs SET status='running', pid=?, message='starting', updated=? WHERE id=?",
                       (pid, time.time(), job_id))
            return 0

    def job(self, job_id: str) -> dict | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job_record(row) if row else None

    def jobs(self) -> list[dict]:
        with self._db() as db:
            return [_job_record(r) for r in db.execute("SELECT * FROM jobs ORDER BY created")]

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    # ---- tuning studies (engine.tune): one JSON record each ----------------------------------------------------
    def study_path(self, study_id: str) -> Path:
        return self.root / "studies" / f"{study_id}.json"

    def studies(self) -> list[dict]:
        """Every tuning study's record, oldest first."""
        return [json.loads(p.read_text()) for p in sorted((self.root / "studies").glob("*.json"))]


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc): with the pid, it names one process even
    after the pid is reused. None where /proc is not there."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def same_process(pid: int, started: str | None) -> bool:
    """Whether process `pid` still runs and is the one that started at `started` (process_start), not a later
    process given the same pid."""
    if started is not None and Path("/proc").is_dir():
        return process_start(pid) == started
    return pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Whether a process of this pid runs (where /proc says nothing more)."""
    try:
        os.kill(pid, 0)
        return True
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False


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
    record["tags"] = json.loads(record["tags"])
    return record
