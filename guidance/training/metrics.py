"""Scores of a performed injection, from its recording alone (no external tracker).

Every metric is defined precisely in ``docs/metrics.md``; the thresholds are
the fields of :class:`MetricParams`. All arithmetic is NumPy over the frame
series of :mod:`guidance.training.series`; lengths are in millimetres when the
pixel spacing is known (else in pixels, and ``units`` says so).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.signal import savgol_filter

from ..types import Spacing
from .series import (SessionSeries, depth_below, event_kind, event_time_s, point_polyline_distance,
                     ray_polyline_distance, series_from_records)


@dataclass(frozen=True)
class MetricParams:
    """Thresholds of the metric definitions (see docs/metrics.md)."""

    reach_mm: float = 1.0
    """The tip is at the target within this distance of it (or past the target surface)."""
    bone_touch_mm: float = 0.5
    """The tip touched bone within this distance of the bone surface (or past it)."""
    withdraw_mm: float = 1.0
    """A withdrawal: insertion depth falls this far below its last peak."""
    readvance_mm: float = 1.0
    """A re-advance: insertion depth rises this far above the withdrawal's lowest point."""
    redirect_deg: float = 2.5
    """A re-advance counts as a redirection when the shaft angle changed by more than this."""
    sustain_s: float = 0.3
    """Window (s) over which the shaft angle is taken (median) before and after."""
    min_lost_s: float = 0.2
    """A gap in sight of the tip shorter than this is not a tip-lost episode."""


@dataclass(frozen=True)
class Redirection:
    """One withdrawal of the needle and, if it happened, its re-advance."""

    peak_s: float
    trough_s: float
    readvance_s: float | None
    withdrawn_mm: float
    angle_change_deg: float | None
    redirected: bool


@dataclass
class SessionMetrics:
    """The scores of one session (JSON-ready through :meth:`to_dict`)."""

    units: str
    frames: int
    duration_s: float
    first_sight_s: float | None
    time_to_target_s: float | None
    reached_target: bool
    needle_visible_fraction: float | None
    tip_lost_episodes: int
    tip_lost_total_s: float
    withdrawals: int
    redirections: int
    path_length_mm: float | None
    smoothness_ldlj: float | None
    final_tip_to_target_mm: float | None
    closest_tip_to_target_mm: float | None
    closest_approach_s: float | None
    tip_to_target_at_injection_mm: float | None
    min_tip_to_bone_mm: float | None
    touched_bone: bool
    first_pass_success: bool
    redirection_details: list[Redirection] = field(default_factory=list)
    params: MetricParams = field(default_factory=MetricParams)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = round(v, 3) if math.isfinite(v) else None
        return d


@dataclass
class SessionAnalysis:
    """Metrics plus the per-frame arrays behind them (for plots and key frames)."""

    series: SessionSeries
    metrics: SessionMetrics
    target_dist_mm: np.ndarray
    bone_dist_mm: np.ndarray
    depth_mm: np.ndarray
    """Insertion depth (cumulative tip travel along the shaft), NaN where unseen."""
    key_frames: dict[str, int]
    """Row index of 'first_sight', 'closest_approach', 'injection' (when found)."""


def _ffill_polys(polys: np.ndarray) -> np.ndarray:
    """Carry the last seen polyline into frames where none was detected (the anatomy stays put)."""
    have = ~np.all(np.isnan(polys[..., 0]), axis=1)
    idx = np.where(have, np.arange(len(polys)), -1)
    idx = np.maximum.accumulate(idx) if len(idx) else idx
    out = polys[np.maximum(idx, 0)].copy()
    out[idx < 0] = np.nan
    return out


def tip_target_distance(s: SessionSeries) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame tip-to-target and tip-to-bone distances (mm, or px without spacing).

    Target: the instructor's target point when set in that frame (straight
    distance). Else the target surface (cartilage top, or bone), carried
    forward from the last frame it was detected: the distance from the tip
    along the shaft's line to where that line meets the surface (what the
    guidance shows as the distance to go); the straight distance to the
    nearest surface point when the line does not meet it; 0 once the tip is at
    or past the surface. Bone: straight distance to the nearest bone point, 0
    at or past it. NaN where the needle was not seen.
    """
    k = s.scale_mm
    tip = np.where(s.seen[:, None], s.tip_px, np.nan) * k
    shaft = (s.tip_px - s.tail_px) * k
    with np.errstate(invalid="ignore", divide="ignore"):
        u = shaft / np.hypot(shaft[:, 0], shaft[:, 1])[:, None]
    surf = _ffill_polys(s.surface_px) * k
    bone = _ffill_polys(s.bone_px) * k
    d_near, _ = point_polyline_distance(tip, surf)
    d_line = ray_polyline_distance(tip, u, surf)
    d_surf = np.where(np.isnan(d_line), d_near, d_line)
    d_surf = np.where(depth_below(tip, surf) > 0, 0.0, d_surf)
    d_point = np.hypot(*((tip - s.target_point_px * k).T))
    d_target = np.where(np.isnan(s.target_point_px[:, 0]), d_surf, d_point)
    d_bone, _ = point_polyline_distance(tip, bone)
    d_bone = np.where(depth_below(tip, bone) > 0, 0.0, d_bone)
    return d_target, d_bone


def insertion_depth(s: SessionSeries) -> np.ndarray:
    """Cumulative tip travel along the shaft (mm), over the frames where the needle was seen.

    Each step is the tip displacement projected on the mean shaft direction of
    its two frames: advancing adds, withdrawing subtracts. NaN where unseen.
    """
    out = np.full(len(s), np.nan)
    rows = np.flatnonzero(s.seen)
    if rows.size == 0:
        return out
    k = s.scale_mm
    tip = s.tip_px[rows] * k
    shaft = (s.tip_px[rows] - s.tail_px[rows]) * k
    norm = np.hypot(shaft[:, 0], shaft[:, 1])[:, None]
    u = np.divide(shaft, norm, out=np.zeros_like(shaft), where=norm > 0)
    u_mid = u[1:] + u[:-1]
    u_mid /= np.maximum(np.hypot(u_mid[:, 0], u_mid[:, 1]), 1e-12)[:, None]
    step = np.einsum("ij,ij->i", np.diff(tip, axis=0), u_mid)
    out[rows] = np.concatenate([[0.0], np.cumsum(step)])
    return out


def _zigzag(depth: np.ndarray, down: float, up: float) -> list[tuple[int, int, int | None]]:
    """(peak, trough, re-advance) indices of each withdrawal of ``depth``.

    A withdrawal starts once depth falls ``down`` below its running peak; its
    trough is the lowest point before depth rises ``up`` above it again (the
    re-advance index; None when it never does). Loops once per withdrawal.
    """
    out: list[tuple[int, int, int | None]] = []
    i, n = 0, len(depth)
    while i < n:
        seg = depth[i:]
        hit = np.flatnonzero(np.maximum.accumulate(seg) - seg >= down)
        if hit.size == 0:
            break
        j = i + int(hit[0])
        peak = i + int(np.argmax(depth[i:j + 1]))
        seg = depth[j:]
        hit = np.flatnonzero(seg - np.minimum.accumulate(seg) >= up)
        if hit.size == 0:
            out.append((peak, j + int(np.argmin(seg)), None))
            break
        k = j + int(hit[0])
        trough = j + int(np.argmin(depth[j:k + 1]))
        out.append((peak, trough, k))
        i = trough
    return out


def _window_angle(t: np.ndarray, ang: np.ndarray, t0: float, t1: float) -> float | None:
    m = (t >= t0) & (t <= t1)
    if not m.any():
        return None
    a = np.radians(ang[m])  # circular median-ish: median of angles unwrapped around their mean
    ref = math.atan2(np.sin(a).mean(), np.cos(a).mean())
    return math.degrees(ref + float(np.median((a - ref + np.pi) % (2 * np.pi) - np.pi)))


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def resample_smooth(t_s: np.ndarray, pos_mm: np.ndarray, window_s: float = 0.25
                    ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Resample a path on a uniform time grid (linear across gaps) for smoothing.

    Returns ``(grid_s, pos_mm, window)``: the grid, the resampled (M, 2)
    positions and the Savitzky-Golay window (odd, in samples, about
    ``window_s``); None when there are too few samples.
    """
    if len(t_s) < 2 or t_s[-1] <= t_s[0]:
        return None
    dt = float(np.median(np.diff(t_s)))
    if dt <= 0:
        return None
    grid = np.arange(t_s[0], t_s[-1] + dt / 2, dt)
    p = np.stack([np.interp(grid, t_s, pos_mm[:, 0]), np.interp(grid, t_s, pos_mm[:, 1])], axis=1)
    win = max(5, int(round(window_s / dt)) | 1)
    if len(grid) < win:
        return None
    return grid, p, win


def path_length(t_s: np.ndarray, pos_mm: np.ndarray) -> float:
    """Length of the tip path after a Savitzky-Golay smoothing (order 3, ~0.25 s).

    Detection jitter would otherwise add its own length every frame; a gap in
    sight of the tip counts as the straight line across it.
    """
    rs = resample_smooth(t_s, pos_mm)
    if rs is None:  # too short to smooth: raw polyline
        return float(np.sum(np.hypot(*np.diff(pos_mm, axis=0).T)))
    _, p, win = rs
    p = savgol_filter(p, win, 3, axis=0)
    return float(np.sum(np.hypot(*np.diff(p, axis=0).T)))


def log_dimensionless_jerk(t_s: np.ndarray, pos_mm: np.ndarray) -> float | None:
    """LDLJ of a 2-D movement (Balasubramanian et al. 2015), speed-normalised.

    ``-ln( T**3 / v_peak**2 * integral |jerk|**2 dt )`` on a uniform resampling
    of the path; velocity and jerk from Savitzky-Golay fits (order 4) over
    about 0.25 s. Closer to 0 is smoother; unit-free. None with too few samples
    or no motion.
    """
    rs = resample_smooth(t_s, pos_mm)
    if rs is None:
        return None
    grid, p, win = rs
    dt = float(grid[1] - grid[0])
    vel = savgol_filter(p, win, 4, deriv=1, delta=dt, axis=0)
    jerk = savgol_filter(p, win, 4, deriv=3, delta=dt, axis=0)
    v_peak = float(np.max(np.hypot(vel[:, 0], vel[:, 1])))
    integral = float(np.sum(jerk[:, 0] ** 2 + jerk[:, 1] ** 2) * dt)
    if v_peak <= 0 or integral <= 0:
        return None
    T = float(grid[-1] - grid[0])
    return -math.log(T ** 3 / v_peak ** 2 * integral)


def _runs(mask: np.ndarray) -> np.ndarray:
    """(start, stop) index pairs of the runs of True in a boolean array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(d == 1), np.flatnonzero(d == -1)], axis=1)


def _event_time(events: Sequence[dict], kinds: tuple[str, ...], records: Sequence[dict]) -> float | None:
    for ev in events or ():
        if event_kind(ev) in kinds:
            t = event_time_s(ev, records)
            if t is not None:
                return t
    return None


def analyse(records: Sequence[dict], events: Sequence[dict] = (), *, spacing_mm: Spacing | None = None,
            metadata: dict | None = None, params: MetricParams = MetricParams()) -> SessionAnalysis:
    """Compute every session metric from contract records (and recorded events).

    Parameters
    ----------
    records : sequence of dict
        Contract lines in frame order (``tracking`` and ``trajectory.target_point_px``
        are used when present).
    events : sequence of dict
        Recorded events with ``kind`` and ``t_s`` (times on the records' clock);
        an ``injection`` event marks the injection.
    spacing_mm : (sx, sy), optional
        Overrides the spacing in the records or metadata.
    """
    s = series_from_records(records, spacing_mm, metadata)
    n = len(s)
    t = s.t_s
    t0_abs = float(records[0].get("t_s", 0.0)) if n else 0.0
    d_target, d_bone = tip_target_distance(s)
    depth = insertion_depth(s)
    seen_rows = np.flatnonzero(s.seen)
    units = "mm" if s.spacing_mm is not None else "px"
    key: dict[str, int] = {}

    first = int(seen_rows[0]) if seen_rows.size else None
    last = int(seen_rows[-1]) if seen_rows.size else None
    visible_fraction = None
    lost_eps, lost_total = 0, 0.0
    if first is not None:
        key["first_sight"] = first
        win = s.seen[first:last + 1]
        visible_fraction = float(win.mean())
        gaps = _runs(~win)
        if gaps.size:
            tw = t[first:last + 1]
            dur = tw[gaps[:, 1]] - tw[gaps[:, 0]]  # first unseen frame to the next sighting
            long = dur >= params.min_lost_s - 1e-9
            lost_eps, lost_total = int(long.sum()), float(dur[long].sum())

    reached = np.nan_to_num(d_target, nan=np.inf) <= params.reach_mm
    reach_row = int(np.argmax(reached)) if reached.any() else None

    details: list[Redirection] = []
    if seen_rows.size:
        dz = depth[seen_rows]
        ts, ang = t[seen_rows], s.angle_deg[seen_rows]
        for pk, tr, ra in _zigzag(dz, params.withdraw_mm, params.readvance_mm):
            change = None
            if ra is not None:
                before = _window_angle(ts, ang, ts[pk] - params.sustain_s, ts[pk])
                after = _window_angle(ts, ang, ts[ra], ts[ra] + params.sustain_s)
                if before is not None and after is not None:
                    change = _angle_diff(after, before)
            details.append(Redirection(
                peak_s=float(ts[pk]), trough_s=float(ts[tr]),
                readvance_s=None if ra is None else float(ts[ra]),
                withdrawn_mm=float(dz[pk] - dz[tr]), angle_change_deg=change,
                redirected=change is not None and change > params.redirect_deg))

    path = None
    ldlj = None
    if seen_rows.size >= 2:
        pos = s.tip_px[seen_rows] * s.scale_mm
        path = path_length(t[seen_rows], pos)
        ldlj = log_dimensionless_jerk(t[seen_rows], pos)

    final = float(d_target[last]) if last is not None and np.isfinite(d_target[last]) else None
    closest = closest_t = None
    if np.isfinite(d_target).any():
        ci = int(np.nanargmin(d_target))
        closest, closest_t = float(d_target[ci]), float(t[ci])
        key["closest_approach"] = ci

    at_injection = None
    inj_t = _event_time(events, ("injection", "inject"), records)
    if inj_t is not None and seen_rows.size:
        rel = inj_t - t0_abs
        before = seen_rows[t[seen_rows] <= rel + 1e-9]
        row = int(before[-1]) if before.size else int(seen_rows[0])
        key["injection"] = row
        at_injection = float(d_target[row]) if np.isfinite(d_target[row]) else None

    min_bone = float(np.nanmin(d_bone)) if np.isfinite(d_bone).any() else None
    first_withdraw_s = details[0].peak_s if details else math.inf
    metrics = SessionMetrics(
        units=units, frames=n, duration_s=float(t[-1]) if n else 0.0,
        first_sight_s=None if first is None else float(t[first]),
        time_to_target_s=None if reach_row is None or first is None else float(t[reach_row] - t[first]),
        reached_target=reach_row is not None,
        needle_visible_fraction=visible_fraction,
        tip_lost_episodes=lost_eps, tip_lost_total_s=lost_total,
        withdrawals=len(details), redirections=sum(r.redirected for r in details),
        path_length_mm=path, smoothness_ldlj=ldlj,
        final_tip_to_target_mm=final, closest_tip_to_target_mm=closest, closest_approach_s=closest_t,
        tip_to_target_at_injection_mm=at_injection,
        min_tip_to_bone_mm=min_bone,
        touched_bone=min_bone is not None and min_bone <= params.bone_touch_mm,
        first_pass_success=reach_row is not None and float(t[reach_row]) < first_withdraw_s,
        redirection_details=details, params=params)
    return SessionAnalysis(series=s, metrics=metrics, target_dist_mm=d_target, bone_dist_mm=d_bone,
                           depth_mm=depth, key_frames=key)


def session_metrics(records: Sequence[dict], events: Sequence[dict] = (), **kw) -> SessionMetrics:
    """Shortcut: only the metrics of :func:`analyse`."""
    return analyse(records, events, **kw).metrics


def overall_score(m: SessionMetrics) -> float:
    """One 0-100 number for the progress chart (weights in docs/metrics.md)."""
    score = 100.0
    if not m.reached_target:
        score -= 40.0
    score -= 10.0 * m.redirections
    score -= 5.0 * m.tip_lost_episodes
    if m.touched_bone:
        score -= 20.0
    if m.needle_visible_fraction is not None:
        score -= 20.0 * (1.0 - m.needle_visible_fraction)
    return float(max(0.0, min(100.0, score)))
