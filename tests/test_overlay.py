"""The overlay draws guidance where the geometry says, and nothing when stale."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from guidance.overlay import (NEEDLE_BGR, aim_spread_mm, OKABE_ITO_BGR, OKABE_ITO_RGB, PATH_BGR, SURFACE_BGR,
                              guidance_is_stale, readout_lines, render_overlay)
from guidance.pipeline import LivePipeline
from guidance.sources.base import SourceBase
from guidance.tracking import TrackStage
from guidance.trajectory import GuidanceStage
from guidance.types import Detection, Frame, FrameResult, NeedleDetection, NeedleTrack, TargetDetection

GREY = 128


def scene(received_s: float = 100.0, spacing=(0.1, 0.1)) -> FrameResult:
    """Needle from (40, 40) to (140, 140) aimed at a flat surface at y=300 (intercept (300, 300))."""
    img = np.full((400, 480), GREY, np.uint8)
    xs = np.arange(0.0, 480.0, 4.0)
    surf = np.stack([xs, np.full_like(xs, 300.0)], axis=1)
    det = Detection(NeedleDetection((140.0, 140.0), (40.0, 40.0), 0.9),
                    TargetDetection("cartilage", surf, surf + [0, 40.0], 2.0))
    r = FrameResult(Frame(img, 0.0, 0, 0, spacing), detection=det, received_s=received_s)
    return GuidanceStage()(TrackStage()(r))


def near(img: np.ndarray, xy, colour, radius: int = 1, tol: int = 40) -> bool:
    """True when a pixel within ``radius`` of (x, y) has ``colour`` (BGR) within ``tol``."""
    x, y = int(round(xy[0])), int(round(xy[1]))
    patch = img[y - radius:y + radius + 1, x - radius:x + radius + 1].astype(int)
    return bool(np.any(np.all(np.abs(patch - np.array(colour)) <= tol, axis=-1)))


def colour_present(img: np.ndarray, colour, tol: int = 30) -> int:
    return int(np.count_nonzero(np.all(np.abs(img.astype(int) - np.array(colour)) <= tol, axis=-1)))


def test_guidance_drawn_where_the_geometry_says():
    r = scene()
    assert r.trajectory.intercept_px == pytest.approx((300.0, 300.0))
    img = render_overlay(r)
    assert img.shape == (400, 480, 3) and img.dtype == np.uint8
    assert near(img, (90, 90), NEEDLE_BGR)            # middle of the shaft
    assert near(img, (300, 300), PATH_BGR)            # intercept marker
    assert near(img, (220, 220), PATH_BGR, radius=6)  # dashed path between tip and intercept
    assert near(img, (420, 300), SURFACE_BGR)         # target surface
    # Away from every mark the picture is the untouched grey frame.
    assert np.all(img[380:, 40:460] == GREY) or near(img, (420, 340), OKABE_ITO_BGR["reddish_purple"])
    assert np.all(img[200, 420:470] == GREY)


def test_input_frame_is_not_modified():
    r = scene()
    render_overlay(r)
    assert np.all(r.frame.image == GREY)


def test_stale_guidance_is_hidden_with_the_reason():
    r = scene(received_s=100.0)
    img = render_overlay(r, now_monotonic_s=100.240, max_age_ms=100.0)
    for colour in (NEEDLE_BGR, PATH_BGR, SURFACE_BGR):
        assert colour_present(img, colour) == 0
    assert np.all(img[60:, :] == GREY)       # nothing drawn on the image itself
    assert np.any(img[:40, :300] != GREY)    # the "guidance hidden" line at the top


def test_fresh_guidance_is_drawn_when_checked_against_the_clock():
    r = scene(received_s=100.0)
    img = render_overlay(r, now_monotonic_s=100.050, max_age_ms=100.0)
    assert near(img, (90, 90), NEEDLE_BGR)


def test_staleness_rule():
    r = scene(received_s=50.0)
    assert not guidance_is_stale(r, 50.099)
    assert guidance_is_stale(r, 50.101)
    assert guidance_is_stale(r, 50.3, max_age_ms=250.0)
    assert not guidance_is_stale(r, 50.2, max_age_ms=250.0)


def test_layers_select_what_is_drawn():
    r = scene()
    img = render_overlay(r, layers={"target"})
    assert near(img, (420, 300), SURFACE_BGR)
    assert colour_present(img, NEEDLE_BGR) == 0 and colour_present(img, PATH_BGR) == 0


def test_lost_needle_is_not_drawn_even_if_a_detection_existed():
    r = scene()
    from dataclasses import replace
    lost = replace(r, track=NeedleTrack("lost", None), trajectory=None, alerts=("needle_lost",))
    img = render_overlay(lost)
    assert colour_present(img, NEEDLE_BGR) == 0
    assert any("lost" in line for line in readout_lines(lost))
    never = replace(r, track=NeedleTrack("lost", None), trajectory=None, alerts=())
    assert "needle: not seen" in readout_lines(never)  # no needle a moment ago: nothing was lost


def test_readouts_state_distance_depth_and_angle():
    r = scene()
    lines = readout_lines(replace(r, track=replace(r.track, confirmed=True)))
    joined = "\n".join(lines)
    # Tip (140, 140) to intercept (300, 300) at 0.1 mm/px: 22.6 mm; tip depth 14.0 mm; 45 deg.
    assert "needle: tracking" in joined
    assert "22.6 mm" in joined and "14.0 mm" in joined and "45 deg" in joined
    # The cone: the tracker's default 1 px across the tip and its angle SD on a 141 px shaft.
    tr = scene().trajectory
    (_, a), (_, b) = tr.cone_px
    assert f"aim: +/-{np.hypot(*np.subtract(a, b)) * 0.1 / 2:.1f} mm" in joined
    no_scale = "\n".join(readout_lines(scene(spacing=None)))
    assert "226 px" in no_scale and "mm" not in no_scale


def test_palette_is_okabe_ito_in_both_orders():
    assert OKABE_ITO_RGB["orange"] == (230, 159, 0)
    assert OKABE_ITO_BGR["orange"] == (0, 159, 230)
    assert len(set(OKABE_ITO_BGR.values())) == len(OKABE_ITO_BGR)


def test_broken_needle_coordinates_draw_nothing_and_do_not_fail():
    img = np.full((100, 120), GREY, np.uint8)
    det = Detection(NeedleDetection((float("nan"), 40.0), (10.0, 10.0), 0.5), None)
    r = GuidanceStage()(FrameResult(Frame(img, 0.0, 0, 0, None), detection=det))
    out = render_overlay(r)
    assert colour_present(out, NEEDLE_BGR) == 0


def test_result_without_a_receive_time_is_hidden_when_checked_against_the_clock():
    r = scene(received_s=0.0)   # e.g. rebuilt from a recording: no live age
    img = render_overlay(r, now_monotonic_s=time.monotonic())
    assert colour_present(img, NEEDLE_BGR) == 0 and colour_present(img, PATH_BGR) == 0
    assert np.any(img[:40, :300] != GREY)


# --- end to end: a live pipeline whose scanner freezes --------------------------------------

class FreezableScanner(SourceBase):
    """Grey frames, as fast as asked, until ``gate`` is cleared: then ``read`` blocks (frozen scanner)."""

    name = "freezable scanner"
    is_live = True

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.emitted = 0

    def read(self):
        self.gate.wait()
        time.sleep(0.002)
        self.emitted += 1
        return self.make_frame(np.full((400, 480), GREY, np.uint8), self.emitted / 30, self.emitted, (0.1, 0.1))


class SceneDetector:
    """Detection stage that sees the needle and surface of :func:`scene` in every frame."""

    name = "detect"

    def __call__(self, result):
        return replace(result, detection=scene().detection)


def test_live_guidance_goes_stale_and_is_hidden_when_the_scanner_freezes():
    source = FreezableScanner()
    stages = [SceneDetector(), TrackStage(), GuidanceStage()]
    with LivePipeline(source, stages, stall_timeout_s=0.3) as pipeline:
        deadline = time.monotonic() + 20
        while (pipeline.latest() is None or pipeline.latest().trajectory is None
               or pipeline.status().frames_processed < 5):
            assert time.monotonic() < deadline, "no guidance from the pipeline"
            time.sleep(0.005)
        fresh = pipeline.latest()
        # Drawn when looked at within its age (the clock given, so the test does not depend on load).
        assert near(render_overlay(fresh, now_monotonic_s=fresh.received_s + 0.05), (90, 90), NEEDLE_BGR)
        source.gate.clear()   # the scanner freezes: the last result stays the newest
        while pipeline.status().state != "no_signal":
            assert time.monotonic() < deadline, "the pipeline never noticed the frozen scanner"
            time.sleep(0.005)
        frozen = pipeline.latest()
        img = render_overlay(frozen, now_monotonic_s=time.monotonic())
        source.gate.set()
    assert time.monotonic() - frozen.received_s > 0.1
    for colour in (NEEDLE_BGR, PATH_BGR, SURFACE_BGR):
        assert colour_present(img, colour) == 0
    assert np.all(img[60:, :] == GREY) and np.any(img[:40, :300] != GREY)


def test_surface_is_not_drawn_across_a_gap_where_nothing_was_seen():
    img = np.full((200, 300), GREY, np.uint8)
    xs = np.arange(0.0, 300.0, 2.0)
    seen = (xs < 100) | (xs > 200)
    surf = np.stack([xs[seen], np.full(int(seen.sum()), 150.0)], axis=1)
    r = FrameResult(Frame(img, 0.0, 0, 0, (0.1, 0.1)), detection=Detection(None, TargetDetection("bone", surf, surf)))
    out = render_overlay(r, layers={"target"})
    bone = OKABE_ITO_BGR["reddish_purple"]
    assert near(out, (50, 150), bone) and near(out, (250, 150), bone)
    assert not near(out, (150, 150), bone, radius=3)


def test_aim_spread_is_half_the_cone_width_on_the_surface_in_mm():
    # Vertical needle 40 px above a flat surface, +-2 SD of 2 deg and of 1 px: ends at x = 50 -+ (2 + 40 tan 4).
    from guidance.trajectory import compute_trajectory
    xs = np.arange(0.0, 200.0, 2.0)
    surf = np.stack([xs, np.full_like(xs, 100.0)], axis=1)
    tr = compute_trajectory(NeedleDetection((50.0, 60.0), (50.0, 0.0), 1.0), TargetDetection("bone", surf, surf),
                            (0.1, 0.2), angle_sd_deg=2.0, tip_sd_px=1.0)
    # Anisotropic: the cone opens by 4 deg in mm space; its x half-width in px is 2 + 40 * (0.2 / 0.1) * tan 4.
    half_px = 2.0 + 40 * 2.0 * np.tan(np.radians(4.0))
    assert aim_spread_mm(tr, (0.1, 0.2)) == pytest.approx(half_px * 0.1)
    assert aim_spread_mm(tr, None) is None


def test_needle_seen_in_one_frame_only_reads_unconfirmed():
    first = scene()                                   # one detection: the track is not confirmed yet
    assert not first.track.confirmed and "needle: unconfirmed" in readout_lines(first)
    confirmed = replace(first, track=replace(first.track, confirmed=True))
    assert "needle: tracking" in readout_lines(confirmed)
