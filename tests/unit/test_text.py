"""Item texts, the sentence encoder (real bundled MiniLM, no mocks) and the embedding cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import text

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "data" / "amazon-arts-office"


@pytest.fixture(scope="module")
def fast_encoder(tmp_path_factory):
    return text.get_encoder(artifact_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def real_texts():
    frames = [pd.read_parquet(ASSETS / d / "items.parquet").iloc[:24] for d in ("arts", "office")]
    return text.item_texts(pd.concat(frames, ignore_index=True))


def test_item_texts_composition():
    items = pd.DataFrame({
        "item_id": ["a", "b", "c"], "domain": ["x", "x", "y"],
        "title": ["Red  pen", "Blue ink", "Plain"],
        "description": ["Writes well.", "", None],
        "categories": ["office > writing > pens", "office > ink|office > art > paint", ""],
        "brand": ["acme", None, " "],
    })
    texts = text.item_texts(items)
    assert texts == [  # "office", shared by every path of domain x, says nothing about its items
        "Red pen. Writes well. categories: writing > pens. brand: acme",
        "Blue ink. categories: ink, art > paint",
        "Plain",
    ]
    assert text.item_texts(items) == texts  # deterministic
    # No description column, an extra numeric attribute: still title first, then "column: value".
    assert text.item_texts(pd.DataFrame({"item_id": ["z"], "title": ["T"], "size": [3]})) == ["T. size: 3"]


def test_encode_shape_norm_and_order(fast_encoder):
    assert fast_encoder.dim == 384
    assert fast_encoder.precision in ("onnx-int8", "torch-int8")
    texts = ["a pack of blue gel pens", "acrylic paint set for canvas", "a pack of blue gel pens"]
    done = []
    vectors = fast_encoder.encode(texts, progress=lambda d, n: done.append((d, n)))
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)  # order kept despite length sorting
    assert done[-1] == (3, 3)
    assert fast_encoder.encode([]).shape == (0, 384)


def test_cache_hits_on_second_call_and_dedups(fast_encoder, tmp_path, real_texts):
    cache = text.EmbeddingCache(tmp_path / "text_cache")
    texts = real_texts[:20] + real_texts[:5]  # 5 duplicates within one call
    first, stats1 = cache.get_or_compute(fast_encoder, texts)
    assert stats1["misses"] == 20 and stats1["hits"] == 0 and stats1["seconds"] >= 0
    np.testing.assert_array_equal(first[:5], first[20:])
    second, stats2 = cache.get_or_compute(fast_encoder, texts)
    assert stats2["hits"] == 20 and stats2["misses"] == 0
    np.testing.assert_array_equal(first, second)
    # A new process (a fresh cache object on the same folder) sees them too; a partly new list computes the rest.
    third, stats3 = text.EmbeddingCache(tmp_path / "text_cache").get_or_compute(fast_encoder, real_texts[15:30])
    assert stats3 == {**stats3, "hits": 5, "misses": 10}
    np.testing.assert_array_equal(third[:5], first[15:20])
    # Cached vectors agree with a direct encode (float16 storage costs nothing that matters).
    direct = fast_encoder.encode(texts[:20])
    assert float((direct * first[:20]).sum(1).min()) > 0.9999


def test_cache_key_depends_on_settings(fast_encoder):
    shorter = text.get_encoder(max_seq_length=64)
    assert shorter is text.get_encoder(max_seq_length=64)  # loaded once per process
    assert shorter.key != fast_encoder.key and "seq64" in shorter.key
    assert fast_encoder.key.replace(fast_encoder.precision, "fp32") != fast_encoder.key


def test_fast_path_matches_fp32(fast_encoder, real_texts):
    exact = text.get_encoder(fast=False)
    assert exact.precision == "fp32" and exact.key != fast_encoder.key
    cos = (exact.encode(real_texts) * fast_encoder.encode(real_texts)).sum(1)
    assert len(real_texts) == 48
    assert cos.mean() > 0.98 and cos.min() > 0.95


def test_encoding_on_several_sessions_keeps_the_input_order(fast_encoder, real_texts):
    if len(fast_encoder._lanes) < 2:
        pytest.skip("one core: the encoder runs a single session")
    many = fast_encoder.encode(real_texts, batch_size=8)  # 6 batches over the sessions, longest texts first
    lanes = fast_encoder._lanes
    fast_encoder._lanes = lanes[:1]
    try:
        one = fast_encoder.encode(real_texts, batch_size=8)
    finally:
        fast_encoder._lanes = lanes
    np.testing.assert_allclose(many, one, atol=1e-5)


def test_embed_items_uses_the_cache_folder(tmp_path):
    items = pd.DataFrame({"item_id": ["p", "q", "r"], "domain": "d", "title": ["pen", "ink", "pen"],
                          "categories": ["office > pens", "office > ink", "office > pens"]})
    vectors, stats = text.embed_items(items, tmp_path / "text_cache")
    assert vectors.shape == (3, 384) and stats["misses"] == 2
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert (tmp_path / "text_cache" / text.EmbeddingCache.FILE).is_file()
    first_key = stats["key"]
    loaded = dict(text._ENCODERS)
    text._ENCODERS.clear()  # as in a new process: a run rebuilt from the cache must not load the encoder
    try:
        again, stats = text.embed_items(items, tmp_path / "text_cache")
        assert not text._ENCODERS
    finally:
        text._ENCODERS.update(loaded)
    assert stats["hits"] == 2 and stats["misses"] == 0 and stats["key"] == first_key
    np.testing.assert_array_equal(vectors, again)
    more = pd.concat([items, items.iloc[:1].assign(item_id="s", title="stapler")], ignore_index=True)
    _, stats = text.embed_items(more, tmp_path / "text_cache")  # one new text: the encoder computes just that one
    assert stats["misses"] == 1 and stats["hits"] == 2


def test_unknown_encoder_folder(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ValueError, match="no-such-model"):
        text.TextEncoder(str(missing))
    with pytest.raises(ValueError, match=str(tmp_path)):
        text.get_encoder(str(tmp_path))  # exists, but holds no model
