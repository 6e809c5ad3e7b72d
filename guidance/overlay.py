"""Guidance drawn over the frame with OpenCV, for exports and headless runs.

The UI draws the same geometry with its own items and reuses the colours
here. Colours come from the Okabe-Ito palette (distinguishable with the common
colour-vision deficiencies) and every mark is drawn over a black halo so it
reads on bright and dark ultrasound alike.

Stale guidance is never shown: when ``now_monotonic_s`` is given and the
result is older than ``max_age_ms`` (age from ``result.received_s``; a result
without one counts as stale), only the frame is drawn, with a line saying why
the guidance is hidden.
"""

from __future__ import annotations

import cv2
import numpy as np

from .geometry import break_at_gaps
from .types import FrameResult

# Okabe-Ito palette, RGB (for Qt) and BGR (for OpenCV).
OKABE_ITO_RGB: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0), "orange": (230, 159, 0), "sky_blue": (86, 180, 233),
    "bluish_green": (0, 158, 115), "yellow": (240, 228, 66), "blue": (0, 114, 178),
    "vermillion": (213, 94, 0), "reddish_purple": (204, 121, 167), "white": (255, 255, 255),
}
OKABE_ITO_BGR: dict[str, tuple[int, int, int]] = {k: (b, g, r) for k, (r, g, b) in OKABE_ITO_RGB.items()}

# What each guidance element is drawn in (palette names; the UI maps them the same way).
ROLE_COLOURS: dict[str, str] = {
    "needle": "sky_blue", "tip": "yellow", "path": "orange", "cone": "orange",
    "surface": "bluish_green", "bone": "reddish_purple", "intercept": "orange",
    "target_point": "white", "text": "white", "alert": "vermillion", "stale": "yellow",
    "region": "blue", "halo": "black",
}
NEEDLE_BGR = OKABE_ITO_BGR[ROLE_COLOURS["needle"]]
TIP_BGR = OKABE_ITO_BGR[ROLE_COLOURS["tip"]]
PATH_BGR = OKABE_ITO_BGR[ROLE_COLOURS["path"]]
SURFACE_BGR = OKABE_ITO_BGR[ROLE_COLOURS["surface"]]
BONE_BGR = OKABE_ITO_BGR[ROLE_COLOURS["bone"]]
ALERT_BGR = OKABE_ITO_BGR[ROLE_COLOURS["alert"]]
TEXT_BGR = OKABE_ITO_BGR[ROLE_COLOURS["text"]]
HALO_BGR = OKABE_ITO_BGR["black"]

ALL_LAYERS = frozenset({"region", "needle", "path", "cone", "target", "bone", "intercept",
                        "target_point", "text", "alerts"})

ALERT_TEXT = {"near_bone": "NEAR BONE", "off_target": "OFF TARGET", "needle_lost": "NEEDLE LOST",
              "steep_needle": "STEEP: TIP MAY BE DEEPER"}

_SHIFT = 4                 # sub-pixel drawing: coordinates in 1/16 px
_ONE = 1 << _SHIFT
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def guidance_age_ms(result: FrameResult, now_monotonic_s: float) -> float:
    """How old the result's guidance is, in ms, by the monotonic clock."""
    return (float(now_monotonic_s) - float(result.received_s)) * 1000.0


def guidance_is_stale(result: FrameResult, now_monotonic_s: float, max_age_ms: float = 100.0) -> bool:
    """True when the frame behind ``result`` was received more than ``max_age_ms`` ago."""
    return guidance_age_ms(result, now_monotonic_s) > max_age_ms


def _fix(pts) -> np.ndarray:
    return np.round(np.asarray(pts, dtype=float) * _ONE).astype(np.int32)


def _polyline(img, pts, colour, thickness: int) -> None:
    pts = _fix(pts).reshape(-1, 1, 2)
    if len(pts) < 2:
        return
    cv2.polylines(img, [pts], False, HALO_BGR, thickness + 2, cv2.LINE_AA, _SHIFT)
    cv2.polylines(img, [pts], False, colour, thickness, cv2.LINE_AA, _SHIFT)


def _surface(img, pts, colour, thickness: int) -> None:
    """A surface polyline drawn in its seen pieces: no line across a gap where nothing was seen."""
    poly = break_at_gaps(np.asarray(pts, dtype=float).reshape(-1, 2))
    poly = poly[:, None, :]
    pieces = [_fix(p[np.isfinite(p[:, 0, 0])]) for p in np.split(poly, np.flatnonzero(~np.isfinite(poly[:, 0, 0])))]
    pieces = [p for p in pieces if len(p) >= 2]
    if pieces:
        cv2.polylines(img, pieces, False, HALO_BGR, thickness + 2, cv2.LINE_AA, _SHIFT)
        cv2.polylines(img, pieces, False, colour, thickness, cv2.LINE_AA, _SHIFT)


def _dashed(img, p0, p1, colour, thickness: int, dash_px: float = 8.0, gap_px: float = 6.0) -> None:
    """A dashed segment, its dashes computed at once (no per-dash Python work)."""
    p0 = np.asarray(p0, float)
    p1 = np.asarray(p1, float)
    length = float(np.hypot(*(p1 - p0)))
    if length < 1e-6:
        return
    u = (p1 - p0) / length
    starts = np.arange(0.0, length, dash_px + gap_px)
    ends = np.minimum(starts + dash_px, length)
    segs = np.stack([p0 + starts[:, None] * u, p0 + ends[:, None] * u], axis=1)  # (n, 2, 2)
    segs = _fix(segs)
    cv2.polylines(img, list(segs), False, HALO_BGR, thickness + 2, cv2.LINE_AA, _SHIFT)
    cv2.polylines(img, list(segs), False, colour, thickness, cv2.LINE_AA, _SHIFT)


def _circle(img, centre, radius_px: float, colour, thickness: int) -> None:
    c = tuple(int(v) for v in _fix(centre))
    r = int(round(radius_px * _ONE))
    cv2.circle(img, c, r, HALO_BGR, thickness + 2 if thickness > 0 else -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(img, c, max(r - (_ONE if thickness < 0 else 0), _ONE), colour, thickness, cv2.LINE_AA, _SHIFT)


def _text(img, text: str, org, colour, scale: float, box: bool = False) -> int:
    """Text at ``org`` (top-left of the line) on a darkened band; returns the line height.

    ``box`` paints the band solid black (alerts) instead of darkening it.
    """
    thick = max(1, int(round(scale * 1.5)))
    (w, h), base = cv2.getTextSize(text, _FONT, scale, thick)
    x, y = int(org[0]), int(org[1]) + h
    y0, y1 = max(y - h - 3, 0), min(y + base + 3, img.shape[0])
    x0, x1 = max(x - 3, 0), min(x + w + 3, img.shape[1])
    band = img[y0:y1, x0:x1]
    band[...] = 0 if box else (band * 0.35).astype(np.uint8)
    cv2.putText(img, text, (x, y), _FONT, scale, colour, thick, cv2.LINE_AA)
    return y1 - y0 + 2


def _text_corner(result: FrameResult, shape, box_w: int, box_h: int) -> tuple[int, int]:
    """Top-left of the text block: the corner of the frame farthest from the needle.

    The readouts must not cover the needle or its path; frame corners (not the
    imaging region's) so that on a grabbed scanner screen they sit on the
    scanner's margins rather than on anatomy where there is room.
    """
    h, w = shape[:2]
    x0, y0, x1, y1 = 0, 0, w, h
    corners = np.array([[x0 + 8, y0 + 8], [x1 - box_w, y0 + 8], [x0 + 8, y1 - box_h], [x1 - box_w, y1 - box_h]],
                       float)
    marks = []
    if result.needle is not None:
        marks += [result.needle.tip_px, result.needle.tail_px]
    if result.trajectory is not None:
        marks.append(result.trajectory.intercept_px)
    if not marks:
        return int(corners[0, 0]), int(corners[0, 1])
    centres = corners + (box_w / 2, box_h / 2)
    # Distance from each box centre to the nearest point of the needle's segments.
    pts = np.asarray(marks, float)
    seg_a, seg_b = pts[:-1] if len(pts) > 1 else pts, pts[1:] if len(pts) > 1 else pts
    ab = seg_b - seg_a
    ab2 = np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-9)
    s = np.clip(np.einsum("kij,ij->ki", centres[:, None, :] - seg_a[None], ab) / ab2, 0, 1)
    nearest = seg_a[None] + s[..., None] * ab[None]
    dist = np.hypot(*(nearest - centres[:, None, :]).transpose(2, 0, 1)).min(axis=1)
    best = int(np.argmax(dist))
    return int(max(corners[best, 0], 0)), int(max(corners[best, 1], 0))


def aim_spread_mm(trajectory, spacing_mm) -> float | None:
    """Half the distance between the uncertainty cone's two ends, in mm: how surely the path lands.

    None without a cone or a spacing. A short visible shaft gives a wide spread:
    the readout says so instead of leaving the user to trust one thin line.
    """
    if trajectory is None or trajectory.cone_px is None or spacing_mm is None:
        return None
    (_, end_a), (_, end_b) = trajectory.cone_px
    return float(np.hypot(*(np.subtract(end_a, end_b) * np.asarray(spacing_mm, float)))) / 2.0


def track_state(track, alerts) -> str | None:
    """What to call the tracked needle: its state, "unconfirmed", or None for "not seen".

    "lost" only while the needle_lost alert says there was a needle a moment ago:
    on a scan that never had one (or long after) it would suggest something went
    missing. A needle seen in a frame or two only is "unconfirmed" (maybe false).
    """
    if track.state == "lost" and "needle_lost" not in alerts:
        return None
    if track.needle is not None and not track.confirmed:
        return "unconfirmed"
    return track.state


def readout_lines(result: FrameResult) -> list[str]:
    """The text readouts: tracking state, distance, tip depth, approach angle, miss."""
    lines = []
    track = result.track
    if track is not None:
        lines.append(f"needle: {track_state(track, result.alerts) or 'not seen'}")
    elif result.needle is None:
        lines.append("needle: not seen")
    tr = result.trajectory
    if tr is not None:
        lines.append(f"to target: {tr.distance_mm:.1f} mm" if tr.distance_mm is not None
                     else f"to target: {tr.distance_px:.0f} px (no scale)")
        spread = aim_spread_mm(tr, result.frame.spacing_mm)
        if spread is not None:
            lines.append(f"aim: +/-{spread:.1f} mm")
        if tr.tip_depth_mm is not None:
            lines.append(f"tip depth: {tr.tip_depth_mm:.1f} mm")
        lines.append(f"approach: {tr.approach_deg:.0f} deg")
        if tr.miss_depth_mm is not None and tr.miss_lateral_mm is not None:
            depth = "deep" if tr.miss_depth_mm >= 0 else "shallow"
            side = "right" if tr.miss_lateral_mm >= 0 else "left"
            lines.append(f"miss: {abs(tr.miss_depth_mm):.1f} mm {depth}, {abs(tr.miss_lateral_mm):.1f} mm {side}")
    elif result.needle is not None and result.target is not None:
        lines.append("path does not reach the target")
    return lines


def render_overlay(result: FrameResult, *, now_monotonic_s: float | None = None,
                   max_age_ms: float = 100.0, layers=None) -> np.ndarray:
    """Draw the result's guidance on a BGR copy of its own frame.

    Parameters
    ----------
    result : FrameResult
        Guidance is drawn only on ``result.frame`` (the frame it was computed on).
    now_monotonic_s : float or None
        Current ``time.monotonic()``; when given, guidance older than
        ``max_age_ms`` is hidden and the reason written instead. None (exports,
        offline rendering) draws regardless of age.
    layers : iterable of str or None
        Subset of :data:`ALL_LAYERS` to draw; None draws all.

    Returns
    -------
    (H, W, 3) uint8 BGR image.
    """
    img = cv2.cvtColor(result.frame.image, cv2.COLOR_GRAY2BGR)
    h, w = img.shape[:2]
    scale = max(0.4, min(h, w) / 900.0)
    thick = max(1, int(round(min(h, w) / 400.0)))
    if now_monotonic_s is not None and guidance_is_stale(result, now_monotonic_s, max_age_ms):
        # A result with no receive time (a replayed one) has no live age: hidden, and said so plainly.
        why = (f"{guidance_age_ms(result, now_monotonic_s):.0f} ms old" if result.received_s > 0
               else "its age is unknown")
        _text(img, f"guidance hidden: {why}", (8, 8), OKABE_ITO_BGR["yellow"], scale, box=True)
        return img
    show = ALL_LAYERS if layers is None else frozenset(layers)
    region = result.region
    if "region" in show and region is not None and (region.width_px, region.height_px) != (w, h):
        cv2.rectangle(img, (region.x_px, region.y_px),
                      (region.x_px + region.width_px - 1, region.y_px + region.height_px - 1),
                      OKABE_ITO_BGR["blue"], 1)

    target = result.target
    if target is not None:
        if "bone" in show and target.kind == "cartilage" and len(target.bone_px) >= 2:
            _surface(img, target.bone_px, BONE_BGR, thick)
        if "target" in show:
            _surface(img, target.surface_px, BONE_BGR if target.kind == "bone" else SURFACE_BGR, thick)

    needle = result.needle
    if needle is not None and not np.isfinite([*needle.tip_px, *needle.tail_px]).all():
        needle = None  # nothing sensible to draw from a broken detection
    tr = result.trajectory
    if needle is not None:
        tip = np.asarray(needle.tip_px, float)
        if tr is not None:
            if "cone" in show and tr.cone_px is not None:
                for p0, p1 in tr.cone_px:  # thin, no halo: it must not hide the path
                    cv2.line(img, tuple(int(v) for v in _fix(p0)), tuple(int(v) for v in _fix(p1)),
                             PATH_BGR, 1, cv2.LINE_AA, _SHIFT)
            if "path" in show:
                _dashed(img, tip, tr.intercept_px, PATH_BGR, thick + 1)
            if "intercept" in show:
                _circle(img, tr.intercept_px, 3.0 + thick, PATH_BGR, -1)
        if "needle" in show:
            coasting = result.track is not None and result.track.state == "coasting"
            if coasting:
                _dashed(img, needle.tail_px, tip, NEEDLE_BGR, thick + 2, dash_px=10.0, gap_px=4.0)
            else:
                _polyline(img, [needle.tail_px, needle.tip_px], NEEDLE_BGR, thick + 2)
            _circle(img, tip, 4.0 + thick, TIP_BGR, thick)
    if "target_point" in show and tr is not None and tr.target_point_px is not None:
        tp = np.asarray(tr.target_point_px, float)
        arm = 6.0 + 2 * thick
        _polyline(img, [tp - (arm, 0), tp + (arm, 0)], TEXT_BGR, 1)
        _polyline(img, [tp - (0, arm), tp + (0, arm)], TEXT_BGR, 1)

    lines = [(t, TEXT_BGR, scale, False) for t in readout_lines(result)] if "text" in show else []
    if "alerts" in show:
        lines += [(ALERT_TEXT.get(a, a.upper()), ALERT_BGR, scale * 1.2, True) for a in result.alerts]
    if lines:
        sizes = [cv2.getTextSize(t, _FONT, sc, max(1, int(round(sc * 1.5))))[0] for t, _, sc, _ in lines]
        box_w = max(sw for sw, _ in sizes) + 16
        box_h = sum(sh for _, sh in sizes) + 12 * len(lines) + 8
        x, y = _text_corner(result, img.shape, box_w, box_h)
        for (t, colour, sc, boxed) in lines:
            y += _text(img, t, (x, y), colour, sc, box=boxed)
    return img


__all__ = ["render_overlay", "guidance_is_stale", "guidance_age_ms", "readout_lines", "aim_spread_mm", "track_state",
           "OKABE_ITO_RGB", "OKABE_ITO_BGR", "ROLE_COLOURS", "ALL_LAYERS", "ALERT_TEXT",
           "NEEDLE_BGR", "TIP_BGR", "PATH_BGR", "SURFACE_BGR", "BONE_BGR", "ALERT_BGR",
           "TEXT_BGR", "HALO_BGR"]
