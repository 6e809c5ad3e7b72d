"""The committed ONNX model on simulated frames it never saw: loose bounds, so a broken model fails."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from guidance.cli import main as cli_main
from guidance.contract import needle_to_dict, read_jsonl, target_to_dict
from guidance.detect import DEFAULT_MODEL, SECOND_OPINION_MODEL, load_detector
from guidance.detect.model import ModelDetector
from guidance.evaluate import evaluate
from guidance.sim import SimConfig, Simulator
from guidance.types import ImagingRegion


@pytest.fixture(scope="module")
def model():
    assert DEFAULT_MODEL.is_file(), f"committed model missing: {DEFAULT_MODEL}"
    det = load_detector("auto")
    assert det.name.startswith("model:"), "auto should load the committed model"
    return det


@pytest.fixture(scope="module")
def model_alone():
    """The committed model without its second opinion: the rules on its own maps."""
    return ModelDetector(DEFAULT_MODEL)


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


REPLAY = Path(__file__).resolve().parents[1] / "replay_data"


def score_replay(det, name: str) -> dict:
    """The detector, frame by frame without tracking, on a committed replay_data sequence."""
    folder = REPLAY / name
    truths = list(read_jsonl(folder / "truth.jsonl"))
    frames = sorted((folder / "frames").glob("*.png"))
    assert len(frames) == len(truths), f"{folder}: {len(frames)} frames for {len(truths)} truth lines"
    pairs = []
    for path, truth in zip(frames, truths):
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        d = det.detect(img, spacing_mm=tuple(truth["spacing_mm"]))
        pairs.append(({"frame": truth["frame"], "needle": needle_to_dict(d.needle),
                       "target": target_to_dict(d.target)}, truth))
    return evaluate(pairs)


# Loose bounds, about twice the figures measured when the hybrid post-processing was committed
# (insertion: tip 0.24 mm, angle 0.01 deg, recall 100 %; steep: 0.22 mm, 0.66 deg; no needle: 0 %):
# a detector that lost its sub-pixel line or its tip would fail them.
def test_model_on_replay_insertion_meets_loose_accuracy_bounds(model):
    r = score_replay(model, "insertion")
    assert r["needle_recall"] >= 0.95
    assert r["tip_error"]["median"] < 0.5
    assert r["angle_error_deg"]["median"] < 0.3
    assert r["bone_distance"]["median"] < 0.2


def test_model_on_replay_steep_meets_loose_accuracy_bounds(model):
    r = score_replay(model, "steep")
    assert r["needle_recall"] >= 0.9
    assert r["tip_error"]["median"] < 0.6
    assert r["angle_error_deg"]["median"] < 1.5


def test_model_on_replay_no_needle_reports_no_needle(model):
    r = score_replay(model, "no_needle")
    assert r["false_positive_rate"] <= 0.05
    assert r["bone_coverage"] > 0.8


def needle_maps(length_px: float, prob: float, size: int = 256) -> np.ndarray:
    """Probability maps with one needle line of ``length_px`` (working pixels) at probability ``prob``."""
    maps = np.zeros((4, size, size), np.float32)
    line = np.zeros((size, size), np.uint8)
    x0, y0 = 40, 60
    a = np.radians(30.0)
    cv2.line(line, (x0, y0), (int(round(x0 + length_px * np.cos(a))), int(round(y0 + length_px * np.sin(a)))), 1, 3)
    maps[0] = line * prob
    return maps


@pytest.mark.parametrize("length_px, prob, spacing, seen", [
    (20.0, 0.905, (0.1, 0.1), False),  # 2 mm, just above the general threshold: a short echo, not reported
    (20.0, 0.95, (0.1, 0.1), True),    # 2 mm but certain: an entering shaft
    (60.0, 0.905, (0.1, 0.1), True),   # 6 mm: long enough for the general threshold
    (20.0, 0.905, None, False),        # spacing unknown: 20 of 256 px is under 3.5 mm of a 35 mm wide image
    (60.0, 0.905, None, True),         # spacing unknown, 60 of 256 px: long enough
    (60.0, 0.85, (0.1, 0.1), False),   # below the general threshold whatever the length
])
def test_short_needles_need_more_confidence(model_alone, length_px, prob, spacing, seen):
    crop = np.full((256, 256), 60, np.uint8)  # flat image: refinement keeps the model's line
    det = model_alone.from_maps(crop, needle_maps(length_px, prob), (0, 0), spacing)
    assert (det.needle is not None) == seen


class GivenConsensus(ModelDetector):
    """The committed model and its second opinion, with the four views' average given: the rule is under test."""

    consensus_map: np.ndarray | None = None

    def needle_consensus(self, crop, probs):
        return self.consensus_map


@pytest.mark.parametrize("length_px, consensus, seen", [
    (120.0, 0.80, True),   # 12 mm that all four views see, patchily: a long shaft is a needle
    (60.0, 0.80, False),   # 6 mm at the same agreement: as long as the longest false lines seen, not reported
    (120.0, 0.76, False),  # long, but the views agree too little
    (60.0, 0.85, True),    # 6 mm the views agree on: the consensus' general rule
])
def test_a_long_shaft_the_views_agree_on_is_a_needle(length_px, consensus, seen):
    det = GivenConsensus(DEFAULT_MODEL, second_opinion=SECOND_OPINION_MODEL)
    crop = np.full((256, 256), 60, np.uint8)  # flat image: refinement keeps the model's line
    det.consensus_map = needle_maps(length_px, consensus)[0]
    # this model alone is unsure (0.9 lies in the consensus band), so the views' average decides
    found = det.from_maps(crop, needle_maps(length_px, 0.9), (0, 0), (0.1, 0.1)).needle
    assert (found is not None) == seen


@pytest.mark.parametrize("shaft_px, followed_shaft_mm, seen", [
    (200.0, 15.0, True),   # the views mark 5 mm of a 20 mm shaft a reader sees whole: a needle
    (100.0, 15.0, False),  # the shaft on the image ends at 10 mm: as long as tissue lines get, not reported
    (200.0, 0.0, False),   # the rule turned off: the consensus alone rejects it
])
def test_a_shaft_the_views_mark_in_part_is_a_needle_when_it_runs_on_long_on_the_image(shaft_px, followed_shaft_mm,
                                                                                       seen):
    """The networks can mark only pieces of a long shaft drawn unlike our simulator's (k-Wave's dashes,
    point scatterers): the four views' average then rejects it. Followed on the image, the shaft is
    long, longer than any tissue line followed on the tuning, real and foreign frames (13.3 mm)."""
    from test_postprocess import speckled_two_wall_needle

    det = GivenConsensus(DEFAULT_MODEL, second_opinion=SECOND_OPINION_MODEL, followed_shaft_mm=followed_shaft_mm)
    a = np.radians(30.0)
    d = np.array([np.cos(a), np.sin(a)])
    img = speckled_two_wall_needle((256, 256), np.array([40.0, 60.0]), d, t_end=shaft_px, bright=120.0, dim=36.0)
    crop = np.clip(img + 30.0, 0, 255).astype(np.uint8)
    det.consensus_map = needle_maps(50.0, 0.8)[0]  # 5 mm at 0.8: under the consensus rule, too short to be long
    found = det.from_maps(crop, needle_maps(50.0, 0.9), (0, 0), (0.1, 0.1)).needle
    assert (found is not None) == seen
    if seen:
        tip = np.array([40.0, 60.0]) + shaft_px * d
        assert np.hypot(*(np.subtract(found.tip_px, tip))) < 3.0


def test_a_second_look_at_twice_the_scale_finds_an_entering_needle_not_a_streak(model):
    """Two tuning scenes (never used in training): a needle entering from the side, faint as it rolls
    out of the plane, and a needle-free frame whose oblique tissue streak the views score alike."""
    entering = Simulator(SimConfig(width_px=512, height_px=512, seed=6202, scenario="out_of_plane",
                                depth_mm=30)).render(32)
    streak = Simulator(SimConfig(width_px=512, height_px=512, seed=6218, scenario="no_needle",
                                 depth_mm=45)).render(8)
    found = model.detect(entering.image, spacing_mm=tuple(entering.spacing_mm)).needle
    assert found is not None
    tip_mm = np.hypot(*np.subtract(found.tip_px, entering.truth["needle"]["tip_px"])) * entering.spacing_mm[0]
    assert tip_mm < 0.5
    assert model.detect(streak.image, spacing_mm=tuple(streak.spacing_mm)).needle is None
    # the second look is what tells them apart: without it the needle is missed as well
    alone = ModelDetector(DEFAULT_MODEL, second_opinion=SECOND_OPINION_MODEL, second_look_min_support=0.0)
    assert alone.detect(entering.image, spacing_mm=tuple(entering.spacing_mm)).needle is None


def test_a_short_entering_shaft_is_shown_but_a_short_speck_only_if_all_views_see_it(model):
    """A needle's first 2 mm (tuning scene 6235, 40 mm deep) is drawn; a 1.3 mm speck of a frame made
    the way other simulators make them (bench/eval_foreign.py), which the model alone scores 0.95, is not."""
    entering = Simulator(SimConfig(width_px=480, height_px=640, seed=6235, scenario="insertion",
                                   depth_mm=40)).render(4)
    assert np.hypot(*np.subtract(*entering.truth["needle"]["shaft_px"])) * entering.spacing_mm[0] < 2.2
    found = model.detect(entering.image, spacing_mm=tuple(entering.spacing_mm)).needle
    assert found is not None
    tip_mm = np.hypot(*np.subtract(found.tip_px, entering.truth["needle"]["tip_px"])) * entering.spacing_mm[0]
    assert tip_mm < 0.5
    # the shortest needle used to be 6.5 % of the width (1.95 mm here): this one was missed
    longer = ModelDetector(DEFAULT_MODEL, second_opinion=SECOND_OPINION_MODEL, min_needle_length=0.065)
    assert longer.detect(entering.image, spacing_mm=tuple(entering.spacing_mm)).needle is None

    rng = np.random.default_rng(0)
    make_frame = _foreign_frames_module().make_frame
    speck, spacing, truth = [make_frame(rng, needle=(k % 2 == 0)) for k in range(132)][131]
    assert truth["needle"] is None
    assert model.detect(speck, spacing_mm=spacing).needle is None
    # without asking all four views about a piece that short, the speck is drawn as a needle
    alone = ModelDetector(DEFAULT_MODEL, second_opinion=SECOND_OPINION_MODEL, consensus_below_length=0.0)
    assert alone.detect(speck, spacing_mm=spacing).needle is not None


def test_a_short_shaft_the_four_views_agree_on_is_shown(model):
    """Tuning scene 6201 frame 4: a steep needle's first 2.5 mm, which the four views score 0.873."""
    sf = Simulator(SimConfig(width_px=512, height_px=512, seed=6201, scenario="steep", depth_mm=30)).render(4)
    found = model.detect(sf.image, spacing_mm=tuple(sf.spacing_mm)).needle
    assert found is not None
    assert np.hypot(*np.subtract(found.tip_px, sf.truth["needle"]["tip_px"])) * sf.spacing_mm[0] < 0.5
    # a short piece needed 0.92 alone (0.875 by consensus) before the seventeenth session: missed then
    stricter = ModelDetector(DEFAULT_MODEL, second_opinion=SECOND_OPINION_MODEL, short_needle_min_confidence=0.92)
    assert stricter.detect(sf.image, spacing_mm=tuple(sf.spacing_mm)).needle is None


def broken_needle_maps(prob: float, size: int = 256) -> np.ndarray:
    """Two collinear 20 px pieces of needle 6 px apart, 30 degrees down from (40, 60)."""
    maps = np.zeros((4, size, size), np.float32)
    u = np.array([np.cos(np.radians(30.0)), np.sin(np.radians(30.0))])
    for t0, t1 in ((0.0, 20.0), (26.0, 46.0)):
        a, b = np.array([40.0, 60.0]) + t0 * u, np.array([40.0, 60.0]) + t1 * u
        piece = np.zeros((size, size), np.uint8)
        cv2.line(piece, tuple(int(round(v)) for v in a), tuple(int(round(v)) for v in b), 1, 3)
        maps[0] = np.maximum(maps[0], piece * prob)
    return maps


def test_joined_pieces_extend_a_needle_but_do_not_make_one(model_alone):
    crop = np.full((256, 256), 60, np.uint8)
    # Each piece is 2 mm: under the short-needle rule at 0.905, joined or not.
    assert model_alone.from_maps(crop, broken_needle_maps(0.905), (0, 0), (0.1, 0.1)).needle is None
    # Certain enough: one needle over both pieces, the tip at the far end of the second.
    det = model_alone.from_maps(crop, broken_needle_maps(0.95), (0, 0), (0.1, 0.1)).needle
    far = np.array([40.0, 60.0]) + 46.0 * np.array([np.cos(np.radians(30.0)), np.sin(np.radians(30.0))])
    assert det is not None and np.hypot(*np.subtract(det.tip_px, far)) < 3.0


def _bench_module(name: str):
    """A script of bench/ as a module (bench/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _foreign_frames_module():
    """bench/eval_foreign.py: frames made the way other simulators make them."""
    return _bench_module("eval_foreign")


@pytest.mark.parametrize("needle_model", ["walls", "scatterers"])
def test_model_on_frames_from_another_image_formation(model, needle_model):
    """Frames made the way other simulators make them (bench/eval_foreign.py), never trained on: the needle as
    specular walls with reverberations, or as a cylinder of strong point scatterers (Field II phantoms)."""
    foreign = _foreign_frames_module()
    rng = np.random.default_rng(1)
    pairs = []
    for k in range(24):
        img, sp, truth = foreign.make_frame(rng, needle=k % 2 == 0, needle_model=needle_model)
        det = model.detect(img, spacing_mm=sp)
        pairs.append(({"needle": needle_to_dict(det.needle), "target": None}, truth))
    r = evaluate(pairs)
    # at most 1 of the 12 needles missed; scatterer needles lost 2 before the second opinion was trained on them
    assert r["needle_recall"] >= 0.85
    assert r["false_positive_rate"] <= 0.25
    assert r["tip_error"]["median"] <= 1.0 and r["angle_error_deg"]["median"] <= 1.0


def test_the_tip_is_not_drawn_short_where_the_segmentation_stops_early():
    """Frame 16 of bench/eval_foreign.py's seed 0: the segmentation ends 3 mm before the shaft's echo does."""
    foreign = _foreign_frames_module()
    rng = np.random.default_rng(0)
    img, sp, truth = [foreign.make_frame(rng, needle=k % 2 == 0) for k in range(17)][16]
    tip, tail = np.array(truth["needle"]["tip_px"]), np.array(truth["needle"]["shaft_px"][0])
    along = (tip - tail) / np.hypot(*(tip - tail))

    def tip_error_mm(detector):
        needle = detector.detect(img, spacing_mm=sp).needle
        return float((np.array(needle.tip_px) - tip) @ along * sp[0])  # < 0: short of the real tip

    assert tip_error_mm(ModelDetector(DEFAULT_MODEL, follow_shaft=False)) < -2.5
    assert abs(tip_error_mm(ModelDetector(DEFAULT_MODEL))) < 0.5


def test_a_tip_resting_on_a_tissue_layer_is_not_carried_along_it(model):
    """Tuning scene 6245 (insertion, injecting): the tip rests on a bright layer that runs on at a small
    angle to the shaft. The change-point follower, without its off-axis check, carried the tip 1.5 mm
    along the layer on frames 212 and 218; with the direction band of the thirteenth session, and
    without its check for a line crossing the axis, 1.6 mm on frame 218."""
    from guidance.sim import SimConfig, Simulator

    sim = Simulator(SimConfig(width_px=400, height_px=320, seed=6245, scenario="insertion", depth_mm=25.0))
    for i in (212, 218):
        f = sim.render(i)
        tip, tail = np.array(f.truth["needle"]["tip_px"]), np.array(f.truth["needle"]["shaft_px"][0])
        along = (tip - tail) / np.hypot(*(tip - tail))
        needle = model.detect(f.image, spacing_mm=tuple(f.spacing_mm)).needle
        assert abs(float((np.array(needle.tip_px) - tip) @ along * f.spacing_mm[0])) < 0.5


def test_no_needle_on_real_frames_without_one(model, model_alone, shared_data):
    """Every frame of the two real PLUS sequences (no needle in either): the committed detector draws none.

    The model alone scores tissue streaks in the spine phantom up to 0.92 and draws a needle on some;
    the consensus with the second opinion keeps them below its rule.
    """
    from guidance.io.plus import read_sequence
    from guidance.region import find_imaging_region

    alone, drawn = [], []
    for name in ("BoneUltrasound_L14.igs.mha", "SpinePhantomFreehand.igs.mha"):
        seq = read_sequence(shared_data / "plus" / name)
        for i in range(len(seq)):
            img = np.asarray(seq.frame(i))
            img = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            region = find_imaging_region(img)
            if model_alone.detect(img, spacing_mm=(0.085, 0.085), region=region).needle is not None:
                alone.append(f"{name}:{i}")
            if model.detect(img, spacing_mm=(0.085, 0.085), region=region).needle is not None:
                drawn.append(f"{name}:{i}")
    assert alone, "the model alone no longer sees the streaks: this test no longer checks the consensus"
    assert drawn == []


def test_cartilage_only_where_there_is_a_band_of_cartilage(model):
    """A simulated knee whose cartilage is worn away: the target is the bone, not a tissue layer above it."""
    kinds = {}
    for cartilage in (True, False):
        sim = Simulator(SimConfig(seed=4250, scenario="no_needle", width_px=480, height_px=400, cartilage=cartilage))
        kinds[cartilage] = [model.detect(sf.image, spacing_mm=tuple(sf.spacing_mm)).target.kind
                            for sf in (sim.render(int(i)) for i in np.linspace(0, len(sim) - 1, 10).astype(int))]
    assert kinds[True].count("cartilage") == 10
    assert kinds[False].count("bone") >= 7   # single frames may still see a band; the smoother's vote holds the kind


def test_real_frames_get_cartilage_on_the_knees_and_bone_on_the_plus_bone(model, shared_data):
    """The knee scans show cartilage over the femur; the PLUS bone sequence a soft-tissue layer over bone."""
    got = {name: model.detect(img, spacing_mm=sp, region=region).target
           for name, img, region, sp in _bench_module("real_overlays").real_frames()}
    assert got["knee_lumify"].kind == "cartilage" and got["knee_clarius"].kind == "cartilage"
    assert 1.5 < got["knee_lumify"].cartilage_thickness_mm < 4.0
    assert [got[f"plus_bone_f{i:02d}"].kind for i in (0, 10, 20)] == ["bone"] * 3


def _to_sector(img: np.ndarray, out_wh=(640, 480), half_angle_deg=30.0) -> np.ndarray:
    """Scan-convert a linear frame into a convex probe's fan (as other simulators' phased/convex arrays show it)."""
    h, w = img.shape
    ow, oh = out_wh
    r0, depth = 0.6 * oh, 0.95 * oh
    yy, xx = np.mgrid[0:oh, 0:ow].astype(np.float32)
    dx, dy = xx - ow / 2, yy + r0 - 10
    theta = np.degrees(np.arctan2(dx, dy))
    x_in = (theta + half_angle_deg) / (2 * half_angle_deg) * (w - 1)
    y_in = (np.hypot(dx, dy) - r0) * h / depth
    out = cv2.remap(img, x_in.astype(np.float32), y_in.astype(np.float32), cv2.INTER_LINEAR)
    out[(np.abs(theta) > half_angle_deg) | (y_in < 0) | (y_in > h - 1)] = 0
    return out


def test_a_fan_shaped_image_gets_its_bone_and_no_needle_on_its_edges(model):
    """The fan's straight edges (bright speckle against black) are not needles; the curved bone is still found."""
    from guidance.region import find_imaging_region

    sim = Simulator(SimConfig(seed=4251, scenario="no_needle", width_px=512, height_px=512, depth_mm=40.0))
    for i in (0, 60, 120, 180):
        fan = _to_sector(sim.render(i).image)
        d = model.detect(fan, spacing_mm=(0.06, 0.06), region=find_imaging_region(fan))
        assert d.needle is None
        assert d.target is not None and np.ptp(d.target.bone_px[:, 0]) > 0.5 * fan.shape[1]


def test_model_on_frames_of_another_projects_simulator():
    """Five frames of PyMUST (SIMUS, plane waves; bench/pymust_frames.py), each its own scene: the bone found
    to a fraction of a millimetre, no needle where there is none, and the needles made of dense scatterers
    found with their tips. The flat two-wall needle of frame 0 is still missed (model card): not asserted."""
    folder = REPLAY / "pymust_frames"
    det = load_detector("auto")
    for truth in read_jsonl(folder / "truth.jsonl"):
        img = cv2.imread(str(folder / "images" / f"{truth['frame']:05d}.png"), cv2.IMREAD_GRAYSCALE)
        d = det.detect(img, spacing_mm=tuple(truth["spacing_mm"]))
        r = evaluate([({"needle": needle_to_dict(d.needle), "target": target_to_dict(d.target)}, truth)])
        assert r["bone_distance"]["median"] < 0.1 and r["bone_coverage"] > 0.9, (truth["frame"], r["bone_distance"])
        if truth["needle"] is None:
            assert d.needle is None, truth["frame"]
        elif truth["needle"]["style"] == "scatter":
            assert d.needle is not None, truth["frame"]
            assert r["tip_error"]["median"] < 0.5 and r["angle_error_deg"]["median"] < 1.5, (truth["frame"], r)


def test_model_on_frames_of_a_full_wave_simulator():
    """Six frames of k-Wave (the wave equation solved on a grid, plane waves; bench/kwave_frames.py), each
    its own scene: the needles, metal tubes whose echo is what the wave does at their walls, found with
    their tips and angles, and no needle where there is none. Frame 2's long shaft was drawn 4.8 mm short
    before the direction was fitted again over the shaft followed. Frame 4's flat shaft near the skin,
    drawn as a row of dashes, was missed before a shaft followed 15 mm on the image counted as a needle.
    Of frame 5's faint shaft the networks mark only the first 2 mm, 6 degrees off: its tip was drawn 13 mm
    short before other directions through that piece were tried.
    The bone, with k-Wave's reverberation below it instead of a shadow, is mostly missed (model card):
    not asserted."""
    folder = REPLAY / "kwave_frames"
    det = load_detector("auto")
    for truth in read_jsonl(folder / "truth.jsonl"):
        img = cv2.imread(str(folder / "images" / f"{truth['frame']:05d}.png"), cv2.IMREAD_GRAYSCALE)
        d = det.detect(img, spacing_mm=tuple(truth["spacing_mm"]))
        if truth["needle"] is None:
            assert d.needle is None, truth["frame"]
            continue
        assert d.needle is not None, truth["frame"]
        r = evaluate([({"needle": needle_to_dict(d.needle), "target": None}, truth)])
        assert r["tip_error"]["median"] < 1.0 and r["angle_error_deg"]["median"] < 1.5, (truth["frame"], r)


def test_guidance_detect_on_a_folder_of_unrelated_frames_tracks_nothing_across_them(tmp_path):
    """The contract's `guidance detect` tracks by default. On a folder of frames that are each their own
    scene, as another tool's frames come, each frame gets what it would get alone: no target kind or
    surface carried over from the last scene (frame 1 kept frame 0's cartilage before the scene check)."""
    folder = REPLAY / "pymust_frames"
    tracked, alone = tmp_path / "tracked.jsonl", tmp_path / "alone.jsonl"
    assert cli_main(["detect", str(folder / "images"), "--out", str(tracked)]) == 0
    assert cli_main(["detect", str(folder / "images"), "--no-track", "--out", str(alone)]) == 0
    for t, a in zip(read_jsonl(tracked), read_jsonl(alone), strict=True):
        assert (t["needle"] is None) == (a["needle"] is None), t["frame"]
        if t["needle"] is not None:
            np.testing.assert_allclose(t["needle"]["tip_px"], a["needle"]["tip_px"], atol=0.01)
        assert t["target"]["kind"] == a["target"]["kind"], t["frame"]
        yt = dict((round(x), y) for x, y in t["target"]["bone_px"])
        ya = dict((round(x), y) for x, y in a["target"]["bone_px"])
        common = sorted(set(yt) & set(ya))
        assert len(common) > 0.9 * len(ya)
        assert np.median(np.abs([yt[x] - ya[x] for x in common])) < 0.2, t["frame"]  # the 1-px grid's resampling


def test_guidance_detect_on_independent_frames_of_one_phantom_shows_each_frames_own_needle(tmp_path):
    """One anatomy, the needle posed anew in every frame (how another tool's test set may come): the
    default tracking shows every needle the frame-by-frame run finds, where it finds it. The tracker
    used to hide such needles behind the last frame's, or drop them (recall 62 % against 97 %,
    bench/eval_independent.py)."""
    rng = np.random.default_rng(5)
    (tmp_path / "frames").mkdir()
    sims = {s: Simulator(SimConfig(width_px=400, height_px=320, seed=77, scenario=s, depth_mm=30.0))
            for s in ("insertion", "steep", "out_of_plane")}
    picks = [(s, int(rng.integers(60, 240))) for s in sims for _ in range(5)]
    rng.shuffle(picks)
    for k, (s, i) in enumerate(picks):
        cv2.imwrite(str(tmp_path / "frames" / f"{k:03d}.png"), sims[s].render(i).image)
    tracked, alone = tmp_path / "tracked.jsonl", tmp_path / "alone.jsonl"
    assert cli_main(["detect", str(tmp_path / "frames"), "--out", str(tracked)]) == 0
    assert cli_main(["detect", str(tmp_path / "frames"), "--no-track", "--out", str(alone)]) == 0
    found, hidden = 0, []
    for t, a in zip(read_jsonl(tracked), read_jsonl(alone), strict=True):
        if a["needle"] is None:
            continue
        found += 1
        if t["needle"] is None:
            hidden.append(t["frame"])
            continue
        # the same needle, not the last frame's (a track may fold in a nearby pose: a few px)
        assert np.hypot(*np.subtract(t["needle"]["tip_px"], a["needle"]["tip_px"])) < 8.0, t["frame"]
    assert found >= 10 and hidden == [], hidden


def test_a_large_high_resolution_frame_is_detected_at_the_working_scale_and_answered_in_its_own_pixels():
    """A frame grabber's 1080p capture shows the scanner's image interpolated up. The refinement works in
    pixels tuned on 400-640 px images, so a larger region is detected on a shrunk copy (model card):
    the answer must still be in the frame's own pixels, inside the region, and agree with the
    frame at its native size."""
    sf = Simulator(SimConfig(width_px=512, height_px=512, seed=7001, scenario="insertion", depth_mm=30.0)).render(150)
    det = load_detector("auto")
    native = det.detect(sf.image, spacing_mm=tuple(sf.spacing_mm))
    big = cv2.resize(sf.image, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    screen = np.zeros((1200, 1400), np.uint8)
    screen[100:1124, 300:1324] = big  # the image area of a larger screen
    d = det.detect(screen, spacing_mm=(sf.spacing_mm[0] / 2, sf.spacing_mm[1] / 2),
                   region=ImagingRegion(300, 100, 1024, 1024))
    assert native.needle is not None and d.needle is not None
    expect = lambda p: ((p[0] + 0.5) * 2 - 0.5 + 300, (p[1] + 0.5) * 2 - 0.5 + 100)  # noqa: E731
    assert np.hypot(*np.subtract(d.needle.tip_px, expect(native.needle.tip_px))) < 3.0
    assert abs(d.needle.angle_deg - native.needle.angle_deg) < 1.0
    bone = d.target.bone_px
    assert bone[:, 0].min() >= 300 and bone[:, 0].max() <= 1324 and np.ptp(bone[:, 0]) > 800
    ys = np.interp(bone[:, 0], *zip(*[expect(p) for p in native.target.bone_px]))
    assert np.median(np.abs(bone[:, 1] - ys)) < 2.0
    t = sf.truth["needle"]
    assert np.hypot(*np.subtract(d.needle.tip_px, expect(t["tip_px"]))) < 2 * 1.0 / sf.spacing_mm[0] * 0.5  # < 0.5 mm
