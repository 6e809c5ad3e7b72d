"""Shared last steps of every detector: crop to the imaging region, build the result types."""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np

from ..geometry import polyline_y_at, ray_polyline_hit
from ..types import Detection, ImagingRegion, NeedleDetection, Spacing, TargetDetection
from . import postprocess as pp

MIN_CARTILAGE_FRACTION = 0.3
"""Cartilage is reported when the band sits on at least this fraction of the bone surface."""

MAX_BAND_ECHO_RATIO = 0.7
"""Cartilage is reported only when some layer of the band is dark against the tissue above it.

Hyaline cartilage is anechoic (``pp.band_echo_ratio``). Chosen on the 50 simulated tuning scenes
(seeds 6200-6249, every 10th frame, each scene with and without cartilage) and the real frames: at
0.7 cartilage is kept on 98.8 % of the frames that have it and refused on 88.6 % of those without
it, where the model had drawn "cartilage" on every frame; the two knee scans measure 0.38 and 0.44,
the PLUS bone sequence 0.8-1.15. Worn cartilage thins and varies in thickness, so only the band's
darkness is judged, not its evenness.
"""

SHORT_PIECE_PX = 48.0
"""A segmented needle shorter than this (px of the detection's working image) gets other directions
tried when its shaft does not go on (:func:`_short_piece_direction`). Longer pieces fix their own
direction to about a degree, and the refits in :func:`follow_shaft_to_tip` take up the rest; the
search costs 2.5-4 ms, which 5 % of the evaluation frames pay (39 % if it were a quarter of the width)."""

SHORT_PIECE_OFFSET_PX = 3
"""How far across the line the short piece's far end is moved, px: its direction's uncertainty."""

SHORT_PIECE_REF_PX = 36.0
"""The followers need a reference of at least 24 px beyond the 4 px bevel: a shorter piece is taken
to run this far along each direction tried, and the follow must prove it."""

SHORT_PIECE_GAIN = 3.0
"""A direction found by the search is taken only if its shaft runs on at least this many times the
piece's length. Chosen on the tuning scenes: at 2 one needle rolling out of the plane was carried on
2.5 times (seed 6242, frame 64, 46 px past the truth's tip); at 3 none changes."""


def shrink_to(image_u8: np.ndarray, max_side_px: int) -> tuple[np.ndarray, float, float]:
    """``image_u8`` area-averaged down so its longer side is at most ``max_side_px``, with the kept
    fraction of its width and height (1, 1 and the image itself when it is no larger)."""
    h, w = image_u8.shape[:2]
    if max(h, w) <= max_side_px:
        return image_u8, 1.0, 1.0
    f = max_side_px / max(h, w)
    small = cv2.resize(image_u8, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return small, small.shape[1] / w, small.shape[0] / h


def detection_to_frame(det: Detection, fx: float, fy: float, ox: float = 0.0, oy: float = 0.0) -> Detection:
    """``det`` found on an image shrunk by ``fx``, ``fy`` (:func:`shrink_to`) and offset by ``ox``, ``oy``
    in the frame, in frame pixels (pixel centres to pixel centres)."""
    to_frame = pp.Scale(1.0 / fx, 1.0 / fy, ox, oy).points
    needle, target = det.needle, det.target
    if needle is not None:
        tip, tail = to_frame(needle.tip_px), to_frame(needle.tail_px)
        needle = NeedleDetection((float(tip[0]), float(tip[1])), (float(tail[0]), float(tail[1])), needle.confidence)
    if target is not None:
        target = replace(target, surface_px=to_frame(target.surface_px), bone_px=to_frame(target.bone_px))
    return replace(det, needle=needle, target=target)


def crop_to_region(image_u8: np.ndarray, region: ImagingRegion | None) -> tuple[np.ndarray, int, int]:
    """The imaging region's pixels and its (x, y) offset in the frame; the whole frame if None."""
    if region is None:
        return image_u8, 0, 0
    r = region.clip_to(*image_u8.shape[:2])
    return image_u8[r.slices], r.x_px, r.y_px


def make_needle(cand: pp.NeedleCandidate, scale: pp.Scale, image_f: np.ndarray | None, *,
                refine_line: bool | str = True, refine_tip: bool = True, **refine_options) -> NeedleDetection | None:
    """The needle in frame pixels, optionally refined on the image (line sub-pixel, tip fall-off).

    ``refine_options`` go to :func:`~guidance.detect.postprocess.needle_to_image`.
    """
    tail, tip, _ = pp.needle_to_image(cand, scale, image_f, refine=refine_line, tip_refine=refine_tip,
                                      **refine_options)
    if not (np.all(np.isfinite(tail)) and np.all(np.isfinite(tip))) or np.hypot(*(tip - tail)) < 2.0:
        return None
    return NeedleDetection(tip_px=(float(tip[0]), float(tip[1])), tail_px=(float(tail[0]), float(tail[1])),
                           confidence=float(cand.confidence))


def follow_shaft_to_tip(needle: NeedleDetection, scale: pp.Scale, image_f: np.ndarray,
                        bone_px: np.ndarray | None = None, *, refits: int = 2,
                        search_below_px: float = SHORT_PIECE_PX) -> NeedleDetection:
    """The needle with its tip carried on where the shaft's echo goes on past the segmentation's end.

    Speckle or a change of tissue can end the segmentation millimetres before
    the shaft does, and a tip drawn short reads as more distance to go than
    there is. The shaft goes on as far as either of two rules sees it:
    :func:`~guidance.detect.postprocess.shaft_continues_to` follows the
    shaft's own cross-section along the line, and
    :func:`~guidance.detect.postprocess.shaft_end_by_change_point` weighs its
    core's margin over the flanks along the whole line (a faint shaft whose
    echo comes and goes). When the shaft went on, its direction is fitted
    again on the image over all of the shaft followed, and the rules follow
    again along that line, up to ``refits`` times: a direction taken from the
    segmented half of a long shaft can be a degree or two off, and the rest of
    the shaft then drifts out of the profiles (k-Wave's frames,
    ``bench/kwave_frames.py``). The tip is then put where the echo falls off
    (:func:`~guidance.detect.postprocess.tip_at_fall_off`).
    ``image_f`` is the (cropped) image whose top-left is ``scale``'s offset in
    the frame, as for :func:`make_needle`; the needle is in frame pixels.
    Whether there is a needle was decided before: this only moves the tip
    outward along the line (and the line with it, after a refit). With
    ``bone_px`` (the bone surface, x-ordered, frame pixels) the tip is not
    carried past where the line reaches it: a needle does not go into bone,
    and where it ends on the bone the surface's own bright line, or one running
    with the shaft, could carry it on (on the tuning scenes without cartilage
    this drew tips up to 12 mm too deep).

    A segmented piece shorter than ``search_below_px`` (working pixels of the
    image, i.e. ``image_f``'s) whose shaft does not go on along its own line
    gets other directions tried (:func:`_short_piece_direction`): such a
    piece's direction is uncertain by degrees. 0 turns that off.
    """
    off = np.array([scale.ox, scale.oy], float)
    tail = np.asarray(needle.tail_px, float) - off
    tip = np.asarray(needle.tip_px, float) - off
    length = float(np.hypot(*(tip - tail)))
    d = (tip - tail) / max(length, 1e-9)

    def followed(tail: np.ndarray, d: np.ndarray, length: float) -> float:
        # Each rule catches shafts the other misses (tests/test_postprocess.py, model card).
        return max(pp.shaft_continues_to(image_f, tail, d, 0.0, length),
                   pp.shaft_end_by_change_point(image_f, tail, d, 0.0, length))

    t = followed(tail, d, length)
    if t <= length and length < search_below_px:
        found = _short_piece_direction(tail, d, length, followed)
        if found is not None:
            d, length, t = found
    if t <= length:
        return needle
    for _ in range(refits):
        _, d_fit, _ = pp.refine_line_on_image(image_f, tail, d, 0.0, t - 4.0,
                                              half_width_px=pp.direction_band_half_width_px(d), step_px=8.0, chunk=8)
        mid = tail + 0.5 * length * d  # pivot about the segmented shaft's middle, as needle_to_image does
        tail_fit = mid + float((tail - mid) @ d_fit) * d_fit
        t_fit = float((tail + t * d - tail_fit) @ d_fit)
        t_more = followed(tail_fit, d_fit, t_fit)
        if t_more <= t_fit + 1.0:
            break
        tail, d, length, t = tail_fit, d_fit, t_fit, t_more
    t = max(pp.tip_at_fall_off(image_f, tail, d, t, scale), length)
    if bone_px is not None and len(bone_px) >= 2:
        t = min(t, _reaches_surface(tail + off, d, length, np.asarray(bone_px, float)))
    new_tip = tail + t * d + off
    new_tail = tail + off
    return NeedleDetection(tip_px=(float(new_tip[0]), float(new_tip[1])),
                           tail_px=(float(new_tail[0]), float(new_tail[1])), confidence=needle.confidence)


def _short_piece_direction(tail: np.ndarray, d: np.ndarray, length: float, followed, *,
                           max_offset_px: int = SHORT_PIECE_OFFSET_PX, ref_px: float = SHORT_PIECE_REF_PX,
                           min_gain: float = SHORT_PIECE_GAIN) -> tuple[np.ndarray, float, float] | None:
    """Another direction for a short segmented piece whose shaft does not go on along its own line.

    On k-Wave's frames (``bench/kwave_frames.py``) the networks marked only
    the first 2-3 mm of some faint shafts; that piece's direction was 3-6
    degrees off and the tip was drawn 9-13 mm short, the shaft plain on the
    image beside the line followed. The piece's far end is moved across the
    line by 1 to ``max_offset_px`` px each way (so every direction tried still
    passes along the piece) and the shaft is followed from the piece's tail,
    its reference taken over the first ``ref_px`` (the followers need that
    much). The direction whose shaft goes on furthest is taken if it runs at
    least ``min_gain`` times the piece's length: on the tuning scenes shorter
    gains were a needle rolling out of the plane, carried on along its fading
    echo past the truth's tip. ``followed(tail, d, length)`` is the
    followers' reach; returns the new direction, the reference length and the
    reach, or None.
    """
    t_ref = max(length, ref_px)
    a0 = math.atan2(d[1], d[0])
    best_t, best_d = 0.0, None
    for k in range(-max_offset_px, max_offset_px + 1):
        if k == 0 or abs(k) >= length:
            continue
        a = a0 + math.asin(k / length)
        dk = np.array([math.cos(a), math.sin(a)])
        t = followed(tail, dk, t_ref)
        if t > max(best_t, t_ref):
            best_t, best_d = t, dk
    if best_d is None or best_t < min_gain * length:
        return None
    return best_d, t_ref, best_t


def _reaches_surface(p0: np.ndarray, d: np.ndarray, t0: float, surface_px: np.ndarray) -> float:
    """Where ``p0 + t d`` (t >= t0) first meets the x-ordered surface: t0 if already on or below it, inf if never."""
    start = p0 + t0 * d
    y = polyline_y_at(surface_px, float(start[0]))
    if y is not None and start[1] >= y:
        return t0
    hit = ray_polyline_hit(p0, d, surface_px, min_t=t0)
    return math.inf if hit is None else hit[0]


def make_target(xs: np.ndarray, bone_ys: np.ndarray, top_ys: np.ndarray | None, scale: pp.Scale,
                spacing_mm: Spacing | None, *, min_points: int = 8,
                image: np.ndarray | None = None) -> TargetDetection | None:
    """Bone surface and (when seen) cartilage top, working pixels -> frame pixels.

    ``top_ys`` holds the cartilage top per bone column (NaN where none). The
    thickness (mm, None when the spacing is unknown) is the median over columns
    of the band's height times the cosine of the bone's slope, i.e. measured
    across the surface. With ``image`` (the cropped image whose top-left is
    ``scale``'s offset, as for :func:`make_needle`) a band with no layer
    clearly darker than the tissue above it (:data:`MAX_BAND_ECHO_RATIO`) is
    not cartilage, and the bone is the target.
    """
    if len(xs) < min_points:
        return None
    bone, top = pp.surfaces_to_image(xs, bone_ys, top_ys, scale)
    kind = "bone"
    surface = bone
    thickness_mm = None
    enough = top is not None and len(top) >= max(min_points // 2, MIN_CARTILAGE_FRACTION * len(bone))
    if enough and image is not None:
        off = np.array([scale.ox, scale.oy])
        # NaN (nothing to compare) keeps the band: the check can only take cartilage away
        enough = not pp.band_echo_ratio(image, top - off, bone - off) >= MAX_BAND_ECHO_RATIO
    if enough:
        kind = "cartilage"
        surface = top
        if spacing_mm is not None:
            # thickness across the surface, not straight down: a sloping band is thinner than it is tall
            ok = np.isfinite(top_ys)
            sx, sy = spacing_mm
            dy_mm = np.gradient(bone[:, 1]) * sy if len(bone) > 1 else np.zeros(len(bone))
            dx_mm = np.gradient(bone[:, 0]) * sx if len(bone) > 1 else np.ones(len(bone))
            cos_slope = np.abs(dx_mm) / np.maximum(np.hypot(dx_mm, dy_mm), 1e-9)
            vert_mm = (bone_ys[ok] - top_ys[ok]) * scale.sy * sy
            thickness_mm = float(np.median(vert_mm * cos_slope[ok]))
    return TargetDetection(kind=kind, surface_px=surface, bone_px=bone, cartilage_thickness_mm=thickness_mm,
                           confidence=float(min(1.0, len(xs) / max(1, min_points * 4))))
