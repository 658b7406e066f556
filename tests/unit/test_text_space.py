"""Whitening frozen sentence vectors: the transform a model keeps with its weights."""
import numpy as np

from engine import text_space


def test_full_whitening_gives_every_principal_direction_the_same_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 8)) * np.array([10, 5, 3, 2, 1, 1, 0.5, 0.1]) + 3.0  # anisotropic, off-centre
    mean, projection = text_space.fit_whitening(x, power=1.0)
    z = (x - mean) @ projection
    assert np.allclose(z.mean(0), 0, atol=1e-4)
    assert np.allclose(np.cov(z, rowvar=False), np.eye(8), atol=2e-2)  # eps regularises the smallest direction


def test_power_zero_only_centres_and_dim_keeps_the_largest_directions():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 6)) * np.array([6, 1, 1, 1, 1, 1])
    mean, projection = text_space.fit_whitening(x, power=0.0, dim=2)
    assert projection.shape == (6, 2)
    assert np.allclose(projection.T @ projection, np.eye(2), atol=1e-5)  # a rotation: no rescaling
    assert abs(projection[0, 0]) > 0.99  # the first kept axis is the high-variance one


def test_rows_without_text_stay_zero_and_the_others_are_unit_length():
    x = np.vstack([np.random.default_rng(2).normal(size=(50, 4)), np.zeros((3, 4))]).astype(np.float32)
    out = text_space.apply_whitening(x, *text_space.fit_whitening(x))
    assert not out[-3:].any()
    assert np.allclose(np.linalg.norm(out[:-3], axis=1), 1, atol=1e-5)


def test_block_by_block_gives_what_all_rows_at_once_give(monkeypatch):
    import torch
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(1000, 6)) * np.array([4, 2, 1, 1, 0.5, 0.2]) + 1.5).astype(np.float32)
    x[::7] = 0  # rows without text
    rows = x[np.any(x != 0, axis=1)].astype(np.float64)
    variance, axes = np.linalg.eigh(np.cov(rows - rows.mean(0), rowvar=False))
    monkeypatch.setattr(text_space, "BLOCK", 64)  # 16 blocks, the last one short
    mean, projection = text_space.fit_whitening(x, power=0.5, dim=4)
    assert np.allclose(mean, rows.mean(0), atol=1e-6)
    assert np.allclose(np.abs(projection), np.abs(axes[:, ::-1][:, :4] * variance[::-1][:4] ** -0.25), atol=1e-4)
    out = text_space.apply_whitening(x, mean, projection)
    whole = text_space._whitened_rows(x, mean, projection)
    assert out.shape == (1000, 4) and out.dtype == np.float32 and np.allclose(out, whole, atol=1e-6)
    assert torch.allclose(text_space.apply_whitening(torch.from_numpy(x), torch.from_numpy(mean),
                                                     torch.from_numpy(projection)), torch.from_numpy(whole), atol=1e-6)
