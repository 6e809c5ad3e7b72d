"""Detectors behind one interface: model loading errors, region cropping, the classical baseline."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from guidance.detect import DetectStage, Detector, load_detector
from guidance.detect.classical import ClassicalDetector
from guidance.detect.model import ModelDetector
from guidance.errors import ModelError
from guidance.types import Frame, FrameResult, ImagingRegion


def scaling_model(path, *, channels=(1.0, 0.0, 0.0, 0.0), size=128, in_name="image", out_name="probs"):
    """A real ONNX graph: probs[c] = image * channels[c] (the needle map is the image itself)."""
    k = np.asarray(channels, np.float32).reshape(1, len(channels), 1, 1)
    graph = helper.make_graph(
        [helper.make_node("Mul", [in_name, "k"], [out_name])], "scale",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, [1, 1, size, size])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [1, len(channels), size, size])],
        initializer=[numpy_helper.from_array(k, "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_missing_model_names_the_file(tmp_path):
    with pytest.raises(ModelError, match="nope.onnx.*not found"):
        load_detector(tmp_path / "nope.onnx")


def test_corrupt_model_is_a_model_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(ModelError, match="bad.onnx"):
        ModelDetector(bad)


def test_wrong_channel_count_or_names_are_refused(tmp_path):
    with pytest.raises(ModelError, match="4 channels"):
        ModelDetector(scaling_model(tmp_path / "three.onnx", channels=(1.0, 0.0, 0.0)))
    with pytest.raises(ModelError, match="input named 'image'"):
        ModelDetector(scaling_model(tmp_path / "name.onnx", in_name="x"))
    with pytest.raises(ModelError, match="output named 'probs'"):
        ModelDetector(scaling_model(tmp_path / "oname.onnx", out_name="y"))


def needle_frame(shape=(300, 400), tail=(40.0, 60.0), tip=(250.0, 200.0), region=None):
    """Dark speckle with a bright straight needle from tail to tip (pixels of the whole frame)."""
    import cv2

    rng = np.random.default_rng(3)
    img = rng.integers(0, 40, shape).astype(np.uint8)
    cv2.line(img, tuple(int(round(v)) for v in tail), tuple(int(round(v)) for v in tip), 255, 3, cv2.LINE_AA)
    img = cv2.GaussianBlur(img, (0, 0), 0.8)
    if region is not None:  # scanner chrome outside the region: black with bright text-like marks
        mask = np.zeros(shape, bool)
        mask[region.slices] = True
        img[~mask] = 0
        img[5:10, 5:60] = 255
    return img


def test_model_path_maps_back_to_frame_pixels_with_and_without_region(tmp_path):
    assert load_detector(scaling_model(tmp_path / "id.onnx")).name == "model:id"
    # the image-as-probability "model" is less sure of itself than a trained one
    det = ModelDetector(tmp_path / "id.onnx", min_needle_confidence=0.5)
    assert isinstance(det, Detector)
    tail, tip = np.array([40.0, 60.0]), np.array([250.0, 200.0])
    img = needle_frame()
    d = det.detect(img)
    assert d.needle is not None
    assert np.hypot(*(np.array(d.needle.tip_px) - tip)) < 3.0
    assert abs(d.needle.angle_deg - np.degrees(np.arctan2(140, 210))) < 1.0
    region = ImagingRegion(30, 40, 300, 220)
    d2 = det.detect(needle_frame(region=region), region=region)
    assert np.hypot(*(np.array(d2.needle.tip_px) - tip)) < 3.0
    assert np.hypot(*(np.array(d2.needle.tail_px) - [region.x_px + 1, region.y_px + 1])) < 40


def test_auto_and_classical_and_stage(tmp_path):
    assert load_detector("classical").name == "classical"
    auto = load_detector("auto")
    assert isinstance(auto, Detector)
    stage = DetectStage(ClassicalDetector())
    assert stage.name == "detect"
    img = needle_frame()
    frame = Frame(img, 0.0, 0, 0, spacing_mm=(0.1, 0.1))
    out = stage(FrameResult(frame))
    assert out.detection is not None and out.detection.detector == "classical"
    out2 = stage(FrameResult(frame, region=ImagingRegion(20, 20, 360, 260)))
    assert out2.detection.needle is not None


def bone_frame(shape=(320, 400), y_bone=200.0, top=None):
    """Speckled tissue, a bright bone line at y_bone with a dark shadow, optional dark cartilage band."""
    rng = np.random.default_rng(5)
    h, w = shape
    img = rng.normal(70, 12, shape)
    rows = np.arange(h)[:, None]
    img = np.where(rows > y_bone + 3, rng.normal(10, 4, shape), img)  # acoustic shadow
    img += 170 * np.exp(-(rows - (y_bone + 1.5)) ** 2 / (2 * 1.2 ** 2))
    if top is not None:
        band = (rows >= top) & (rows < y_bone)
        img = np.where(band, rng.normal(15, 4, shape), img)
        img += 60 * np.exp(-(rows - top) ** 2 / 2.0)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_classical_finds_bone_and_cartilage():
    det = ClassicalDetector()
    d = det.detect(bone_frame(), spacing_mm=(0.1, 0.1))
    assert d.target is not None and d.target.kind == "bone"
    b = d.target.bone_px
    assert b[:, 0].min() < 40 and b[:, 0].max() > 360
    assert np.median(np.abs(b[:, 1] - 200.0)) < 2.0
    d = det.detect(bone_frame(y_bone=220.0, top=195.0), spacing_mm=(0.1, 0.1))
    assert d.target.kind == "cartilage"
    assert abs(d.target.cartilage_thickness_mm - 2.5) < 0.5
    assert np.median(np.abs(d.target.surface_px[:, 1] - 195.0)) < 3.0
    assert d.needle is None


def test_classical_finds_a_needle_and_its_tip():
    det = ClassicalDetector()
    d = det.detect(needle_frame(), spacing_mm=(0.1, 0.1))
    assert d.needle is not None
    assert np.hypot(*(np.array(d.needle.tip_px) - [250.0, 200.0])) < 4.0
    assert abs(d.needle.angle_deg - np.degrees(np.arctan2(140, 210))) < 1.5


def line_frame(value: int, size: int = 128) -> np.ndarray:
    """A flat dark frame with one 3 px straight line of grey ``value``, 100 px long (10 mm at 0.1 mm/px)."""
    import cv2

    img = np.full((size, size), 20, np.uint8)
    cv2.line(img, (14, 20), (100, 71), int(value), 3)
    return img


@pytest.mark.parametrize("value, second_k, seen", [
    (230, None, True),   # 0.90 alone: above the model's own 0.89
    (230, 0.5, False),   # 0.90, but the second opinion scores it half: consensus 0.68, a tissue streak
    (230, 1.0, True),    # both agree: consensus 0.90
    (218, None, False),  # 0.85 alone: below 0.89
    (218, 1.0, True),    # 0.85 seen the same by all four views: above the consensus rule's 0.845
    (240, 0.5, False),   # 0.94: inside the band (up to 0.95 since the fourteenth session), the consensus 0.71 refuses it
    (250, 0.5, True),    # 0.98: above the band, the model's own rule decides and the second is not asked
    (150, 1.0, False),   # 0.59: under the band, clear tissue
])
def test_uncertain_needles_are_judged_by_consensus(tmp_path, value, second_k, seen):
    first = scaling_model(tmp_path / "first.onnx")
    second = None if second_k is None else scaling_model(tmp_path / "second.onnx", channels=(second_k, 0, 0, 0))
    det = ModelDetector(first, second_opinion=second)
    assert (det.detect(line_frame(value), spacing_mm=(0.1, 0.1)).needle is not None) == seen


def test_second_opinion_errors_name_its_file(tmp_path):
    first = scaling_model(tmp_path / "first.onnx")
    with pytest.raises(ModelError, match="other.onnx.*not found"):
        ModelDetector(first, second_opinion=tmp_path / "other.onnx")
    with pytest.raises(ModelError, match="small.onnx.*same input"):
        ModelDetector(first, second_opinion=scaling_model(tmp_path / "small.onnx", size=64))


def test_auto_without_the_second_opinion_runs_the_model_alone(monkeypatch, tmp_path):
    import guidance.detect as detect

    assert detect.load_detector("auto").name == "model:needle_target+needle_target_wide"
    monkeypatch.setattr(detect, "SECOND_OPINION_MODEL", tmp_path / "gone.onnx")
    assert detect.load_detector("auto").name == "model:needle_target"


def test_a_recording_names_both_model_files_and_hashes_them(tmp_path):
    from guidance.recording.session_meta import describe_stages

    first = scaling_model(tmp_path / "first.onnx")
    second = scaling_model(tmp_path / "second.onnx", channels=(0.5, 0, 0, 0))
    meta = describe_stages([DetectStage(ModelDetector(first, second_opinion=second))])
    assert meta["detector"] == "model:first+second" and meta["model_file"] == "first.onnx+second.onnx"
    alone = describe_stages([DetectStage(ModelDetector(first))])
    assert alone["model_file"] == "first.onnx" and alone["model_sha256"] != meta["model_sha256"]
    scaling_model(tmp_path / "second.onnx", channels=(0.6, 0, 0, 0))  # only the second opinion changed
    assert describe_stages([DetectStage(ModelDetector(first, second_opinion=second))])["model_sha256"] \
        != meta["model_sha256"]
