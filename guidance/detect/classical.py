"""Classical baseline detector: no model, only image filters.

- Bone: per column, the brightest ridge with a dark acoustic shadow below it
  (column cumulative sums make the below-the-ridge means O(1) per pixel).
- Cartilage: the hypoechoic band just above the bone, topped by a brighter
  interface (strongest dark-to-bright step going up from the bone).
- Needle: oriented Gabor line filter (steep-to-shallow orientations only: tissue
  layers are near horizontal), probabilistic Hough for the longest straight
  segment above the bone, then the shared robust fit and sub-pixel refinement
  on the full-resolution image.

It runs when no model is available and is the baseline the model must beat.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..types import Detection, ImagingRegion, Spacing
from . import postprocess as pp
from .assemble import crop_to_region, make_needle, make_target

WORK_PX = 256
"""Longer side of the working image, in pixels."""


class ClassicalDetector:
    name = "classical"

    def __init__(self, *, needle_angles_deg=(12.0, 85.0), n_orient: int = 16) -> None:
        lo, hi = needle_angles_deg
        angles = np.concatenate([np.linspace(lo, hi, n_orient // 2), -np.linspace(lo, hi, n_orient // 2)])
        # Gabor kernel's theta is the normal of the stripes: a line at angle a needs theta = a + 90 deg
        self._kernels = [cv2.getGaborKernel((21, 21), sigma=4.0, theta=np.deg2rad(a + 90.0), lambd=9.0,
                                            gamma=0.35, psi=0.0, ktype=cv2.CV_32F) for a in angles]
        for k in self._kernels:
            k -= k.mean()  # zero DC: flat regions answer 0 whatever their brightness
        self._angles = angles

    # ------------------------------------------------------------------ public
    def detect(self, image_u8: np.ndarray, spacing_mm: Spacing | None = None,
               region: ImagingRegion | None = None) -> Detection:
        crop, ox, oy = crop_to_region(image_u8, region)
        h, w = crop.shape
        f = WORK_PX / max(h, w)
        ww, wh = max(16, int(round(w * f))), max(16, int(round(h * f)))
        small = cv2.resize(crop, (ww, wh), interpolation=cv2.INTER_AREA)
        scale = pp.Scale(w / ww, h / wh, ox, oy)
        smooth = cv2.GaussianBlur(small, (0, 0), 1.2).astype(np.float32)

        xs, bone_ys = bone_surface(smooth)
        top = cartilage_top(smooth, xs, bone_ys) if len(xs) else None
        target = make_target(xs, bone_ys, top, scale, spacing_mm, image=crop)

        floor_ys = bone_ys if top is None else np.where(np.isfinite(top), np.fmin(top, bone_ys), bone_ys)
        cand = self._needle(smooth, xs, floor_ys)
        # the baseline keeps its own refinement: the line onto the echo (profiles every 2 px) and the
        # tip where the ridge falls below half the shaft's level
        needle = make_needle(cand, scale, crop.astype(np.float32), line_step_px=2.0, line_chunk=1,
                             tip_method="shaft_level") if cand is not None else None
        return Detection(needle=needle, target=target, detector=self.name)

    # ------------------------------------------------------------------ needle
    def _needle(self, smooth: np.ndarray, bone_xs: np.ndarray, bone_ys: np.ndarray) -> pp.NeedleCandidate | None:
        """The needle above the target surface (``bone_ys``: the cartilage top or bone per column)."""
        h, w = smooth.shape
        resp = np.max([cv2.filter2D(smooth, cv2.CV_32F, k) for k in self._kernels], axis=0)
        resp = np.clip(resp, 0, None)
        # the target surface and everything below it cannot hold the shaft (the tip may touch it)
        if len(bone_xs):
            surf = np.interp(np.arange(w), bone_xs, bone_ys, left=h, right=h)
            resp[np.arange(h)[:, None] > surf[None, :] - 3] = 0
        soft = smooth[resp > 0] if np.any(resp > 0) else smooth.ravel()
        bright_level = float(np.percentile(soft, 98.5))  # a metal shaft is among the brightest echoes above bone
        thr = max(float(np.percentile(resp, 99.0)), float(resp.mean() + 4 * resp.std()), 20.0)
        mask = (resp > thr).astype(np.uint8) * 255
        lines = cv2.HoughLinesP(mask, 1, np.pi / 180, threshold=20, minLineLength=max(20, w // 10), maxLineGap=6)
        if lines is None:
            return None
        seg = np.asarray(lines, dtype=float).reshape(-1, 4)  # OpenCV 4 gives (N,1,4), 5 gives (N,4)
        length = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
        ang = np.degrees(np.arctan2(seg[:, 3] - seg[:, 1], seg[:, 2] - seg[:, 0]))
        ang = (ang + 90) % 180 - 90
        ok = (np.abs(ang) >= 10) & (np.abs(ang) <= 88)
        if not ok.any():
            return None
        ys, xs = np.nonzero(mask)
        allpts = np.stack([xs, ys], 1).astype(float)
        # try the longest segments first; keep the first that is a straight, densely supported line
        for best in np.flatnonzero(ok)[np.argsort(-length[ok])][:5]:
            cand = self._line_support(allpts, resp, seg[best], w)
            if cand is not None and np.median(smooth[cand[5][:, 1], cand[5][:, 0]]) >= bright_level:
                break
        else:
            return None
        c, dd, t_lo, t_hi, wts, _ = cand
        if (c + t_hi * dd)[1] < (c + t_lo * dd)[1]:  # tip is the deeper end
            dd, t_lo, t_hi = -dd, -t_hi, -t_lo
        contrast = float(np.median(wts)) / (thr + 1e-6)
        conf = float(np.clip(0.5 * contrast, 0.0, 1.0))
        return pp.NeedleCandidate(point=c, direction=dd, t_tail=t_lo, t_tip=t_hi, confidence=conf)

    @staticmethod
    def _line_support(pts: np.ndarray, resp: np.ndarray, seg: np.ndarray, w: int):
        """Robust line through the ridge pixels near a Hough segment, if they form a straight shaft."""
        x0, y0, x1, y1 = seg
        d = np.array([x1 - x0, y1 - y0]) / max(np.hypot(x1 - x0, y1 - y0), 1e-9)
        q = pts - [x0, y0]
        near = np.abs(q[:, 0] * d[1] - q[:, 1] * d[0]) < 2.5
        if near.sum() < 10:
            return None
        sup = pts[near]
        wts = resp[sup[:, 1].astype(int), sup[:, 0].astype(int)].astype(float)
        c, dd = pp.fit_line_weighted(sup, wts)
        t_all = (sup - c) @ dd
        order = np.argsort(t_all)
        t = t_all[order]
        # longest run of support without a gap over 8 px: the shaft, not a stray echo in line with it
        gaps = np.flatnonzero(np.diff(t) > 8.0)
        starts = np.concatenate([[0], gaps + 1])
        ends = np.concatenate([gaps, [len(t) - 1]])
        k = int(np.argmax(t[ends] - t[starts]))
        t_lo, t_hi = float(t[starts[k]]), float(t[ends[k]])
        if t_hi - t_lo < max(15.0, w / 12):
            return None
        run = order[starts[k]:ends[k] + 1]
        r = (sup[run] - c) @ np.array([-dd[1], dd[0]])
        density = len(run) / (t_hi - t_lo)
        # a tissue layer is curved (spread residuals) or patchy; a shaft is straight and continuous
        if np.sqrt(np.mean(r ** 2)) > 1.0 or density < 1.5:
            return None
        return c, dd, t_lo, t_hi, wts[run], sup[run].astype(int)


# ---------------------------------------------------------------------- bone / cartilage

def bone_surface(smooth: np.ndarray, *, min_contrast: float = 25.0, shadow_px: int | None = None,
                 min_run: int | None = None, edge: str = "ridge") -> tuple[np.ndarray, np.ndarray]:
    """Per column, the bright ridge with the darkest shadow below it.

    Score(y) = I(y) - mean(I[y+gap : y+gap+shadow]) - mean(I[y+gap : bottom]) / 2
    computed for all pixels at once with column cumulative sums. The surface is
    the ridge's crest (``edge="ridge"``: the reflection is centred on the
    interface) or its top edge (``edge="top"``: half-maximum going up), sub-pixel.

    Returns x-ordered working-pixel columns and depths.
    """
    h, w = smooth.shape
    shadow = shadow_px or max(8, h // 8)
    gap = max(3, h // 64)
    cs = np.vstack([np.zeros((1, w), np.float32), np.cumsum(smooth, axis=0, dtype=np.float32)])
    y = np.arange(h)[:, None]
    a = np.clip(y + gap, 0, h)
    b = np.clip(y + gap + shadow, 0, h)
    cols = np.arange(w)[None, :]
    near_mean = (cs[b, cols] - cs[a, cols]) / np.maximum(b - a, 1)
    far_mean = (cs[h, cols] - cs[a, cols]) / np.maximum(h - a, 1)
    score = smooth - near_mean - 0.5 * far_mean
    score[h - gap - 2:, :] = -np.inf  # a ridge needs room for its shadow
    score[:max(2, h // 40), :] = -np.inf  # the transducer's ring-down at the very top is not bone
    ridge = np.argmax(score, axis=0)
    best = score[ridge, np.arange(w)]
    # an acoustic shadow: below the ridge darker than the tissue above it
    above_mean = cs[ridge, np.arange(w)] / np.maximum(ridge, 1)
    shadow_mean = far_mean[ridge, np.arange(w)]
    ok = (best > min_contrast) & (shadow_mean < 0.8 * above_mean)
    if edge == "top":
        ys = _top_edge(smooth, ridge)
    else:
        # the brightest row near the score's ridge, then a parabola through it and its neighbours
        cols = np.arange(w)
        near = np.clip(ridge[None, :] + np.arange(-3, 4)[:, None], 0, h - 1)
        r = near[np.argmax(smooth[near, cols[None, :]], axis=0), cols]
        v = smooth[np.clip(r[None, :] + np.array([-1, 0, 1])[:, None], 0, h - 1), cols]
        den = v[0] - 2 * v[1] + v[2]
        delta = np.where(den < -1e-6, 0.5 * (v[0] - v[2]) / np.where(den < -1e-6, den, -1.0), 0.0)
        ys = r + np.clip(delta, -0.5, 0.5)
    xs = np.arange(w, dtype=float)
    ok = pp._drop_short_runs(ok, min_run or max(4, w // 25))
    xs, ys = xs[ok], ys[ok].astype(float)
    xs, ys = pp.smooth_polyline_y(xs, ys, ksize=max(9, (w // 12) | 1), max_jump_px=max(3.0, h / 60))
    keep = pp._drop_short_runs(np.isin(np.arange(w), xs.astype(int)), min_run or max(4, w // 25))
    sel = keep[xs.astype(int)]
    return xs[sel], ys[sel]


def cartilage_top(smooth: np.ndarray, xs: np.ndarray, bone_ys: np.ndarray, *, max_thick_px: int | None = None,
                  min_step: float = 12.0) -> np.ndarray:
    """Top of the hypoechoic band on the bone, per bone column (NaN where none).

    Going up from the bone surface, the band is dark; its top is the strongest
    step to brighter tissue: score(k) = mean(I[yb-k-3 .. yb-k]) - mean(I[yb-k .. yb-1]).
    """
    h, w = smooth.shape
    K = max_thick_px or max(8, h // 10)
    xi = np.clip(np.round(xs).astype(int), 0, w - 1)
    yb = np.round(bone_ys).astype(int)
    skip = 3  # the bone's bright reflection reaches a few rows above its crest
    k = np.arange(0, K + 4)
    rows = yb[None, :] - skip - k[:, None]
    prof = np.where(rows >= 0, smooth[np.clip(rows, 0, h - 1), xi[None, :]], np.nan)  # (K+4, n), going up
    prof = np.nan_to_num(prof, nan=0.0)
    cs = np.vstack([np.zeros((1, len(xi))), np.cumsum(prof, axis=0)])
    kk = np.arange(2, K)
    band = cs[kk] / kk[:, None]                 # mean of the kk rows just above the bone
    above = (cs[kk + 4] - cs[kk]) / 4.0         # mean of the 4 rows above that
    step = above - band
    best = np.argmax(step, axis=0)
    val = step[best, np.arange(len(xi))]
    bone_level = smooth[np.clip(yb, 0, h - 1), xi]
    band_level = band[best, np.arange(len(xi))]
    ok = (val > min_step) & (band_level < 0.6 * bone_level)
    top = bone_ys - skip - (best + 2) + 0.5
    ok = pp._drop_short_runs(ok, max(4, w // 25))
    return np.where(ok, top, np.nan)


def _top_edge(smooth: np.ndarray, ridge: np.ndarray) -> np.ndarray:
    """Per column, the half-maximum crossing going up from the ridge row (sub-pixel)."""
    h, w = smooth.shape
    cols = np.arange(w)
    peak = smooth[ridge, cols]
    up = np.arange(0, max(4, h // 32))
    rows = np.clip(ridge[None, :] - up[:, None], 0, h - 1)
    prof = smooth[rows, cols[None, :]]
    above_bg = smooth[np.clip(ridge - up[-1] - 3, 0, h - 1), cols]
    half = 0.5 * (peak + above_bg)
    below_half = prof < half[None, :]
    k = np.where(below_half.any(0), np.argmax(below_half, 0), len(up) - 1)
    kk = np.clip(k, 1, len(up) - 1)
    v_in = prof[kk - 1, cols]
    v_out = prof[kk, cols]
    frac = np.clip((v_in - half) / np.maximum(v_in - v_out, 1e-6), 0, 1)
    return ridge - (kk - 1 + frac)
