"""The needle's path to the target: intercept, distance, depth, angle, alerts.

The needle's line is extended beyond the tip until it meets the target
surface (top of the cartilage, else the bone). Lengths and angles are read in
tissue millimetres: pixel vectors are scaled per axis by the spacing
``(sx_mm, sy_mm)`` first, so anisotropic pixels give true distances and angles.
Without a spacing the ``*_mm`` values are None and angles are read in pixels.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .errors import InputError
from .geometry import (break_at_gaps, fill_gaps, gap_px, point_polyline_distance, polyline_y_at, ray_polyline_hit,
                       ray_polyline_hits, to_mm)
from .types import FrameResult, NeedleDetection, Spacing, TargetDetection, Trajectory

ALERT_NEAR_BONE = "near_bone"
ALERT_OFF_TARGET = "off_target"
ALERT_NEEDLE_LOST = "needle_lost"
ALERT_STEEP_NEEDLE = "steep_needle"

STEEP_NEEDLE_DEG = 45.0
"""A shaft at least this steep (from the horizontal, in tissue) raises ``steep_needle``: its tip may be deeper.

A steep shaft sends its specular echo away from the probe, so its deep end
can fade before the tip does and the tip is drawn short: the distance to go
then reads longer than it is. On the 50 tuning scenes (every frame, the
committed detector) 19-21 % of the tips detected at 45 degrees or steeper
were more than 1 mm short (10-13 % more than 2 mm), against at most 2.3 %
(0.5 %) below 45 degrees. The alert goes off again below
``STEEP_NEEDLE_DEG - 3`` so that a needle held near the limit does not make it flicker.
"""


def parse_target_point(text: str) -> tuple[float, float]:
    """Parse ``X,Y`` (frame pixels) as given to ``--target``; InputError when malformed."""
    try:
        x, y = (float(v) for v in str(text).split(","))
    except ValueError:
        raise InputError(f"target point {text!r}: expected X,Y in frame pixels, e.g. 312,240") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise InputError(f"target point {text!r}: coordinates must be finite numbers")
    return x, y


def _metric(spacing_mm: Spacing | None) -> np.ndarray:
    """Per-axis scale into the space where lengths and angles are read."""
    return np.asarray(spacing_mm if spacing_mm is not None else (1.0, 1.0), dtype=float)


def miss_vector(needle: NeedleDetection, target_point_px, spacing_mm: Spacing | None) -> np.ndarray:
    """Vector from the target point to the nearest point of the needle's path ahead of the tip.

    In mm when ``spacing_mm`` is known, else in pixels. ``(+x, +y)`` means the
    path passes to the right of / deeper than the target. When the target lies
    behind the tip, the nearest point of the path is the tip itself.
    """
    m = _metric(spacing_mm)
    tip = np.asarray(needle.tip_px, dtype=float) * m
    d = needle.direction * m
    d /= np.hypot(*d)
    q = np.asarray(target_point_px, dtype=float) * m
    t = max(float(np.dot(q - tip, d)), 0.0)
    return tip + t * d - q


def compute_trajectory(needle: NeedleDetection | None, target: TargetDetection | None,
                       spacing_mm: Spacing | None, *, angle_sd_deg: float = 0.0,
                       target_point_px=None, skin_y_px: float | None = None,
                       cone_k: float = 2.0, tip_sd_px: float = 0.0,
                       max_gap_px: float = 8.0, reach_mm: float = 0.5) -> Trajectory | None:
    """Where the needle's extended line meets the target surface.

    Parameters
    ----------
    needle : NeedleDetection or None
        Tip and tail in frame pixels; the path runs from the tail through the tip.
    target : TargetDetection or None
        ``surface_px`` is the (N, 2) polyline the needle is aimed at.
    spacing_mm : (sx, sy) or None
        Millimetres per pixel along x and y.
    angle_sd_deg : float
        Shaft-angle uncertainty (1 SD); the cone spans ``±cone_k * angle_sd_deg``.
    tip_sd_px : float
        Uncertainty of the tip across the shaft (1 SD, px); the cone's lines
        start ``±cone_k * tip_sd_px`` beside the tip, so the cone does not
        shrink to a point where the tip is nearly on the surface.
    max_gap_px : float
        A step in x wider than this (or than 3 median steps) between surface
        points is a gap where the surface was not seen
        (:func:`~guidance.geometry.break_at_gaps`): never crossed as if it were
        surface; a cartilage gap is filled with the bone seen in it.
    reach_mm : float
        A tip heading deeper that is past the surface by at most this much
        along the path (less than the tip's and the surface's own errors) has
        reached it: the intercept is the crossing just behind the tip and the
        distance 0. Needs the spacing; without one the path must meet the
        surface ahead of the tip.
    target_point_px : (x, y) or None
        A point the user picked; adds the miss split into depth and lateral mm.
    skin_y_px : float or None
        Row of the skin line (top of the imaging region); 0 when None.

    Returns
    -------
    Trajectory, or None when there is no needle or target, or when the line
    ahead of the tip does not meet the surface (parallel, pointing away,
    passing beside it, tip well past it).
    """
    if needle is None or target is None:
        return None
    surface = np.asarray(target.surface_px, dtype=float)
    if surface.ndim != 2 or len(surface) < 2:
        return None
    # Where the surface was not seen the path meets nothing invented: a straight bridge across a
    # hole in the cartilage is no surface; the bone seen there is (the contract's "bone where
    # no cartilage is seen"), and where neither was seen the path goes on to the next piece.
    bone = np.asarray(target.bone_px, dtype=float).reshape(-1, 2)
    surface = fill_gaps(surface, bone, max_gap_px) if target.kind == "cartilage" else break_at_gaps(surface, max_gap_px)
    m = _metric(spacing_mm)
    tip = np.asarray(needle.tip_px, dtype=float)
    d_px = needle.direction
    hit = _hit(tip, d_px, surface, reach_mm / float(np.hypot(*(d_px * m))) if spacing_mm is not None else 0.0)
    if hit is None:
        return None
    t_px, seg = hit
    intercept = tip + t_px * d_px
    t_px = max(t_px, 0.0)   # a tip that has just reached the surface is at it: distance 0

    # Angle between the path and the local surface tangent, read in tissue space.
    tangent = (surface[seg + 1] - surface[seg]) * m
    d_m = d_px * m
    cos_a = abs(float(np.dot(tangent, d_m))) / (np.hypot(*tangent) * np.hypot(*d_m))
    approach_deg = math.degrees(math.acos(min(1.0, cos_a)))

    distance_mm = float(np.hypot(*to_mm(t_px * d_px, spacing_mm))) if spacing_mm is not None else None
    skin = 0.0 if skin_y_px is None else float(skin_y_px)
    tip_depth_mm = (float(tip[1]) - skin) * spacing_mm[1] if spacing_mm is not None else None

    cone = (_cone(tip, d_m, m, surface, cone_k * float(angle_sd_deg), cone_k * float(tip_sd_px), t_px)
            if angle_sd_deg > 0 or tip_sd_px > 0 else None)

    miss_depth = miss_lateral = None
    tp = None
    if target_point_px is not None:
        tp = (float(target_point_px[0]), float(target_point_px[1]))
        if spacing_mm is not None:
            mv = miss_vector(needle, tp, spacing_mm)
            miss_lateral, miss_depth = float(mv[0]), float(mv[1])

    return Trajectory(intercept_px=(float(intercept[0]), float(intercept[1])),
                      distance_mm=distance_mm, distance_px=float(t_px), approach_deg=approach_deg,
                      tip_depth_mm=tip_depth_mm, cone_px=cone, target_point_px=tp,
                      miss_depth_mm=miss_depth, miss_lateral_mm=miss_lateral)


def _hit(tip, d_px, surface, reach_px: float) -> tuple[float, int] | None:
    """First crossing ahead of the tip, or one up to ``reach_px`` behind it when the needle is heading deeper.

    A tip that has gone just past the surface, by less than the tip's and the
    surface's own errors, has reached the target: the crossing behind it is
    the intercept. A needle heading up out of the surface has none behind.
    """
    if reach_px > 0:
        hit = ray_polyline_hit(tip, d_px, surface, min_t=-reach_px)
        if hit is None or hit[0] >= 0:   # nothing within reach behind: the first crossing ahead, if any
            return hit
        e = surface[hit[1] + 1] - surface[hit[1]]
        if e[0] * d_px[1] - e[1] * d_px[0] > 0:   # cross(segment, path) > 0: going deeper (y down)
            return hit
    return ray_polyline_hit(tip, d_px, surface)


def _cone(tip, d_metric, m, surface, half_angle_deg: float, half_width_px: float, length_px: float):
    """Two lines at ±half_angle (rotated in tissue space) from ±half_width beside the tip to the surface.

    A side that misses the surface is drawn as long as the main path. Scalar
    math on the two lines: numpy calls on 2-element arrays cost more than they do.
    """
    (dx, dy), (mx, my) = d_metric, m
    c, s = math.cos(math.radians(half_angle_deg)), math.sin(math.radians(half_angle_deg))
    dirs = np.empty((2, 2))
    starts = np.empty((2, 2))
    ux, uy = dx / mx, dy / my                          # the path in pixels
    n = math.hypot(ux, uy)
    nx, ny = -uy / n, ux / n                           # the side a positive rotation turns to
    for i, sign in enumerate((-1.0, 1.0)):
        rx, ry = (c * dx - sign * s * dy) / mx, (sign * s * dx + c * dy) / my   # rotated in mm, back to px
        k = math.hypot(rx, ry)
        dirs[i] = rx / k, ry / k
        starts[i] = tip[0] + sign * half_width_px * nx, tip[1] + sign * half_width_px * ny
    t, _ = ray_polyline_hits(starts, dirs, surface)
    ends = starts + np.where(np.isfinite(t), t, length_px)[:, None] * dirs
    return tuple(((float(a[0]), float(a[1])), (float(b[0]), float(b[1]))) for a, b in zip(starts, ends))


def tip_to_bone_mm(needle: NeedleDetection, bone_px, spacing_mm: Spacing, max_gap_px: float = 8.0) -> float:
    """Shortest distance in mm from the tip to the bone polyline (0 when the tip is below it).

    Gaps in the bone (no bone seen over more than ``max_gap_px``) are not bone.
    """
    bone = np.asarray(bone_px, dtype=float).reshape(-1, 2)
    if len(bone) == 0:
        return math.inf
    y_bone = polyline_y_at(bone, needle.tip_px[0], gap_px(bone, max_gap_px)) if len(bone) > 1 else None
    if y_bone is not None and needle.tip_px[1] >= y_bone:
        return 0.0
    # Distance to bone that was seen: not to a bridge across a notch where there is none.
    seen = break_at_gaps(bone, max_gap_px)
    return point_polyline_distance(to_mm(needle.tip_px, spacing_mm), to_mm(seen, spacing_mm))


class GuidanceStage:
    """Pipeline stage: trajectory and alerts from the tracked needle and smoothed target.

    Alerts (strings in ``result.alerts``), raised for a confirmed needle only
    (``NeedleTrack.confirmed``; any needle when tracking is off):

    - ``"near_bone"``: tip within ``near_bone_mm`` of the bone surface (needs spacing).
    - ``"off_target"``: a target point is set and the path passes farther than
      ``off_target_mm`` from it (``off_target_px`` when the spacing is unknown).
    - ``"needle_lost"``: no needle now, and the tracker had a confirmed one
      within ``lost_alert_s``; a track of a frame or two that goes away raises
      nothing, and a needle taken up by a new, not yet confirmed track (a
      redirect) neither starts nor ends the alert.
    - ``"steep_needle"``: the shaft is at least ``steep_deg`` from the
      horizontal (:data:`STEEP_NEEDLE_DEG`): its tip may lie deeper than drawn.
    """

    def __init__(self, name: str = "guidance", target_point_px=None, near_bone_mm: float = 2.0,
                 off_target_mm: float = 2.0, off_target_px: float = 20.0, cone_k: float = 2.0,
                 lost_alert_s: float = 5.0, steep_deg: float = STEEP_NEEDLE_DEG) -> None:
        self.name = name
        self.steep_deg = steep_deg
        self.near_bone_mm = near_bone_mm
        self.off_target_mm = off_target_mm
        self.off_target_px = off_target_px
        self.cone_k = cone_k
        self.lost_alert_s = lost_alert_s
        self._target_point_px = None
        self._last_needle_t_s: float | None = None
        self._on: frozenset[str] = frozenset()   # this stage's alerts on the previous frame
        self.set_target_point(target_point_px)

    @property
    def target_point_px(self):
        return self._target_point_px

    def set_target_point(self, xy) -> None:
        """Set (x, y) frame pixels as the user's target, or None to clear it."""
        self._target_point_px = None if xy is None else (float(xy[0]), float(xy[1]))

    def __call__(self, result: FrameResult) -> FrameResult:
        needle, target = result.needle, result.target
        spacing = result.frame.spacing_mm
        track = result.track
        skin = float(result.region.y_px) if result.region is not None else None
        traj = compute_trajectory(needle, target, spacing,
                                  angle_sd_deg=track.angle_sd_deg if track is not None else 0.0,
                                  target_point_px=self._target_point_px, skin_y_px=skin,
                                  cone_k=self.cone_k,
                                  tip_sd_px=track.tip_across_sd_px if track is not None else 0.0)
        alerts = list(result.alerts)
        t_s = result.frame.timestamp_s
        # Alerts are for a confirmed needle: one seen for a frame or two (maybe a false detection)
        # would flash NEAR BONE, and its going away is no loss. An unconfirmed needle may only
        # keep an alert that is already on (a redirect taken up by a new track, a flicker of
        # detection while lost): it never starts one, nor breaks one into two.
        confirmed = needle is not None and (track is None or track.confirmed)
        if confirmed:
            self._last_needle_t_s = t_s
        on = confirmed or needle is not None and bool(self._on)
        if on and spacing is not None and target is not None and len(target.bone_px):
            if tip_to_bone_mm(needle, target.bone_px, spacing) <= self.near_bone_mm:
                alerts.append(ALERT_NEAR_BONE)
        if on and self._target_point_px is not None:
            miss = float(np.hypot(*miss_vector(needle, self._target_point_px, spacing)))
            if miss > (self.off_target_mm if spacing is not None else self.off_target_px):
                alerts.append(ALERT_OFF_TARGET)
        if on and needle is not None:
            d = needle.direction * _metric(spacing)
            steep_deg = math.degrees(math.atan2(abs(d[1]), abs(d[0])))
            if steep_deg >= self.steep_deg or (ALERT_STEEP_NEEDLE in self._on and steep_deg >= self.steep_deg - 3.0):
                alerts.append(ALERT_STEEP_NEEDLE)
        recent = self._last_needle_t_s is not None and 0.0 <= t_s - self._last_needle_t_s <= self.lost_alert_s
        if track is not None and recent and (needle is None or not confirmed):
            alerts.append(ALERT_NEEDLE_LOST)
        if needle is not None and not confirmed:   # keep only what was on before
            alerts = [a for a in alerts if a in self._on or a in result.alerts]
        self._on = frozenset(alerts)
        return replace(result, trajectory=traj, alerts=tuple(alerts))


__all__ = ["compute_trajectory", "parse_target_point", "miss_vector", "tip_to_bone_mm", "GuidanceStage",
           "ALERT_NEAR_BONE", "ALERT_OFF_TARGET", "ALERT_NEEDLE_LOST", "ALERT_STEEP_NEEDLE", "STEEP_NEEDLE_DEG"]
