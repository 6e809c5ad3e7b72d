"""Trajectory geometry against hand-computed answers, and the guidance alerts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from guidance.tracking import TrackStage
from guidance.trajectory import GuidanceStage, compute_trajectory, miss_vector
from guidance.types import (Detection, Frame, FrameResult, ImagingRegion, NeedleDetection,
                            TargetDetection)


def flat_surface(y: float, x0: float = 0.0, x1: float = 200.0, n: int = 21) -> TargetDetection:
    xs = np.linspace(x0, x1, n)
    surf = np.stack([xs, np.full_like(xs, y)], axis=1)
    return TargetDetection("cartilage", surf, surf + [0.0, 10.0], 1.0)


def needle(tail, tip) -> NeedleDetection:
    return NeedleDetection(tuple(map(float, tip)), tuple(map(float, tail)), 0.9)


def test_45_degree_needle_meets_flat_surface_exactly():
    tr = compute_trajectory(needle((0, 0), (50, 50)), flat_surface(100), None)
    assert tr.intercept_px == pytest.approx((100.0, 100.0))
    assert tr.distance_px == pytest.approx(50 * math.sqrt(2))
    assert tr.distance_mm is None and tr.tip_depth_mm is None
    assert tr.approach_deg == pytest.approx(45.0)


def test_anisotropic_spacing_scales_distance_depth_and_angle():
    # 0.1 mm/px across, 0.2 mm/px down: the 50x50 px step is 5 mm across, 10 mm down.
    tr = compute_trajectory(needle((0, 0), (50, 50)), flat_surface(100), (0.1, 0.2), skin_y_px=10)
    assert tr.intercept_px == pytest.approx((100.0, 100.0))
    assert tr.distance_mm == pytest.approx(math.hypot(5.0, 10.0))
    assert tr.tip_depth_mm == pytest.approx((50 - 10) * 0.2)
    assert tr.approach_deg == pytest.approx(math.degrees(math.atan2(10.0, 5.0)))


def test_skin_line_defaults_to_top_of_frame():
    tr = compute_trajectory(needle((0, 0), (50, 50)), flat_surface(100), (0.1, 0.2))
    assert tr.tip_depth_mm == pytest.approx(50 * 0.2)


def test_vertical_needle_is_perpendicular():
    tr = compute_trajectory(needle((30, 0), (30, 40)), flat_surface(90), (0.1, 0.1))
    assert tr.intercept_px == pytest.approx((30.0, 90.0))
    assert tr.distance_mm == pytest.approx(5.0)
    assert tr.approach_deg == pytest.approx(90.0)


def test_sloped_surface_intercept_and_angle():
    # Surface y = 100 + 0.5 (x - 100) from x=0..200; needle straight down at x=140.
    xs = np.array([0.0, 200.0])
    surf = np.stack([xs, 100 + 0.5 * (xs - 100)], axis=1)
    t = TargetDetection("bone", surf, surf)
    tr = compute_trajectory(needle((140, 0), (140, 20)), t, (0.2, 0.2))
    assert tr.intercept_px == pytest.approx((140.0, 120.0))
    assert tr.distance_mm == pytest.approx(100 * 0.2)
    # Angle between (0, 1) and the tangent (2, 1): 90 - atan(1/2).
    assert tr.approach_deg == pytest.approx(90 - math.degrees(math.atan(0.5)))


def test_first_crossing_of_a_wavy_surface_is_taken():
    xs = np.arange(0.0, 401.0, 1.0)
    surf = np.stack([xs, 100 + 30 * np.sin(xs / 20.0)], axis=1)
    t = TargetDetection("bone", surf, surf)
    tr = compute_trajectory(needle((0, 60), (10, 62)), t, None)
    assert tr is not None
    y_surf = np.interp(tr.intercept_px[0], xs, surf[:, 1])
    assert tr.intercept_px[1] == pytest.approx(y_surf, abs=1e-6)
    # No earlier crossing: every point of the path before the intercept is above the surface.
    path_x = np.linspace(10, tr.intercept_px[0], 500)[:-1]
    path_y = 62 + (path_x - 10) * 0.2
    assert np.all(path_y < np.interp(path_x, xs, surf[:, 1]))


def test_needle_parallel_to_surface_gives_none():
    assert compute_trajectory(needle((0, 50), (40, 50)), flat_surface(100), (0.1, 0.1)) is None


def test_needle_pointing_away_from_surface_gives_none():
    assert compute_trajectory(needle((50, 80), (60, 60)), flat_surface(100), (0.1, 0.1)) is None


def test_path_passing_beside_the_surface_gives_none():
    # Surface spans x 0..200; the path meets y=100 at x=300.
    assert compute_trajectory(needle((200, 0), (250, 50)), flat_surface(100), (0.1, 0.1)) is None


def test_tip_already_past_the_surface_gives_none():
    assert compute_trajectory(needle((0, 0), (120, 120)), flat_surface(100), (0.1, 0.1)) is None


def test_tip_just_past_the_surface_has_reached_it():
    # 45 deg needle, tip 0.3 mm (3 px) below a surface at y=100: within the 0.5 mm reach along the
    # path (4.2 px = 0.42 mm), so it is at the target: the crossing behind the tip, distance 0.
    tr = compute_trajectory(needle((0, 0), (103, 103)), flat_surface(100), (0.1, 0.1))
    assert tr.intercept_px == pytest.approx((100.0, 100.0))
    assert tr.distance_mm == 0.0 and tr.distance_px == 0.0
    # 0.4 mm below is 0.57 mm along the path: past the reach.
    assert compute_trajectory(needle((0, 0), (104, 104)), flat_surface(100), (0.1, 0.1)) is None
    # Without a spacing there is no reach in mm: the surface must lie ahead.
    assert compute_trajectory(needle((0, 0), (103, 103)), flat_surface(100), None) is None


def test_needle_heading_up_just_above_the_surface_does_not_reach_it():
    assert compute_trajectory(needle((100, 120), (100, 98)), flat_surface(100), (0.1, 0.1)) is None


def test_missing_needle_or_target_gives_none():
    assert compute_trajectory(None, flat_surface(100), None) is None
    assert compute_trajectory(needle((0, 0), (10, 10)), None, None) is None


def test_cone_lines_open_at_plus_minus_k_sd_in_mm_space():
    spacing = (0.1, 0.3)
    tr = compute_trajectory(needle((0, 0), (50, 20)), flat_surface(100, 0, 1000, 101), spacing,
                            angle_sd_deg=1.5, cone_k=2.0)
    assert tr.cone_px is not None

    def angle_mm(p0, p1):
        d = np.subtract(p1, p0) * spacing
        return math.degrees(math.atan2(d[1], d[0]))

    main = angle_mm((50, 20), tr.intercept_px)
    sides = sorted(angle_mm(p0, p1) - main for p0, p1 in tr.cone_px)
    assert sides == pytest.approx([-3.0, 3.0], abs=1e-6)
    for p0, p1 in tr.cone_px:
        assert p0 == pytest.approx((50.0, 20.0))
        assert p1[1] == pytest.approx(100.0)  # both edges end on the surface


def surface_with_hole(y: float, hole=(80.0, 120.0), kind="cartilage", bone_dy: float = 10.0,
                      bone_hole=None) -> TargetDetection:
    """Flat surface at ``y`` sampled every 2 px over 0..200, not seen over ``hole``; bone ``bone_dy`` below."""
    xs = np.arange(0.0, 201.0, 2.0)
    surf = np.stack([xs, np.full_like(xs, y)], axis=1)
    bone = surf + [0.0, bone_dy]
    surf = surf[(xs <= hole[0]) | (xs >= hole[1])]
    if bone_hole is not None:
        bone = bone[(xs <= bone_hole[0]) | (xs >= bone_hole[1])]
    return TargetDetection(kind, surf if kind == "cartilage" else bone, bone, 1.0)


def test_needle_aimed_into_a_hole_in_the_cartilage_meets_the_bone_seen_there():
    tr = compute_trajectory(needle((100, 0), (100, 50)), surface_with_hole(100), (0.1, 0.1))
    assert tr.intercept_px == pytest.approx((100.0, 110.0))        # bone, not a bridge at y=100
    assert tr.distance_mm == pytest.approx(6.0)


def test_needle_aimed_into_a_hole_where_nothing_was_seen_meets_nothing():
    hole = surface_with_hole(100, kind="bone", bone_dy=0.0, bone_hole=(80.0, 120.0))
    assert compute_trajectory(needle((100, 0), (100, 50)), hole, (0.1, 0.1)) is None
    assert compute_trajectory(needle((80, 0), (90, 30)), hole, (0.1, 0.1)) is None  # lands at x=113
    beside = compute_trajectory(needle((50, 10), (60, 20)), hole, (0.1, 0.1))       # lands at x=140: seen
    assert beside.intercept_px == pytest.approx((140.0, 100.0))


def test_coarsely_sampled_surface_is_not_taken_for_gaps():
    tr = compute_trajectory(needle((100, 0), (105, 50)), flat_surface(100, 0, 200, 6), (0.1, 0.1))  # a point / 40 px
    assert tr.intercept_px == pytest.approx((110.0, 100.0))


def test_tip_over_a_notch_in_the_bone_is_not_near_bone():
    stage = GuidanceStage(near_bone_mm=2.0)
    target = surface_with_hole(100, kind="bone", bone_dy=0.0, bone_hole=(60.0, 140.0))
    over_notch = stage(_result(needle((100, 0), (100, 95)), target))     # 0.5 mm above the bridge
    assert "near_bone" not in over_notch.alerts
    over_bone = stage(_result(needle((40, 0), (40, 85)), target))         # 1.5 mm above bone
    assert "near_bone" in over_bone.alerts


def test_cone_starts_beside_the_tip_by_its_across_shaft_uncertainty():
    # Vertical needle, tip at (50, 60), flat surface at y=100: without angle uncertainty the
    # cone is a band of +-k * sd px about the path, each side ending on the surface.
    tr = compute_trajectory(needle((50, 0), (50, 60)), flat_surface(100), (0.1, 0.1),
                            tip_sd_px=1.5, cone_k=2.0)
    starts = sorted(p0 for p0, _ in tr.cone_px)
    ends = sorted(p1 for _, p1 in tr.cone_px)
    assert starts == [pytest.approx((47.0, 60.0)), pytest.approx((53.0, 60.0))]
    assert ends == [pytest.approx((47.0, 100.0)), pytest.approx((53.0, 100.0))]


def test_cone_from_both_uncertainties_opens_outward_on_each_side():
    tr = compute_trajectory(needle((50, 0), (50, 60)), flat_surface(100), (0.1, 0.1),
                            angle_sd_deg=2.0, tip_sd_px=1.0, cone_k=2.0)
    (left_start, left_end), (right_start, right_end) = sorted(tr.cone_px)
    spread = math.tan(math.radians(4.0)) * 40
    assert left_end == pytest.approx((48.0 - spread, 100.0))
    assert right_end == pytest.approx((52.0 + spread, 100.0))


def test_no_cone_without_uncertainty():
    assert compute_trajectory(needle((0, 0), (50, 50)), flat_surface(100), None).cone_px is None


def test_miss_split_into_lateral_and_depth_mm():
    # Vertical path at x=50; target 10 px to its right at the surface: the path passes 1 mm left.
    tr = compute_trajectory(needle((50, 0), (50, 50)), flat_surface(100), (0.1, 0.1),
                            target_point_px=(60, 100))
    assert tr.target_point_px == (60.0, 100.0)
    assert tr.miss_lateral_mm == pytest.approx(-1.0)
    assert tr.miss_depth_mm == pytest.approx(0.0)
    # Horizontal path at y=50 with the target 20 px (sy 0.2 -> 4 mm) below it: path is shallower.
    mv = miss_vector(needle((0, 50), (10, 50)), (80, 70), (0.1, 0.2))
    assert mv == pytest.approx([0.0, -4.0])


def test_target_on_the_path_has_no_miss():
    tr = compute_trajectory(needle((0, 0), (50, 50)), flat_surface(100), (0.1, 0.2),
                            target_point_px=(100, 100))
    assert tr.miss_lateral_mm == pytest.approx(0.0, abs=1e-9)
    assert tr.miss_depth_mm == pytest.approx(0.0, abs=1e-9)


def _result(n, target, t_s=0.0, spacing=(0.1, 0.1), region=None):
    frame = Frame(np.zeros((200, 300), np.uint8), t_s, int(round(t_s * 30)), 0, spacing)
    return FrameResult(frame, region=region, detection=Detection(n, target))


def test_guidance_stage_fills_trajectory_and_uses_region_as_skin():
    stage = GuidanceStage()
    r = stage(_result(needle((50, 0), (50, 60)), flat_surface(150),
                      region=ImagingRegion(0, 20, 300, 180)))
    assert r.trajectory.intercept_px == pytest.approx((50.0, 150.0))
    assert r.trajectory.tip_depth_mm == pytest.approx((60 - 20) * 0.1)
    assert r.alerts == ("steep_needle",)   # a vertical shaft: its tip may be deeper than drawn


def test_near_bone_alert_within_threshold_only():
    stage = GuidanceStage(near_bone_mm=2.0)
    target = flat_surface(100)  # bone at y=110 (1 mm per 10 px)
    assert "near_bone" in stage(_result(needle((50, 0), (50, 95)), target)).alerts      # 1.5 mm
    assert "near_bone" not in stage(_result(needle((50, 0), (50, 80)), target)).alerts  # 3 mm
    assert "near_bone" in stage(_result(needle((50, 0), (50, 130)), target)).alerts     # inside bone


def test_off_target_alert_and_set_target_point():
    stage = GuidanceStage(off_target_mm=2.0)
    n = needle((50, 0), (50, 50))
    assert "off_target" not in stage(_result(n, flat_surface(100))).alerts  # no target chosen
    stage.set_target_point((60, 100))   # 1 mm beside the path
    r = stage(_result(n, flat_surface(100)))
    assert "off_target" not in r.alerts and r.trajectory.miss_lateral_mm == pytest.approx(-1.0)
    stage.set_target_point((90, 100))   # 4 mm beside the path
    assert "off_target" in stage(_result(n, flat_surface(100))).alerts
    stage.set_target_point(None)
    assert stage(_result(n, flat_surface(100))).trajectory.target_point_px is None


def test_needle_lost_alert_only_after_a_needle_was_tracked():
    track, guide = TrackStage(coast_s=0.5), GuidanceStage()
    empty = [guide(track(_result(None, flat_surface(100), t_s=i / 30))) for i in range(5)]
    assert all("needle_lost" not in r.alerts for r in empty)
    t0 = 1.0
    for i in range(10):
        guide(track(_result(needle((50, 0), (50, 50)), flat_surface(100), t_s=t0 + i / 30)))
    after = [guide(track(_result(None, flat_surface(100), t_s=t0 + (10 + i) / 30))) for i in range(30)]
    states = [r.track.state for r in after]
    assert "coasting" in states and states[-1] == "lost"
    assert all(("needle_lost" in r.alerts) == (r.track.state == "lost") for r in after)


def _run(needles, t0_s: float = 0.0):
    """Track + guidance over a list of needles (None: nothing detected), 30 fps; the results."""
    track, guide = TrackStage(coast_s=0.5), GuidanceStage()
    return [guide(track(_result(n, flat_surface(100), t_s=t0_s + i / 30))) for i, n in enumerate(needles)]


def _onsets(results, alert: str = "needle_lost") -> int:
    """How many times ``alert`` starts (what the user notices and the timeline marks)."""
    on = [alert in r.alerts for r in results]
    return sum(1 for prev, cur in zip([False] + on, on) if cur and not prev)


@pytest.mark.parametrize("false_frames", [1, 2])
def test_false_detection_for_a_frame_or_two_then_nothing_raises_no_needle_lost(false_frames):
    spurious = needle((50, 0), (50, 50))
    results = _run([None] * 5 + [spurious] * false_frames + [None] * 60)
    assert any(r.needle is not None for r in results)        # the detection was passed on ...
    assert not any("needle_lost" in r.alerts for r in results)  # ... but its going raises nothing


def test_confirmed_needle_that_disappears_past_the_coast_raises_exactly_one_needle_lost():
    results = _run([needle((50, 0), (50, 50))] * 10 + [None] * 60)
    states = [r.track.state for r in results[10:]]
    assert "coasting" in states and states[-1] == "lost"
    assert _onsets(results) == 1
    assert all("needle_lost" in r.alerts for r in results[10:] if r.track.state == "lost")


def test_a_flicker_of_detection_while_lost_does_not_start_a_second_needle_lost():
    n = needle((50, 0), (50, 50))
    results = _run([n] * 10 + [None] * 30 + [needle((120, 10), (150, 60))] + [None] * 30)
    assert _onsets(results) == 1


def test_redirected_needle_taken_up_by_a_new_track_raises_no_needle_lost():
    # Same entry point, new angle: the tracker replaces the track after a couple of frames, and
    # the new track is briefly unconfirmed; the needle never went away, so nothing was lost.
    before, after = needle((0, 0), (50, 50)), needle((0, 0), (30, 65))
    results = _run([before] * 15 + [after] * 15)
    assert all(r.needle is not None for r in results)
    assert not any("needle_lost" in r.alerts for r in results)


def test_needle_lost_ends_once_the_needle_is_confirmed_again():
    n = needle((50, 0), (50, 50))
    results = _run([n] * 10 + [None] * 30 + [n] * 10)
    assert _onsets(results) == 1
    assert "needle_lost" not in results[-1].alerts and results[-1].track.confirmed


def test_near_bone_waits_for_a_confirmed_needle():
    near = needle((50, 0), (50, 95))   # tip 0.5 mm above the surface (bone 1 mm below it)
    flash = _run([None] * 3 + [near] + [None] * 10)
    assert not any("near_bone" in r.alerts for r in flash)          # one false detection: no alert
    steady = _run([near] * 6)
    assert ["near_bone" in r.alerts for r in steady] == [False, False, True, True, True, True]


def test_near_bone_stays_one_alert_through_a_redirect():
    before, after = needle((50, 0), (50, 95)), needle((20, 0), (50, 95))   # same tip, 17 deg apart
    results = _run([before] * 10 + [after] * 10)
    assert _onsets(results, "near_bone") == 1 and "near_bone" in results[-1].alerts
    assert not any("needle_lost" in r.alerts for r in results)


# --- properties over random geometry ---------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

coord = st.floats(0.0, 400.0, allow_nan=False)
spacing_st = st.tuples(st.floats(0.03, 0.5), st.floats(0.03, 0.5))


@settings(max_examples=200, deadline=None)
@given(tip_x=coord, tip_y=st.floats(0.0, 190.0), angle=st.floats(5.0, 175.0), surface_y=st.floats(200.0, 390.0),
       spacing=spacing_st)
def test_downward_needle_always_meets_a_wide_flat_surface(tip_x, tip_y, angle, surface_y, spacing):
    d = np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))])
    n = needle(np.array([tip_x, tip_y]) - 30 * d, (tip_x, tip_y))
    tr = compute_trajectory(n, flat_surface(surface_y, -1e5, 1e5, 3), spacing)
    assert tr is not None
    assert tr.intercept_px[1] == pytest.approx(surface_y)
    # The intercept lies on the needle's line ahead of the tip, at the reported distances.
    v = np.subtract(tr.intercept_px, (tip_x, tip_y))
    assert float(np.dot(v, d)) >= 0 and abs(float(v[0] * d[1] - v[1] * d[0])) < 1e-6 * max(1.0, tr.distance_px)
    assert tr.distance_px == pytest.approx(float(np.hypot(*v)), rel=1e-9, abs=1e-9)
    assert tr.distance_mm == pytest.approx(float(np.hypot(v[0] * spacing[0], v[1] * spacing[1])), rel=1e-9, abs=1e-9)
    assert 0.0 <= tr.approach_deg <= 90.0


@settings(max_examples=200, deadline=None)
@given(tip_x=coord, tip_y=st.floats(0.0, 190.0), angle=st.floats(-175.0, -5.0), surface_y=st.floats(200.0, 390.0))
def test_upward_needle_never_meets_a_surface_below(tip_x, tip_y, angle, surface_y):
    d = np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))])
    n = needle(np.array([tip_x, tip_y]) - 30 * d, (tip_x, tip_y))
    assert compute_trajectory(n, flat_surface(surface_y, -1e5, 1e5, 3), (0.1, 0.1)) is None


def test_target_point_parsing():
    from guidance.errors import InputError
    from guidance.trajectory import parse_target_point
    assert parse_target_point("312,240.5") == (312.0, 240.5)
    for bad in ("312", "a,b", "1,2,3", "nan,4"):
        with pytest.raises(InputError, match="target point"):
            parse_target_point(bad)


def _at_angle(deg: float, length: float = 80.0, tail=(20.0, 10.0)) -> NeedleDetection:
    a = math.radians(deg)
    return needle(tail, (tail[0] + length * math.cos(a), tail[1] + length * math.sin(a)))


def test_steep_needle_alert_from_45_degrees_read_in_tissue():
    stage = GuidanceStage()
    assert "steep_needle" not in stage(_result(_at_angle(30.0), flat_surface(150))).alerts
    stage = GuidanceStage()
    assert "steep_needle" in stage(_result(_at_angle(50.0), flat_surface(150))).alerts
    # 40 degrees in pixels, but rows are 1.5x taller than columns are wide: 51.5 degrees in tissue
    stage = GuidanceStage()
    assert "steep_needle" in stage(_result(_at_angle(40.0), flat_surface(150), spacing=(0.1, 0.15))).alerts


def test_steep_needle_alert_does_not_flicker_about_the_limit():
    stage = GuidanceStage()
    seen = ["steep_needle" in stage(_result(_at_angle(deg), flat_surface(150), t_s=i / 30)).alerts
            for i, deg in enumerate([46.0, 44.0, 43.0, 45.5, 42.5, 41.0, 44.5, 46.0])]
    assert seen == [True, True, True, True, True, False, False, True]


def test_steep_needle_waits_for_a_confirmed_needle():
    track, guide = TrackStage(coast_s=0.5), GuidanceStage()
    first = [guide(track(_result(_at_angle(55.0), flat_surface(150), t_s=i / 30))).alerts for i in range(4)]
    assert "steep_needle" not in first[0] and "steep_needle" in first[-1]
