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
