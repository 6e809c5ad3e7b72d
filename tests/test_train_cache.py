"""models/train.py's sample cache: reused while the code that renders it is the same, rendered again when not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SEEDS = [100_000, 100_001]


@pytest.fixture
def train(monkeypatch):
    spec = importlib.util.spec_from_file_location("train", REPO / "models" / "train.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train", mod)  # the render workers pickle its functions by name
    spec.loader.exec_module(mod)
    return mod


def test_a_cache_made_by_other_code_is_rendered_again_not_trained_on(train, tmp_path, monkeypatch, capsys):
    path = tmp_path / "cache.npz"
    images, targets = train.build_cache(path, SEEDS, workers=1)
    assert images.shape == (2, 256, 256) and images.std() > 5  # real frames
    assert targets[:, 0].any() or targets[:, 1].any()

    # Same code: the file is what is read (blanked here to tell it from a fresh render).
    z = dict(np.load(path))
    np.savez(path, **{**z, "images": np.zeros_like(images)})
    assert not train.build_cache(path, SEEDS, workers=1)[0].any()

    # The simulator changed since: the blank cache is not trained on, and the log says why.
    monkeypatch.setattr(train, "recipe_fingerprint", lambda *a, **k: "another simulator")
    again, _ = train.build_cache(path, SEEDS, workers=1)
    np.testing.assert_array_equal(again, images)
    assert "made by other code" in capsys.readouterr().out
    assert str(np.load(path)["recipe"]) == "another simulator"


def test_a_cache_from_before_fingerprints_or_for_other_seeds_is_rendered_again(train, tmp_path):
    path = tmp_path / "cache.npz"
    blank = np.zeros((2, 256, 256), np.uint8)
    np.savez(path, images=blank, targets=np.zeros((2, 4, 256, 256), np.uint8), seed0=SEEDS[0])  # no recipe
    assert train.build_cache(path, SEEDS, workers=1)[0].any()
    z = dict(np.load(path))
    np.savez(path, **{**z, "images": blank, "seed0": 5})
    assert train.build_cache(path, SEEDS, workers=1)[0].any()


def test_the_fingerprint_follows_the_pymust_library_content(train, tmp_path):
    (tmp_path / "1_00000.npz").write_bytes(b"needle one")
    before = train.recipe_fingerprint(tmp_path)
    assert train.recipe_fingerprint(tmp_path) == before
    assert train.recipe_fingerprint() != before  # without the library
    (tmp_path / "1_00000.npz").write_bytes(b"needle one, re-made")
    assert train.recipe_fingerprint(tmp_path) != before


def test_keeping_the_needle_pulls_only_the_target_outputs_toward_the_truth(train):
    """``train.py --keep-needle``: a fine-tune that teaches the bone and cartilage outputs something new
    holds the needle and tip outputs to the starting network's maps, on which the detector's rules were
    chosen. At the teacher's own needle map, the needle and tip channels get no gradient; the bone
    channel still learns from the truth."""
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    teacher_logits = torch.randn(2, 4, 16, 16, generator=gen)
    target = torch.zeros(2, 4, 16, 16)
    target[:, 1, 8] = 1.0  # a bone ridge the teacher does not see
    logits = teacher_logits.clone().requires_grad_(True)
    loss, parts = train.loss_keeping_needle(logits, target, torch.sigmoid(teacher_logits))
    loss.backward()
    grad = logits.grad.abs().amax((0, 2, 3))
    assert grad[0] < 1e-6 and grad[3] < 1e-6  # needle and tip: already where the teacher is
    assert grad[1] > 1e-4  # bone: pulled toward the truth
    assert {"needle_kept", "tip_kept", "bone", "cart"} <= set(parts)
    # away from the teacher's map the needle channel is pulled back to it
    moved = (teacher_logits + 2.0).requires_grad_(True)
    train.loss_keeping_needle(moved, target, torch.sigmoid(teacher_logits))[0].backward()
    assert (moved.grad[:, 0] > 0).float().mean() > 0.99  # gradient descent lowers the raised logits
