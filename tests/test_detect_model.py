"""The committed ONNX model on simulated frames it never saw: loose bounds, so a broken model fails."""

from __future__ import annotations

import numpy as np
import pytest

from guidance.contract import needle_to_dict, target_to_dict
from guidance.detect import DEFAULT_MODEL, load_detector
from guidance.evaluate import evaluate
from guidance.sim import SimConfig, Simulator


@pytest.fixture(scope="module")
def model():
    assert DEFAULT_MODEL.is_file(), f"committed model missing: {DEFAULT_MODEL}"
    det = load_detector("auto")
    assert det.name.startswith("model:"), "auto should load the committed model"
    return det


def score(det, scenario, seed, frames, **cfg):
    sim = Simulator(SimConfig(seed=seed, scenario=scenario, **cfg))
    pairs = []
    for i in np.linspace(0, len(sim) - 1, frames).astype(int):
        sf = sim.render(int(i))
        d = det.detect(sf.image, spacing_mm=tuple(sf.spacing_mm))
        pairs.append(({"frame": sf.truth["frame"], "needle": needle_to_dict(d.needle),
                       "target": target_to_dict(d.target)}, sf.truth))
    return evaluate(pairs)


def test_model_finds_needle_tip_and_bone_on_an_unseen_insertion(model):
    r = score(model, "insertion", 4242, 12)
    assert r["unit"] == "mm"
    assert r["needle_recall"] >= 0.8
    assert r["tip_error"]["median"] < 1.5
    assert r["angle_error_deg"]["median"] < 3.0
    assert r["bone_distance"]["median"] < 0.5
    assert r["bone_coverage"] > 0.7


def test_model_sees_no_needle_when_there_is_none(model):
    r = score(model, "no_needle", 4243, 8, width_px=480, height_px=400)
    assert r["false_positive_rate"] <= 0.25
    assert r["target_recall"] == 1.0
