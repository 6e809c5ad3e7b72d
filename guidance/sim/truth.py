"""Ground truth of one simulated frame as a contract line (``../shared/CONTRACT.md``).

Everything is computed from the scene geometry, never from pixels: the needle
from its pose, the surfaces from the anatomy, the trajectory by intersecting
the needle's line with the cartilage-top polyline exactly as
``guidance.trajectory.compute_trajectory`` defines it (intercept ahead of the
tip, distance from the tip in mm, approach angle between the path and the
local surface tangent, 0-90 degrees).
"""

from __future__ import annotations

import math

import numpy as np

from ..contract import needle_to_dict
from ..geometry import ray_polyline_hit
from ..types import NeedleDetection


def polyline_from_columns(y_px: np.ndarray, step_px: int) -> np.ndarray:
    """(N, 2) points (x, y) of a per-column curve every ``step_px`` columns, finite values only.

    The first and last column of every finite run are kept, so the polyline
    spans the curve and a gap (no bone there) stays a gap wider than the step.
    """
    ok = np.isfinite(y_px)
    xs = np.arange(len(y_px))
    prev_ok = np.concatenate([[False], ok[:-1]])
    next_ok = np.concatenate([ok[1:], [False]])
    keep = ok & ((xs % step_px == 0) | ~prev_ok | ~next_ok)
    return np.column_stack([xs[keep], y_px[keep]]).astype(float)


def _pieces(poly: np.ndarray, step_px: int) -> list[np.ndarray]:
    """Split an x-ordered polyline where consecutive points are more than a step apart (no bone there)."""
    if len(poly) < 2:
        return []
    breaks = np.flatnonzero(np.diff(poly[:, 0]) > step_px + 0.5) + 1
    return [p for p in np.split(poly, breaks) if len(p) > 1]


def trajectory_truth(tip_px, tail_px, surface_px: np.ndarray, spacing_mm: tuple[float, float],
                     step_px: int = 1) -> dict | None:
    """Intercept of the needle's line beyond the tip with the surface polyline as written in the line.

    Computed on the very polyline the truth line carries, so that anyone
    recomputing it from ``surface_px`` gets the same numbers.
    """
    tip = np.asarray(tip_px, float)
    d = tip - np.asarray(tail_px, float)
    n = math.hypot(*d)
    if n == 0:
        return None
    d /= n
    best = None
    for piece in _pieces(np.asarray(surface_px, float), step_px):
        hit = ray_polyline_hit(tip, d, piece)
        if hit is not None and (best is None or hit[0] < best[0]):
            best = (hit[0], hit[1], piece)
    if best is None:
        return None
    t_px, seg, piece = best
    inter = tip + t_px * d
    m = np.asarray(spacing_mm, float)
    tangent = (piece[seg + 1] - piece[seg]) * m
    dm = d * m
    cos_a = abs(float(np.dot(tangent, dm))) / (math.hypot(*tangent) * math.hypot(*dm))
    approach = math.degrees(math.acos(min(1.0, cos_a)))
    dist_mm = float(math.hypot(*((inter - tip) * m)))
    return {"intercept_px": [round(float(inter[0]), 2), round(float(inter[1]), 2)],
            "distance_mm": round(dist_mm, 2), "approach_deg": round(approach, 2),
            "distance_px": round(float(t_px), 2), "tip_depth_mm": round(float(tip[1] * m[1]), 2)}


def frame_truth(index: int, t_s: float, spacing_mm: tuple[float, float], *,
                needle: tuple | None, bone_y_px: np.ndarray, cartilage_top_y_px: np.ndarray,
                cartilage_thickness_mm: np.ndarray, step_px: int = 2, extra: dict | None = None) -> dict:
    """One truth line.

    Parameters
    ----------
    needle : (tail_px, tip_px, tip_visible) in frame pixels, or None when out of plane.
    bone_y_px, cartilage_top_y_px, cartilage_thickness_mm : per frame column, NaN where absent.
    """
    rec: dict = {"frame": int(index), "t_s": round(float(t_s), 6), "needle": None, "target": None,
                 "trajectory": None}
    if needle is not None:
        tail, tip, tip_visible = needle
        nd = needle_to_dict(NeedleDetection((float(tip[0]), float(tip[1])),
                                            (float(tail[0]), float(tail[1])), 1.0))
        nd["tip_visible"] = bool(tip_visible)
        rec["needle"] = nd
    has_cart = np.isfinite(cartilage_top_y_px).any()
    if np.isfinite(bone_y_px).any():
        surface = cartilage_top_y_px if has_cart else bone_y_px
        thick = cartilage_thickness_mm[np.isfinite(cartilage_thickness_mm)]
        surface_poly = np.round(polyline_from_columns(surface, step_px), 2)
        rec["target"] = {
            "kind": "cartilage" if has_cart else "bone",
            "surface_px": surface_poly.tolist(),
            "bone_px": np.round(polyline_from_columns(bone_y_px, step_px), 2).tolist(),
            "cartilage_thickness_mm": round(float(np.median(thick)), 2) if len(thick) else None,
        }
        if needle is not None:
            rec["trajectory"] = trajectory_truth(needle[1], needle[0], surface_poly, spacing_mm, step_px)
    rec["spacing_mm"] = [float(spacing_mm[0]), float(spacing_mm[1])]
    if extra:
        rec["sim"] = extra
    return rec
