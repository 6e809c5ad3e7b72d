"""Per-frame time series pulled out of contract records, as NumPy arrays.

A session is a sequence of contract lines (``../shared/CONTRACT.md``, one dict
per frame, optionally with ``tracking`` and ``alerts``), as a recording shows
them live or ``guidance detect`` writes them. Everything the metrics, the
practice mode and the report need is gathered here once, in millimetres when
the pixel spacing is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..types import Spacing

#: tracking states in which the needle was really seen in that frame
SEEN_STATES = ("tracking", None)


@dataclass(frozen=True)
class SessionSeries:
    """Arrays over the N frames of a session.

    Attributes
    ----------
    t_s : (N,) float
        Frame times, seconds from the first frame.
    frame : (N,) int
        Frame numbers as recorded.
    tip_px : (N, 2) float
        Needle tip (x, y) in frame pixels; NaN where no needle is shown.
    tail_px : (N, 2) float
        Visible shaft end farthest from the tip; NaN where no needle.
    angle_deg : (N,) float
        Shaft direction tail->tip, ``atan2(dy, dx)`` in millimetres (pixels
        when the spacing is unknown); NaN where no needle.
    seen : (N,) bool
        The needle was detected in this frame (shown and not coasting).
    shown : (N,) bool
        A needle is shown (seen, or coasting on the tracker's prediction).
    target_dist_mm : (N,) float
        Tip to target distance (see :func:`guidance.training.metrics.tip_target_distance`);
        filled by the metrics, NaN here.
    surface_px, bone_px : (N, M, 2) float
        Target surface and bone surface polylines padded with NaN.
    target_point_px : (N, 2) float
        Instructor's target point when one was set, else NaN.
    spacing_mm : (sx, sy) or None
    """

    t_s: np.ndarray
    frame: np.ndarray
    tip_px: np.ndarray
    tail_px: np.ndarray
    angle_deg: np.ndarray
    seen: np.ndarray
    shown: np.ndarray
    surface_px: np.ndarray
    bone_px: np.ndarray
    target_point_px: np.ndarray
    spacing_mm: Spacing | None

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    @property
    def scale_mm(self) -> np.ndarray:
        """(sx, sy) millimetres per pixel; (1, 1) when unknown (lengths are then in pixels)."""
        return np.asarray(self.spacing_mm if self.spacing_mm is not None else (1.0, 1.0), dtype=float)


def _points(v: Any) -> np.ndarray:
    a = np.asarray(v if v else np.zeros((0, 2)), dtype=float)
    return a.reshape(-1, 2)


def _pad(polys: list[np.ndarray]) -> np.ndarray:
    m = max((len(p) for p in polys), default=0)
    out = np.full((len(polys), max(m, 1), 2), np.nan)
    for i, p in enumerate(polys):
        out[i, :len(p)] = p
    return out


def record_spacing(records: Sequence[dict], metadata: dict | None = None) -> Spacing | None:
    """Pixel spacing from the first record that carries one, else from the metadata."""
    for rec in records:
        sp = rec.get("spacing_mm")
        if sp:
            return (float(sp[0]), float(sp[1]))
    sp = (metadata or {}).get("spacing_mm")
    if sp:
        sp = sp if isinstance(sp, (list, tuple)) else (sp, sp)
        return (float(sp[0]), float(sp[1]))
    return None


def series_from_records(records: Sequence[dict], spacing_mm: Spacing | None = None,
                        metadata: dict | None = None) -> SessionSeries:
    """Gather the per-frame arrays of a session from its contract records.

    ``spacing_mm`` overrides the spacing found in the records or metadata.
    """
    n = len(records)
    spacing = spacing_mm or record_spacing(records, metadata)
    t = np.zeros(n)
    frame = np.zeros(n, dtype=int)
    tip = np.full((n, 2), np.nan)
    tail = np.full((n, 2), np.nan)
    seen = np.zeros(n, dtype=bool)
    tpt = np.full((n, 2), np.nan)
    surfaces, bones = [], []
    for i, rec in enumerate(records):  # parsing dicts: one pass, the rest is vectorized
        t[i] = float(rec.get("t_s", i))
        frame[i] = int(rec.get("frame", i))
        nd = rec.get("needle")
        if nd:
            tip[i] = nd["tip_px"]
            shaft = nd.get("shaft_px") or [nd["tip_px"], nd["tip_px"]]
            tail[i] = shaft[0]
            # truth lines mark a needle whose tip is out of the plane: its visible end is not the tip
            seen[i] = rec.get("tracking") in SEEN_STATES and nd.get("tip_visible", True) is not False
        tg = rec.get("target") or {}
        surfaces.append(_points(tg.get("surface_px")))
        bones.append(_points(tg.get("bone_px")))
        tr = rec.get("trajectory") or {}
        if tr.get("target_point_px"):
            tpt[i] = tr["target_point_px"]
    if n:
        t = t - t[0]
    scale = np.asarray(spacing if spacing is not None else (1.0, 1.0), dtype=float)
    d_mm = (tip - tail) * scale
    with np.errstate(invalid="ignore"):
        angle = np.degrees(np.arctan2(d_mm[:, 1], d_mm[:, 0]))
    return SessionSeries(t_s=t, frame=frame, tip_px=tip, tail_px=tail, angle_deg=angle,
                         seen=seen, shown=~np.isnan(tip[:, 0]), surface_px=_pad(surfaces),
                         bone_px=_pad(bones), target_point_px=tpt, spacing_mm=spacing)


def point_polyline_distance(points: np.ndarray, polys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each point to its own polyline, frame by frame.

    Parameters
    ----------
    points : (N, 2) float
        One point per frame (NaN allowed), in any unit.
    polys : (N, M, 2) float
        One polyline per frame in the same unit, padded with NaN.

    Returns
    -------
    dist : (N,) float
        Shortest distance to any segment; NaN where the point or polyline is missing.
    nearest : (N, 2) float
        The closest point on the polyline.
    """
    n = points.shape[0]
    if polys.shape[1] == 1:  # single vertices: point distance
        d = points - polys[:, 0]
        return np.hypot(d[:, 0], d[:, 1]), polys[:, 0].copy()
    a = polys[:, :-1]
    e = polys[:, 1:] - a
    w = points[:, None, :] - a
    ee = np.einsum("nmk,nmk->nm", e, e)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.clip(np.einsum("nmk,nmk->nm", w, e) / ee, 0.0, 1.0)
    u = np.where(ee > 0, u, 0.0)
    closest = a + u[..., None] * e
    dd = np.hypot(*(points[:, None, :] - closest).transpose(2, 0, 1))
    dist = np.full(n, np.nan)
    nearest = np.full((n, 2), np.nan)
    valid = ~np.all(np.isnan(dd), axis=1)
    if valid.any():
        j = np.nanargmin(np.where(np.isnan(dd[valid]), np.inf, dd[valid]), axis=1)
        rows = np.flatnonzero(valid)
        dist[rows] = dd[rows, j]
        nearest[rows] = closest[rows, j]
    return dist, nearest


def depth_below(points: np.ndarray, polys: np.ndarray) -> np.ndarray:
    """How far each point lies below (greater y than) its polyline at the same x.

    Same units as the inputs; positive below the surface, negative above, NaN
    where the polyline does not span the point's x.
    """
    x = polys[..., 0]
    y = polys[..., 1]
    px = points[:, 0:1]
    a_x, b_x = x[:, :-1], x[:, 1:]
    lo, hi = np.fmin(a_x, b_x), np.fmax(a_x, b_x)
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = (px >= lo) & (px <= hi)
        f = np.where(b_x != a_x, (px - a_x) / (b_x - a_x), 0.0)
        ys = y[:, :-1] + f * (y[:, 1:] - y[:, :-1])
    ys = np.where(inside, ys, np.nan)
    out = np.full(points.shape[0], np.nan)
    has = inside.any(axis=1)
    if has.any():
        out[has] = points[has, 1] - np.nanmin(ys[has], axis=1)
    return out


def ray_polyline_distance(origins: np.ndarray, directions: np.ndarray, polys: np.ndarray) -> np.ndarray:
    """Distance along each frame's ray to its first crossing with that frame's polyline.

    Parameters
    ----------
    origins, directions : (N, 2) float
        Ray starts and unit directions (same unit as ``polys``; NaN allowed).
    polys : (N, M, 2) float
        Polylines padded with NaN.

    Returns
    -------
    (N,) float: distance to the nearest crossing ahead, NaN where the ray misses.
    """
    if polys.shape[1] < 2:
        return np.full(origins.shape[0], np.nan)
    a = polys[:, :-1]
    e = polys[:, 1:] - a
    w = a - origins[:, None, :]
    d = directions[:, None, :]
    denom = d[..., 0] * e[..., 1] - d[..., 1] * e[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (w[..., 0] * e[..., 1] - w[..., 1] * e[..., 0]) / denom
        s = (w[..., 0] * d[..., 1] - w[..., 1] * d[..., 0]) / denom
        ok = (np.abs(denom) > 1e-12) & (t >= 0) & (s >= -1e-9) & (s <= 1 + 1e-9)
    t = np.where(ok, t, np.inf)
    best = t.min(axis=1)
    return np.where(np.isfinite(best), best, np.nan)


def event_time_s(event: dict, records: Sequence[dict]) -> float | None:
    """An event's time on the records' clock: its ``t_s``, else the time of its ``frame``.

    ``frame`` is a position in the session (a recording's event follows that frame).
    """
    if event.get("t_s") is not None:
        return float(event["t_s"])
    pos = event.get("frame")
    if pos is not None and records:
        pos = min(max(int(pos), 0), len(records) - 1)
        return float(records[pos].get("t_s", pos))
    return None


def event_kind(event: dict) -> str:
    return str(event.get("kind", event.get("type", ""))).lower()
