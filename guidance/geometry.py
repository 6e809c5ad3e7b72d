"""Small vectorized geometry on rays and polylines, in pixels or millimetres.

Points are (x, y) float arrays; polylines are (N, 2) arrays. Anisotropic pixel
spacing ``(sx_mm, sy_mm)`` turns pixel vectors into millimetre vectors by a
per-axis scale, so every length and angle that a user reads is computed after
that scale (a 45 degree line in pixels is not 45 degrees in tissue when
sx != sy).
"""

from __future__ import annotations

import math

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


def rotate(vec, angle_deg: float) -> np.ndarray:
    """Rotate 2-D vector(s) by ``angle_deg`` (positive turns +x toward +y)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    v = np.asarray(vec, dtype=float)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], axis=-1)


def ray_polyline_hit(origin, direction, poly, *, min_t: float = 0.0) -> tuple[float, int] | None:
    """First crossing of a ray with a polyline.

    Parameters
    ----------
    origin, direction : (2,) array-like
        Ray ``origin + t * direction`` (``direction`` need not be unit length;
        ``t`` is in units of ``|direction|``).
    poly : (N, 2) array
        Polyline vertices.
    min_t : float
        Crossings with ``t < min_t`` are ignored (0: only ahead of the origin).

    Returns
    -------
    (t, segment_index) of the nearest crossing ahead, or None when the ray
    misses (parallel to every segment, pointing away, or passing beside the ends).
    """
    poly = np.asarray(poly, dtype=float)
    if poly.ndim != 2 or len(poly) < 2:
        return None
    p = np.asarray(origin, dtype=float)
    d = np.asarray(direction, dtype=float)
    a = poly[:-1]
    e = poly[1:] - a                       # segment vectors
    w = a - p
    denom = d[0] * e[:, 1] - d[1] * e[:, 0]  # cross(d, e)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (w[:, 0] * e[:, 1] - w[:, 1] * e[:, 0]) / denom   # cross(w, e) / cross(d, e)
        s = (w[:, 0] * d[1] - w[:, 1] * d[0]) / denom         # cross(w, d) / cross(d, e)
    eps = 1e-9
    ok = (np.abs(denom) > 1e-12) & (t >= min_t) & (s >= -eps) & (s <= 1 + eps)
    if not ok.any():
        return None
    idx = np.flatnonzero(ok)
    best = idx[np.argmin(t[idx])]
    return float(t[best]), int(best)


def point_polyline_distance(point, poly) -> float:
    """Shortest distance from a point to a polyline (same units as the inputs)."""
    poly = np.asarray(poly, dtype=float)
    p = np.asarray(point, dtype=float)
    if len(poly) == 1:
        return float(np.hypot(*(poly[0] - p)))
    a = poly[:-1]
    e = poly[1:] - a
    ee = np.einsum("ij,ij->i", e, e)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.clip(np.einsum("ij,ij->i", p - a, e) / ee, 0.0, 1.0)
    s = np.where(ee > 0, s, 0.0)
    closest = a + s[:, None] * e
    return float(np.min(np.hypot(*(closest - p).T)))


def polyline_y_at(poly, x: float) -> float | None:
    """The polyline's y at column ``x`` (linear between vertices), None outside its x range."""
    poly = np.asarray(poly, dtype=float)
    if len(poly) == 0 or x < poly[0, 0] or x > poly[-1, 0]:
        return None
    return float(np.interp(x, poly[:, 0], poly[:, 1]))


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
        j = np.clip(np.searchsorted(xs, grid_x, side="right"), 1, len(xs) - 1)
        lo, hi = xs[j - 1], xs[j]
        gap = ((hi - lo) > max_gap_px) & (grid_x != lo) & (grid_x != hi)
        out[gap] = np.nan
    return out
