"""Small vectorized geometry on rays and polylines, in pixels or millimetres.

Points are (x, y) float arrays; polylines are (N, 2) arrays. Anisotropic pixel
spacing ``(sx_mm, sy_mm)`` turns pixel vectors into millimetre vectors by a
per-axis scale, so every length and angle that a user reads is computed after
that scale (a 45 degree line in pixels is not 45 degrees in tissue when
sx != sy).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .types import Spacing


def to_mm(vec_px, spacing_mm: Spacing) -> np.ndarray:
    """Scale pixel vector(s) ``(..., 2)`` to millimetres."""
    return np.asarray(vec_px, dtype=float) * np.asarray(spacing_mm, dtype=float)


def to_px(vec_mm, spacing_mm: Spacing) -> np.ndarray:
    """Scale millimetre vector(s) ``(..., 2)`` back to pixels."""
    return np.asarray(vec_mm, dtype=float) / np.asarray(spacing_mm, dtype=float)


def length_mm(vec_px, spacing_mm: Spacing | None) -> float | None:
    """Euclidean length in mm of a pixel vector, or None when spacing is unknown."""
    if spacing_mm is None:
        return None
    return float(np.hypot(*to_mm(vec_px, spacing_mm)))


def rotate(vec, angle_deg) -> np.ndarray:
    """Rotate 2-D vector(s) ``(..., 2)`` by ``angle_deg`` (scalar or broadcastable; +x turns toward +y)."""
    a = np.radians(np.asarray(angle_deg, dtype=float))
    c, s = np.cos(a), np.sin(a)
    v = np.asarray(vec, dtype=float)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], axis=-1)


def ray_polyline_hits(origin, directions, poly, *, min_t: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """First crossing of each of several rays from one origin with a polyline.

    Parameters
    ----------
    origin : (2,) or (K, 2) array-like
        Start of the rays: one for all, or one per ray.
    directions : (K, 2) array-like
        Ray directions (``t`` is in units of each direction's length).
    poly : (N, 2) array
        Polyline vertices.
    min_t : float
        Crossings with ``t < min_t`` are ignored (0: only ahead of the origin).

    Returns
    -------
    t : (K,) float array, NaN where the ray misses (parallel to every segment,
        pointing away, or passing beside the ends).
    segment : (K,) int array, index of the segment crossed, -1 on a miss.
    """
    poly = np.asarray(poly, dtype=float)
    dirs = np.atleast_2d(np.asarray(directions, dtype=float))
    k = len(dirs)
    if poly.ndim != 2 or len(poly) < 2:
        return np.full(k, np.nan), np.full(k, -1)
    p = np.atleast_2d(np.asarray(origin, dtype=float))  # (1 or K, 2)
    a = poly[:-1]
    e = poly[1:] - a                                     # (N-1, 2) segment vectors
    w = a[None] - p[:, None]                             # (1 or K, N-1, 2)
    dx, dy = dirs[:, :1], dirs[:, 1:]                    # (K, 1)
    denom = dx * e[:, 1] - dy * e[:, 0]                  # cross(d, e): (K, N-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (w[..., 0] * e[:, 1] - w[..., 1] * e[:, 0]) / denom  # cross(w, e) / cross(d, e)
        s = (w[..., 0] * dy - w[..., 1] * dx) / denom             # cross(w, d) / cross(d, e)
    eps = 1e-9
    ok = (np.abs(denom) > 1e-12) & (t >= min_t) & (s >= -eps) & (s <= 1 + eps)
    t = np.where(ok, t, np.inf)
    seg = np.argmin(t, axis=1)
    best = t[np.arange(k), seg]
    hit = np.isfinite(best)
    return np.where(hit, best, np.nan), np.where(hit, seg, -1)


def ray_polyline_hit(origin, direction, poly, *, min_t: float = 0.0) -> tuple[float, int] | None:
    """First crossing of one ray with a polyline: (t, segment_index), or None on a miss.

    See :func:`ray_polyline_hits`.
    """
    t, seg = ray_polyline_hits(origin, direction, poly, min_t=min_t)
    return None if seg[0] < 0 else (float(t[0]), int(seg[0]))


def point_polyline_distance(point, poly) -> float:
    """Shortest distance from a point to a polyline (same units as the inputs).

    Segments touching a NaN row (a gap, see :func:`break_at_gaps`) are skipped;
    a single finite vertex between gaps still counts.
    """
    poly = np.asarray(poly, dtype=float)
    p = np.asarray(point, dtype=float)
    if len(poly) == 1:
        return float(np.hypot(*(poly[0] - p)))
    broken = bool(np.isnan(poly[:, 0]).any())
    a = poly[:-1]
    e = poly[1:] - a
    ee = np.einsum("ij,ij->i", e, e)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.minimum(np.maximum(np.einsum("ij,ij->i", p - a, e) / ee, 0.0), 1.0)
    s = np.where(ee > 0, s, 0.0)
    closest = a + s[:, None] * e
    d = np.hypot(*(closest - p).T)
    if not broken:
        return float(np.min(d))
    # Segments touching a gap are NaN; a lone vertex between two gaps still counts.
    vertex_d = np.hypot(*(poly - p).T)
    return float(min(np.nanmin(vertex_d, initial=math.inf), np.nanmin(d, initial=math.inf)))


def polyline_y_at(poly, x: float, max_gap_px: float = math.inf) -> float | None:
    """The polyline's y at column ``x`` (linear between vertices).

    None outside its x range, and inside a step wider than ``max_gap_px`` in x
    (nothing was seen there).
    """
    poly = np.asarray(poly, dtype=float)
    if len(poly) == 0 or x < poly[0, 0] or x > poly[-1, 0]:
        return None
    if len(poly) == 1:
        return float(poly[0, 1])
    j = min(max(int(np.searchsorted(poly[:, 0], x, side="right")), 1), len(poly) - 1)
    (x0, y0), (x1, y1) = poly[j - 1], poly[j]
    if x == x0:
        return float(y0)
    if x1 - x0 > max_gap_px:
        return None if x != x1 else float(y1)
    return float(y0 + (x - x0) * (y1 - y0) / (x1 - x0)) if x1 > x0 else float(y1)


def gap_px(poly, max_gap_px: float = 8.0) -> float:
    """Widest step in x that is still one seen surface: ``max_gap_px``, or 3 median steps when coarser.

    A surface sampled every 5 px is not all gaps; one with a 40 px hole is.
    """
    return _gap_limit(np.diff(np.asarray(poly, dtype=float)[:, 0]), max_gap_px)


def _gap_limit(steps: np.ndarray, max_gap_px: float) -> float:
    if not len(steps) or steps.max() <= max_gap_px:
        return float(max_gap_px)   # nothing wider: no need for the median
    return max(float(max_gap_px), 3.0 * float(np.median(steps)))


def _gap_cuts(xs: np.ndarray, max_gap_px: float) -> np.ndarray:
    """Indices where a gap starts (see :func:`gap_px`)."""
    steps = np.diff(xs)
    return np.flatnonzero(steps > _gap_limit(steps, max_gap_px)) + 1


def break_at_gaps(poly, max_gap_px: float = 8.0) -> np.ndarray:
    """The x-ordered polyline with a NaN row inserted wherever it jumps a gap in x.

    Ray and distance functions here skip segments touching a NaN row, so a
    surface is never invented across a stretch where nothing was seen. See
    :func:`gap_px` for what counts as a gap.
    """
    poly = np.asarray(poly, dtype=float).reshape(-1, 2)
    cut = _gap_cuts(poly[:, 0], max_gap_px)
    return np.insert(poly, cut, np.nan, axis=0) if len(cut) else poly


def fill_gaps(surface, fill, max_gap_px: float = 8.0) -> np.ndarray:
    """``surface`` with the points of ``fill`` that lie inside its gaps, gaps left where both are unseen.

    Both are x-ordered (N, 2) polylines: e.g. the cartilage top, and the bone
    surface where no cartilage is seen. Returns a polyline broken with NaN
    rows (:func:`break_at_gaps`).
    """
    surface = np.asarray(surface, dtype=float).reshape(-1, 2)
    fill = np.asarray(fill, dtype=float).reshape(-1, 2)
    if len(surface) < 2 or len(fill) == 0:
        return break_at_gaps(surface, max_gap_px)
    limit = gap_px(surface, max_gap_px)
    xs = surface[:, 0]
    if not (np.diff(xs) > limit).any():
        return surface   # the usual case: seen all along
    j = np.searchsorted(xs, fill[:, 0], side="right")
    inner = (j > 0) & (j < len(xs))
    jj = np.clip(j, 1, len(xs) - 1)
    in_gap = inner & (xs[jj] - xs[jj - 1] > limit) & (fill[:, 0] > xs[jj - 1]) & (fill[:, 0] < xs[jj])
    merged = np.concatenate([surface, fill[in_gap]])
    merged = merged[np.argsort(merged[:, 0], kind="stable")]
    cut = np.flatnonzero(np.diff(merged[:, 0]) > max(limit, gap_px(fill, max_gap_px))) + 1
    return np.insert(merged, cut, np.nan, axis=0) if len(cut) else merged


def resample_on_grid(poly, grid_x: np.ndarray, max_gap_px: float) -> np.ndarray:
    """y of an x-ordered polyline at each ``grid_x``; NaN outside it and across gaps.

    A gap is a step between consecutive vertices wider than ``max_gap_px`` in x:
    the surface was not seen there, so nothing is interpolated across it.
    """
    poly = np.asarray(poly, dtype=float)
    out = np.full(grid_x.shape, np.nan)
    if len(poly) == 0:
        return out
    xs, ys = poly[:, 0], poly[:, 1]
    if np.any(xs[1:] < xs[:-1]):
        order = np.argsort(xs, kind="stable")
        xs, ys = xs[order], ys[order]
    inside = (grid_x >= xs[0]) & (grid_x <= xs[-1])
    out[inside] = np.interp(grid_x[inside], xs, ys)
    if len(xs) > 1:
        j = np.minimum(np.maximum(np.searchsorted(xs, grid_x, side="right"), 1), len(xs) - 1)
        lo, hi = xs[j - 1], xs[j]
        gap = ((hi - lo) > max_gap_px) & (grid_x != lo) & (grid_x != hi)
        out[gap] = np.nan
    return out


def sample_along(image: np.ndarray, p0: np.ndarray, d: np.ndarray, t: np.ndarray, s: np.ndarray, *,
                 border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """Bilinear samples of ``image`` (px) on the grid ``p0 + t*d + s*n``.

    ``d`` is a unit direction, ``n`` its normal (rotated +90 degrees). Returns a
    (len(t), len(s)) array of the image's dtype; outside the image reads 0
    (``border=cv2.BORDER_CONSTANT``) or the nearest edge pixel (``cv2.BORDER_REPLICATE``).
    """
    n = np.array([-d[1], d[0]])
    T, S = np.asarray(t, float)[:, None], np.asarray(s, float)[None, :]  # broadcast: no grid copies
    mx = (p0[0] + T * d[0] + S * n[0]).astype(np.float32)
    my = (p0[1] + T * d[1] + S * n[1]).astype(np.float32)
    return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=border, borderValue=0)
