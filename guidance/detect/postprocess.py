"""From probability maps and the image to a needle line, a tip and target surfaces.

Shared by the ONNX model and the classical baseline. Everything is vectorized
NumPy/OpenCV: no Python loop over pixels or over points of a contour.

Conventions: points are (x, y) float arrays in pixels, the centre of the
top-left pixel at (0, 0). Maps computed at a working resolution are mapped back
to the pixels of the image they came from by :class:`Scale`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..geometry import sample_along


@dataclass(frozen=True)
class Scale:
    """Maps working-resolution pixels to image pixels (and back).

    ``sx``, ``sy``: image pixels per working pixel; ``ox``, ``oy``: offset of
    the working grid's origin in image pixels (the imaging-region crop).
    Pixel centres map to pixel centres: ``x_img = (x + 0.5) * sx - 0.5 + ox``.
    """

    sx: float = 1.0
    sy: float = 1.0
    ox: float = 0.0
    oy: float = 0.0

    def points(self, xy) -> np.ndarray:
        xy = np.asarray(xy, dtype=float)
        return np.stack([(xy[..., 0] + 0.5) * self.sx - 0.5 + self.ox,
                         (xy[..., 1] + 0.5) * self.sy - 0.5 + self.oy], axis=-1)

    def vectors(self, v) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        return np.stack([v[..., 0] * self.sx, v[..., 1] * self.sy], axis=-1)


# ----------------------------------------------------------------------------- lines

def fit_line_weighted(xy: np.ndarray, w: np.ndarray | None = None, *, iters: int = 3,
                      huber_px: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Robust weighted total-least-squares line through points.

    Iteratively reweighted principal axis with Huber weights on the
    perpendicular residuals (outliers far from the line count less).

    Parameters
    ----------
    xy : (N, 2) array of points (x, y).
    w : (N,) non-negative weights (e.g. probabilities); ones if None.

    Returns
    -------
    point : (2,) a point on the line (the weighted centroid).
    direction : (2,) unit vector along the line.
    """
    xy = np.asarray(xy, dtype=float)
    base = np.ones(len(xy)) if w is None else np.asarray(w, dtype=float)
    wt = base.copy()
    c = d = None
    for _ in range(max(1, iters)):
        s = wt.sum()
        if s <= 0:
            break
        c = (wt[:, None] * xy).sum(0) / s
        q = xy - c
        cov = (wt[:, None, None] * (q[:, :, None] * q[:, None, :])).sum(0) / s
        evals, evecs = np.linalg.eigh(cov)
        d = evecs[:, 1]
        r = np.abs(q[:, 0] * d[1] - q[:, 1] * d[0])
        wt = base * np.where(r <= huber_px, 1.0, huber_px / np.maximum(r, 1e-9))
    if c is None:
        c, d = xy.mean(0), np.array([1.0, 0.0])
    return c, d / np.hypot(*d)


def _fit_offset_line(t: np.ndarray, off: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """(a, b) of offset = a + b t: weighted least squares, then once more with Huber weights
    (residuals over 0.75 px count less), so one stray profile does not tilt the line."""
    A = np.stack([np.ones_like(t), t], axis=1)
    weights = w
    for _ in range(2):
        sw = np.sqrt(weights)
        coef, *_ = np.linalg.lstsq(A * sw[:, None], off * sw, rcond=None)
        r = np.abs(off - A @ coef)
        weights = w * np.where(r <= 0.75, 1.0, 0.75 / np.maximum(r, 1e-9))
    return float(coef[0]), float(coef[1])


def refine_line_on_image(image_f: np.ndarray, p0: np.ndarray, d: np.ndarray, t0: float, t1: float,
                         *, half_width_px: float = 5.0, step_px: float = 2.0,
                         chunk: int = 1) -> tuple[np.ndarray, np.ndarray, float]:
    """Sub-pixel refinement of a bright line on the image itself.

    Samples intensity profiles perpendicular to the line every ``step_px``
    between ``t0`` and ``t1`` (positions along ``d`` from ``p0``), takes each
    profile's centroid above its own background, and fits a weighted line
    ``offset = a + b t`` through the centroids.

    Returns the refined (point, unit direction) and the mean peak contrast
    (grey levels) of the profiles, a measure of how line-like the image is there.
    """
    if t1 - t0 < 4 * step_px:
        return p0, d, 0.0
    t = np.arange(t0, t1, step_px)
    s = np.arange(-half_width_px, half_width_px + 1e-6, 0.25)
    if chunk > 1:
        # average the profiles of ``chunk`` consecutive 1 px steps: speckle averages out, the line stays
        tt = np.arange(t0, t0 + len(t) * step_px, step_px / chunk)
        prof = sample_along(image_f, p0, d, tt, s).reshape(len(t), chunk, len(s)).mean(axis=1)
        t = t + 0.5 * step_px * (chunk - 1) / chunk
    else:
        prof = sample_along(image_f, p0, d, t, s)
    bg = np.median(prof, axis=1, keepdims=True)
    excess = np.clip(prof - bg, 0, None)
    peak = excess.max(axis=1)
    # keep the top of the profile only: the line, not speckle beside it
    core = np.clip(excess - 0.5 * peak[:, None], 0, None)
    mass = core.sum(axis=1)
    ok = mass > 0
    if ok.sum() < 4:
        return p0, d, float(peak.mean()) if len(peak) else 0.0
    off = (core[ok] * s[None, :]).sum(axis=1) / mass[ok]
    a, b = _fit_offset_line(t[ok], off, peak[ok])
    if abs(a) > half_width_px or abs(b) > 0.1:  # profiles did not see one straight line: keep the input
        return p0, d, float(np.median(peak))
    n = np.array([-d[1], d[0]])
    p_new = p0 + a * n
    d_new = d + b * n
    d_new /= np.hypot(*d_new)
    return p_new, d_new, float(np.median(peak))


def tip_from_intensity(image_f: np.ndarray, p0: np.ndarray, d: np.ndarray, t_guess: float,
                       *, search_px: float = 12.0, shaft_px: float = 40.0) -> float:
    """Position of the needle tip along the line: where the shaft's brightness falls off.

    ``d`` points from tail to tip. Along-line intensity (max over +-1 px
    across the line) is compared with the shaft level (median over
    ``shaft_px`` behind ``t_guess``) and the background beyond the tip; the tip
    is the last crossing of the half-way level within ``t_guess +- search_px``,
    interpolated linearly between samples.
    """
    step = 0.25
    t = np.arange(t_guess - shaft_px, t_guess + search_px + 8.0, step)
    prof = sample_along(image_f, p0, d, t, np.array([-1.0, 0.0, 1.0])).max(axis=1)
    prof = cv2.GaussianBlur(prof.reshape(1, -1).astype(np.float32), (0, 0), sigmaX=2.0).ravel()
    shaft = np.median(prof[t < t_guess - 4.0]) if np.any(t < t_guess - 4.0) else prof.max()
    beyond = prof[t > t_guess + search_px]
    bg = np.median(beyond) if len(beyond) else prof.min()
    if shaft - bg < 5.0:
        return t_guess
    half = 0.5 * (shaft + bg)
    win = (t >= t_guess - search_px) & (t <= t_guess + search_px)
    above = (prof >= half) & win
    idx = np.flatnonzero(above[:-1] & ~above[1:])
    if len(idx) == 0:
        return t_guess
    i = idx[np.argmin(np.abs(t[idx] - t_guess))]
    frac = (prof[i] - half) / max(prof[i] - prof[i + 1], 1e-6)
    return float(t[i] + frac * step)


@dataclass(frozen=True)
class NeedleCandidate:
    """A needle in working pixels: a line point, unit direction tail->tip, extent and evidence."""

    point: np.ndarray
    direction: np.ndarray
    t_tail: float
    t_tip: float
    confidence: float
    piece_fraction: float = 1.0  # share of the length covered by the heaviest component alone
    piece_length: float = 0.0  # the heaviest component's extent along the line (working px)


def needle_from_prob(prob: np.ndarray, *, tip_heat: np.ndarray | None = None, threshold: float = 0.5,
                     min_length_px: float = 10.0, min_mass: float = 8.0,
                     min_confidence: float = 0.0, join_gap_px: float = 0.0) -> NeedleCandidate | None:
    """The needle line from a needle-probability map (working resolution).

    Picks the connected component of ``prob > threshold`` with the largest
    probability mass, fits a robust weighted line through its pixels, and takes
    its extent along the line. The tip is the end nearer the tip heat-map peak
    when one is given and confident, else the deeper end (larger y): the shaft
    enters from the skin or a side edge and goes down. The confidence is the
    mean probability over the component; below ``min_confidence`` (or shorter
    than ``min_length_px``) there is no needle.

    With ``join_gap_px`` > 0 a shaft whose mask broke into collinear pieces
    (speckle across a long shaft) is taken whole: the components lying on the
    chosen component's line, with gaps of at most ``join_gap_px``, extend it
    and the line is refitted through them all. Whether there is a needle is
    still judged on the chosen component alone (its confidence, its length,
    and ``piece_fraction``, the share of the whole length it covers): joined
    pieces of a faint streak are no stronger evidence than its longest piece.
    """
    mask = (prob > threshold).view(np.uint8)
    n, labels = cv2.connectedComponents(mask, connectivity=8)
    if n <= 1:
        return None
    # Per-component sums over the mask's pixels only (a few thousand, not the whole map).
    # OpenCV lists them in np.nonzero's (row-major) order, several times faster on a mostly empty map.
    pts = cv2.findNonZero(mask).reshape(-1, 2)  # (N, 1, 2) in OpenCV 4, (N, 2) in 5
    xs, ys = pts[:, 0], pts[:, 1]
    lab = labels[ys, xs]
    pw = prob[ys, xs].astype(float)
    mass = np.bincount(lab, weights=pw, minlength=n)
    mass[0] = 0
    best = int(np.argmax(mass))
    if mass[best] < min_mass:
        return None
    on = lab == best
    w = pw[on]
    xy = np.stack([xs[on], ys[on]], axis=1).astype(float)
    c, d = fit_line_weighted(xy, w)
    t = (xy - c) @ d
    seed_len = float(t.max() - t.min())
    conf = float(np.clip(np.mean(w), 0.0, 1.0))
    if seed_len < min_length_px or conf < min_confidence:
        return None
    piece = 1.0
    if join_gap_px > 0 and n > 2:
        # Only components whose centre lies on the line can be pieces of it: most frames have none.
        count = np.maximum(np.bincount(lab, minlength=n), 1)
        q = np.stack([np.bincount(lab, weights=xs, minlength=n), np.bincount(lab, weights=ys, minlength=n)], 1)
        q = q / count[:, None] - c
        maybe = np.abs(q[:, 0] * d[1] - q[:, 1] * d[0]) <= 4.0
        maybe[[0, best]] = False
        if maybe.any():
            chain = _collinear_chain(xs, ys, lab, pw, n, best, maybe, join_gap_px)
            if chain.sum() > 1:
                sel = chain[lab]
                xy = np.stack([xs[sel], ys[sel]], axis=1).astype(float)
                w = pw[sel]
                c, d = fit_line_weighted(xy, w)
                t = (xy - c) @ d
                piece = min(1.0, seed_len / max(float(t.max() - t.min()), 1e-9))
    t_lo, t_hi = float(t.min()), float(t.max())
    # the mask's ends stick out by half its width beyond the shaft's ends
    half_width = 0.5 * min(len(xy) / max(t_hi - t_lo, 1.0), 6.0)
    t_lo, t_hi = t_lo + half_width, t_hi - half_width
    end_lo, end_hi = c + t_lo * d, c + t_hi * d
    tip_is_hi = end_hi[1] >= end_lo[1]
    if tip_heat is not None and tip_heat.max() > 0.5:
        yy, xx = np.unravel_index(int(np.argmax(tip_heat)), tip_heat.shape)
        # heat-map centroid in a small window around the peak: sub-pixel tip
        y0, y1 = max(yy - 3, 0), min(yy + 4, tip_heat.shape[0])
        x0, x1 = max(xx - 3, 0), min(xx + 4, tip_heat.shape[1])
        win = tip_heat[y0:y1, x0:x1].astype(float)
        gy, gx = np.mgrid[y0:y1, x0:x1]
        pk = np.array([(gx * win).sum(), (gy * win).sum()]) / win.sum()
        tp = float((pk - c) @ d)
        perp = abs(float((pk - c) @ np.array([-d[1], d[0]])))
        if perp < 6.0 and t_lo - 8.0 <= tp <= t_hi + 8.0:
            tip_is_hi = abs(tp - t_hi) < abs(tp - t_lo)
    if not tip_is_hi:
        d = -d
        t_lo, t_hi = -t_hi, -t_lo
    # the heat-map only says which end is the tip: its peak sits less reliably along the shaft
    # than the mask's end does (measured on held-out simulated frames)
    t_tip = t_hi
    return NeedleCandidate(point=c, direction=d, t_tail=t_lo, t_tip=t_tip, confidence=conf, piece_fraction=piece,
                           piece_length=seed_len)


def _collinear_chain(xs: np.ndarray, ys: np.ndarray, lab: np.ndarray, pw: np.ndarray, n: int, seed: int,
                     maybe: np.ndarray, max_gap_px: float, *, across_px: float = 2.5,
                     on_line: float = 0.7) -> np.ndarray:
    """Which components (boolean per label) lie on ``seed``'s line, chained with gaps up to ``max_gap_px``.

    A component is on the line when ``on_line`` of its pixels are within
    ``across_px`` of it. Two passes: the second uses the line refitted through
    the chain of the first, which a short seed's direction may miss by a little.
    The mask's pixels come as ``xs``, ``ys`` with their labels ``lab`` and
    probabilities ``pw``; only the components flagged in ``maybe`` are considered.
    """
    consider = maybe.copy()
    consider[seed] = True
    keep = consider[lab]
    lab = lab[keep]
    xy = np.stack([xs[keep], ys[keep]], axis=1).astype(float)
    w = pw[keep]
    size = np.maximum(np.bincount(lab, minlength=n), 1)
    chain = np.zeros(n, bool)
    chain[seed] = True
    for _ in range(2):
        sel = chain[lab]
        c, d = fit_line_weighted(xy[sel], w[sel])
        q = xy - c
        near = np.abs(q[:, 0] * d[1] - q[:, 1] * d[0]) <= across_px
        t = q @ d
        lo = np.full(n, np.inf)
        hi = np.full(n, -np.inf)
        np.minimum.at(lo, lab[near], t[near])
        np.maximum.at(hi, lab[near], t[near])
        onl = np.bincount(lab[near], minlength=n) / size >= on_line
        onl[0] = False
        chain_lo, chain_hi = lo[chain].min(), hi[chain].max()
        mid = 0.5 * (np.where(onl, lo, 0.0) + np.where(onl, hi, 0.0))
        for k in np.flatnonzero(onl)[np.argsort(np.abs(mid[onl] - 0.5 * (chain_lo + chain_hi)))]:  # nearest first
            if not chain[k] and lo[k] - chain_hi <= max_gap_px and chain_lo - hi[k] <= max_gap_px:
                chain[k] = True
                chain_lo, chain_hi = min(chain_lo, lo[k]), max(chain_hi, hi[k])
        if chain.sum() == 1:
            break  # nothing on the line: no second pass
    return chain


def tip_fall_off(image_f: np.ndarray, p0: np.ndarray, d: np.ndarray, t_guess: float, *,
                 half_band_px: float = 2.0, search_px: float = 12.0, smooth_px: float = 1.0) -> float:
    """Position of the tip along the axis ``p0 + t d``: where the echo falls to half its last level.

    The along-line profile is the mean across a band of ``+-half_band_px``
    around the axis (the echo of the shaft and bevel, not one bright wall),
    lightly smoothed. Its level at the end of the shaft is the maximum within
    ``search_px`` of ``t_guess``; the background is the median beyond that
    window. The tip is the first half-way crossing after that maximum,
    interpolated between samples (half-maximum of a blurred step is the step
    for a symmetric point-spread function). Returns ``t_guess`` when the end
    does not stand out (less than 8 grey levels).
    """
    step = 0.5
    t = np.arange(t_guess - 2 * search_px, t_guess + 2 * search_px + step, step)
    s = np.arange(-half_band_px, half_band_px + 1e-6, 0.5)
    prof = sample_along(image_f, p0, d, t, s).mean(axis=1)
    if smooth_px > 0:
        prof = cv2.GaussianBlur(prof.reshape(1, -1).astype(np.float32), (0, 0), sigmaX=smooth_px / step).ravel()
    win = np.abs(t - t_guess) <= search_px
    iw = np.flatnonzero(win)
    k = int(iw[np.argmax(prof[iw])])
    bg = float(np.median(prof[t > t_guess + search_px]))
    peak = float(prof[k])
    if peak - bg < 8.0:
        return t_guess
    half = 0.5 * (peak + bg)
    below = np.flatnonzero(prof[k:] < half)
    if len(below) == 0:
        return t_guess
    j = k + int(below[0])
    frac = (prof[j - 1] - half) / max(prof[j - 1] - prof[j], 1e-6)
    return float(t[j - 1] + frac * step)


def tip_search_px(scale: Scale) -> float:
    """How far (image px) from a segmented tip its refinement searches: 3 working px, at least 6."""
    return max(6.0, 3.0 * max(scale.sx, scale.sy))


def tip_at_fall_off(image_f: np.ndarray, p0: np.ndarray, d: np.ndarray, t_guess: float, scale: Scale) -> float:
    """The model detector's tip along ``p0 + t d``: :func:`tip_fall_off` over the shaft's +-8 px echo band.

    The band and the search (:func:`tip_search_px`) were chosen on tuning seeds (model card).
    """
    return tip_fall_off(image_f, p0, d, t_guess, half_band_px=8.0, search_px=tip_search_px(scale))


def shaft_continues_to(image_f: np.ndarray, p0: np.ndarray, d: np.ndarray, t_tail: float, t_tip: float, *,
                       half_width_px: float = 12.0, ref_px: float = 80.0, smooth_px: int = 12,
                       start_px: int = 16, start_level: float = 0.7, start_match: float = 0.7,
                       min_level: float = 0.5, min_match: float = 0.5, max_gap_px: int = 16,
                       min_extend_px: float = 32.0, max_extend_px: float = 200.0,
                       start_core: float = 0.7, min_core: float = 0.5, min_core_grey: float = 8.0,
                       bridge_px: int = 32, bridge_core: float = 0.3) -> float:
    """How far along ``p0 + t d`` the shaft's own cross-section goes on beyond ``t_tip`` (px).

    The reference is the mean profile across the line (``+-half_width_px``)
    over the last ``ref_px`` of the segmented shaft: walls, lumen,
    reverberations and the speckle beside them, each at its offset from the
    axis. Along the line, profiles averaged over ``smooth_px`` are compared
    with it: the match is their normalised correlation, the level their
    regression on the reference (1: as strong as the shaft). A tissue line
    beside the axis, or one line where the shaft shows two walls, does not match.

    The shaft goes on only if the first ``start_px`` beyond ``t_tip`` match
    closely (``start_level``, ``start_match``): where a segmentation stops at
    the real tip the echo falls there, even when a collinear tissue strand
    takes it up again further on. It then follows while the level and match
    stay above ``min_level`` and ``min_match``, bridging dropouts of up to
    ``max_gap_px`` (speckle across the shaft). Returns the last position that
    matches, or ``t_tip`` when the shaft does not go on for at least
    ``min_extend_px``.

    A position also counts when the shaft's bright core (the reference's peak,
    down to half its height) stands above the darker flank on each side, taken
    one side at a time, by ``start_core`` (at the start) or ``min_core`` of the
    reference's own margin (when that is at least ``min_core_grey`` grey
    levels). Where the shaft enters a darker or brighter tissue layer one
    flank changes brightness and the whole profile no longer correlates with
    the reference, while the core still stands out: on frames from another
    image formation the tip stopped there. For the same reason the strong
    start may begin up to ``bridge_px`` past ``t_tip`` (where the segmentation
    stopped at such a boundary), provided the core keeps at least
    ``bridge_core`` of its margin all the way there.
    """
    sampled = _shaft_reference(image_f, p0, d, t_tail, t_tip, half_width_px, ref_px, min_px=2 * smooth_px)
    if sampled is None:
        return t_tip
    s, ref_grey = sampled[0], sampled[1].mean(axis=0)
    ref = ref_grey - ref_grey.mean()
    rr = float(ref @ ref)
    if rr < len(s) * 4.0:  # a flat reference (under 2 grey levels rms): nothing to follow
        return t_tip
    core, left, right = _core_and_flanks(ref)
    core_ref = _core_margin(ref_grey, core, left, right) if left.any() and right.any() else 0.0

    def compare(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Level, match, core margin (of the reference's) and whether the profile lies inside the image."""
        grey = cv2.blur(sample_along(image_f, p0, d, t, s), (1, smooth_px),
                        borderType=cv2.BORDER_REPLICATE)  # along the line only
        prof = grey - grey.mean(axis=1, keepdims=True)
        level = prof @ ref / rr
        match = level * np.sqrt(rr) / np.maximum(np.linalg.norm(prof, axis=1), 1e-9)
        core_rel = (_core_margin(grey, core, left, right) / core_ref if core_ref >= min_core_grey
                    else np.zeros(len(t)))
        return level, match, core_rel, _profiles_inside(image_f.shape, p0, d, t, s)

    # The start first (the blur's reach past it included, so the values are the same as in the whole
    # run): at a real tip it fails, and the rest is not sampled.
    n0 = bridge_px + start_px
    level, match, core_rel, inside = compare(t_tip + np.arange(0.0, n0 + smooth_px, 1.0))
    strong = (((level >= start_level) & (match >= start_match)) | (core_rel >= start_core)) & inside
    # a start of start_px strong positions, reached across at most bridge_px where the core still shows
    window = np.convolve(strong[:n0].view(np.int8), np.ones(start_px, np.int8), "valid") == start_px
    bridged = np.logical_and.accumulate(np.r_[True, (core_rel >= bridge_core) & inside][:len(window)])
    first = np.flatnonzero(window & bridged)
    if len(first) == 0:
        return t_tip
    t = t_tip + np.arange(0.0, max_extend_px, 1.0)
    level, match, core_rel, inside = compare(t)
    good = (((match >= min_match) & (level >= min_level)) | (core_rel >= min_core)) & inside
    good[:first[0]] = True
    i = np.arange(len(t))
    last_good = np.maximum.accumulate(np.where(good, i, -1))
    stop = np.flatnonzero(i - last_good >= max_gap_px)  # a dropout too long to bridge
    last = int(last_good[stop[0] if len(stop) else len(t) - 1])
    if last < 0 or t[last] < t_tip + min_extend_px:
        return t_tip
    return float(t[last])


def _core_and_flanks(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks over a mean-free profile: the run around its peak down to half the peak, and the
    positions below the mean on each side of it."""
    k = int(np.argmax(ref))
    high = ref >= 0.5 * ref[k]
    run = np.cumsum(np.r_[0, np.diff(high.view(np.int8)) != 0])  # label of each run of equal values
    core = high & (run == run[k])
    i = np.arange(len(ref))
    first, last = np.flatnonzero(core)[[0, -1]]
    return core, (ref < 0) & (i < first), (ref < 0) & (i > last)


def _core_margin(grey: np.ndarray, core: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """How far the core's mean stands above the brighter of the two flanks' means (grey levels)."""
    return grey[..., core].mean(-1) - np.maximum(grey[..., left].mean(-1), grey[..., right].mean(-1))


def _shaft_reference(image_f: np.ndarray, p0: np.ndarray, d: np.ndarray, t_tail: float, t_tip: float,
                     half_width_px: float, ref_px: float, min_px: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Offsets across the line and the profiles (positions x offsets) over the segmented shaft's last
    ``ref_px``, stopping 4 px before its tip (the bevel); None when that is shorter than ``min_px``."""
    t0 = max(t_tail, t_tip - 4.0 - ref_px)
    if t_tip - 4.0 - t0 < min_px:
        return None
    s = np.arange(-half_width_px, half_width_px + 1e-6, 1.0)
    return s, sample_along(image_f, p0, d, np.arange(t0, t_tip - 4.0, 1.0), s)


def _profiles_inside(shape: tuple[int, ...], p0: np.ndarray, d: np.ndarray, t: np.ndarray,
                     s: np.ndarray) -> np.ndarray:
    """Whether the profile across the line at each ``t`` (offsets ``s``) lies inside an image of ``shape``."""
    h, w = shape[:2]
    n = np.array([-d[1], d[0]])
    ends = p0 + t[:, None, None] * d + np.array([s[0], s[-1]])[None, :, None] * n  # both ends of each profile
    return np.all((ends >= 0) & (ends <= np.array([w - 1, h - 1])), axis=(1, 2))


def shaft_end_by_change_point(image_f: np.ndarray, p0: np.ndarray, d: np.ndarray, t_tail: float, t_tip: float, *,
                              half_width_px: float = 12.0, ref_px: float = 80.0, smooth_px: int = 4,
                              max_extend_px: float = 200.0, min_core_grey: float = 8.0, min_snr: float = 1.0,
                              alarm_px: float = 24.0, start_alarm_px: float = 8.0, min_evidence_px: float = 16.0,
                              min_extend_px: float = 16.0, drift_px: int = 4, drift_tol: float = 0.5,
                              crossing_px: int = 4, crossing_max_px: float = 32.0) -> float:
    """Where the shaft's bright core ends along ``p0 + t d`` beyond ``t_tip`` (px): a change point.

    Along a faint shaft the core's margin over its flanks is noisy (speckle as
    strong as the echo), so a rule that asks every window past the
    segmentation's end to look like the shaft stops at the first dropout. This
    weighs the evidence along the whole line instead. The reference is the
    segmented shaft's last ``ref_px``: its mean cross-section gives the core
    and flanks (:func:`_core_and_flanks`), and the margin along it gives the
    shaft's level ``mu`` (median) and spread (robust SD). Past ``t_tip`` each
    position adds ``margin - mu / 2`` to a running sum (Page's CUSUM for a
    mean falling from ``mu`` to 0; margins are capped at ``2 mu`` so a bright
    speck counts as one shaft position): the shaft ends at the sum's maximum
    before it has fallen ``alarm_px * mu / 2`` below it (as much as that many
    positions of plain tissue). The tip moves only when the sum reaches
    ``min_evidence_px * mu / 2`` without first falling ``start_alarm_px * mu
    / 2`` below zero (a shaft that goes on shows at once; after a gap it is a
    collinear tissue line), and the end lies at least ``min_extend_px``
    beyond ``t_tip`` (a shorter burst is mostly a tissue layer the tip rests
    on, crossed by the line; the fall-off search covers the last pixels). A
    reference whose margin is under ``min_core_grey`` grey levels or under
    ``min_snr`` times its spread is too weak to judge. A position where the
    same core stands out more (by ``drift_tol * mu``) off the axis, every 2 px
    out to ``drift_px``, counts as plain tissue: a bright line crossing the
    shaft's line at a small angle (a layer the tip rests on) drifts across the
    profile, while the shaft stays on its axis. When the burst is short
    (under ``crossing_max_px``) and such a line stands out on one side of the
    axis and, up to ``crossing_px`` past the end found, on the other, it has
    crossed the axis: the burst was that line, and the tip stays
    (``crossing_px=0`` turns this off). Returns ``t_tip`` when the shaft does
    not go on.
    """
    sampled = _shaft_reference(image_f, p0, d, t_tail, t_tip, half_width_px, ref_px, min_px=24.0)
    if sampled is None:
        return t_tip
    s, ref_grey = sampled
    ref = ref_grey.mean(axis=0)
    ref = ref - ref.mean()
    if float(ref @ ref) < len(s) * 4.0:  # a flat cross-section (under 2 grey levels rms): no shaft to follow
        return t_tip
    core, left, right = _core_and_flanks(ref)
    if not (left.any() and right.any()):
        return t_tip

    def margin(grey: np.ndarray) -> np.ndarray:
        if smooth_px > 1:  # along the line only
            grey = cv2.blur(grey, (1, smooth_px), borderType=cv2.BORDER_REPLICATE)
        return _core_margin(grey, core, left, right)

    m_ref = margin(ref_grey)
    mu = float(np.median(m_ref))
    spread = 1.4826 * float(np.median(np.abs(m_ref - mu)))
    if mu < min_core_grey or mu < min_snr * spread:
        return t_tip
    t = t_tip + np.arange(0.0, max_extend_px, 1.0)
    outside = np.flatnonzero(~_profiles_inside(image_f.shape, p0, d, t, s))
    t = t[:outside[0]] if len(outside) else t
    if len(t) < min_extend_px:
        return t_tip
    # profiles drift_px wider on each side, for the same core and flanks moved across the line
    grey = sample_along(image_f, p0, d, t, np.arange(s[0] - drift_px, s[-1] + drift_px + 1e-6, 1.0))
    m = margin(grey[:, drift_px:drift_px + len(s)])
    shifts = [k for k in range(-drift_px, drift_px + 1, 2) if k]
    side = np.zeros(len(t))
    if shifts:
        offs = np.array([margin(grey[:, drift_px + k:drift_px + k + len(s)]) for k in shifts])
        off = offs.max(axis=0)
        drifted = off > m + drift_tol * mu
        side = np.where(drifted, np.sign(np.array(shifts, float))[np.argmax(offs, axis=0)], 0.0)
        m = np.where(drifted, 0.0, m)
    evidence = np.cumsum(np.minimum(m, 2.0 * mu) - 0.5 * mu)
    # The segmentation ended where the echo dropped: a shaft that goes on shows at once, not after a gap.
    reached = np.flatnonzero(evidence >= min_evidence_px * 0.5 * mu)
    if len(reached) == 0 or evidence[:reached[0]].min(initial=0.0) < -start_alarm_px * 0.5 * mu:
        return t_tip
    fallen = np.maximum.accumulate(np.maximum(evidence, 0.0)) - evidence
    alarm = np.flatnonzero(fallen > alarm_px * 0.5 * mu)
    alarm = alarm[alarm > reached[0]]  # the shaft was there up to ``reached``
    k = int(np.argmax(evidence[:alarm[0] if len(alarm) else len(t)]))
    if crossing_px and t[k] - t_tip < crossing_max_px:
        near = side[:k + crossing_px + 1]
        if (near < 0).any() and (near > 0).any():
            return t_tip
    return float(t[k]) if t[k] - t_tip >= min_extend_px else t_tip


def _two_walls(section: np.ndarray, step_px: float, *, min_sep_px: float = 2.0, ratio: float = 0.5,
               dip: float = 0.6) -> bool:
    """Whether a shaft's cross-section holds two comparably bright walls: beside its highest peak,
    another at least ``min_sep_px`` away and ``ratio`` of it high, with a dip between them under
    ``dip`` of the lower one (heights above the section's median)."""
    ex = section - np.median(section)
    peak = (ex[1:-1] > ex[:-2]) & (ex[1:-1] >= ex[2:]) & (ex[1:-1] > 0)
    idx = np.flatnonzero(peak) + 1
    if len(idx) < 2:
        return False
    order = idx[np.argsort(ex[idx])[::-1]]
    first = order[0]
    apart = order[np.abs(order - first) * step_px >= min_sep_px]
    if len(apart) == 0 or ex[apart[0]] < ratio * ex[first]:
        return False
    lo, hi = sorted((first, apart[0]))
    return bool(ex[lo:hi + 1].min() <= dip * ex[apart[0]])


def two_wall_direction(image_f: np.ndarray, p0: np.ndarray, d: np.ndarray, t0: float, t1: float, *,
                       half_width_px: float = 10.0, step_px: float = 8.0, chunk: int = 8,
                       max_shift_px: float = 4.0) -> tuple[np.ndarray, np.ndarray] | None:
    """Direction of a shaft whose two walls echo alike, or None when its cross-section is not so.

    A scanner shows the near wall of a needle brightest (the far one lies in
    its shadow), and :func:`refine_line_on_image` fits the centroids of the
    brightest echo. Simulators of single scattering (PyMUST, Field II with a
    tube) draw both walls alike; the centroid then hops between them from one
    piece of shaft to the next and the fitted angle tilts by degrees. Here
    the profiles across the line (each the mean of ``chunk`` 1-px steps, every
    ``step_px`` between ``t0`` and ``t1``) are aligned to the shaft's own
    median cross-section by normalised cross-correlation, so both walls move
    as one, and a line is fitted through the shifts. Returns (point, unit
    direction), or None when the median cross-section does not hold two
    comparable walls, when the shaft is too short, or when the fit is not a line.
    """
    if t1 - t0 < 4 * step_px:
        return None
    ds = 0.25
    m = int(round(max_shift_px / ds))
    s = np.arange(-half_width_px - max_shift_px, half_width_px + max_shift_px + 1e-6, ds)
    t = np.arange(t0, t1, step_px)
    tt = np.arange(t0, t0 + len(t) * step_px, step_px / chunk)
    prof = sample_along(image_f, p0, d, tt, s).reshape(len(t), chunk, len(s)).mean(axis=1)
    t = t + 0.5 * step_px * (chunk - 1) / chunk
    prof -= prof.mean(axis=1, keepdims=True)
    core = slice(m, len(s) - m)
    section = np.median(prof, axis=0)[core]  # the cross-section as the segmented line has it
    if not _two_walls(section, ds):
        return None
    shifts = np.arange(-m, m + 1)
    rows = np.arange(len(t))
    win = np.lib.stride_tricks.sliding_window_view(prof, len(s) - 2 * m, axis=1)  # (chunks, shifts, samples)
    win = win - win.mean(axis=2, keepdims=True)
    win_norm = np.linalg.norm(win, axis=2)
    off = np.zeros(len(t))
    for it in range(2):  # the template from the profiles as the line has them, then as aligned
        if it:
            idx = np.clip(np.arange(len(s))[None, :] + np.round(off / ds).astype(int)[:, None], 0, len(s) - 1)
            section = np.median(np.take_along_axis(prof, idx, axis=1), axis=0)[core]
        section = section - section.mean()
        cc = (win @ section) / (win_norm * np.linalg.norm(section) + 1e-9)
        k = np.clip(np.argmax(cc, axis=1), 1, len(shifts) - 2)
        a, b, c = cc[rows, k - 1], cc[rows, k], cc[rows, k + 1]
        den = a - 2 * b + c
        frac = np.where(den < -1e-9, 0.5 * (a - c) / np.where(den < -1e-9, den, -1.0), 0.0)
        off = (shifts[k] + np.clip(frac, -0.5, 0.5)) * ds
    a0, slope = _fit_offset_line(t, off, np.clip(cc[rows, k], 0, None) ** 2)
    if abs(slope) > 0.1:
        return None
    n = np.array([-d[1], d[0]])
    d_new = d + slope * n
    return p0 + a0 * n, d_new / np.hypot(*d_new)


def direction_band_half_width_px(d: np.ndarray) -> float:
    """Half-width (image px) of the profiles that give a shaft's direction, by its slope.

    10 px for a shaft at 35 deg from the horizontal or flatter, 8 px at 45 deg
    or steeper, linear between (``d`` is its unit direction in image px).
    The band must hold the shaft's bright wall along its whole length while
    the segmented line is still a degree or two off: at one end of a long
    shaft the wall is then up to 10 px from the line, and a band that loses
    it pulls the fit back toward the segmentation's angle. On the tuning
    scenes and the foreign frames (model card) wider bands did this better
    for flatter needles and tilted steep ones, whose faint shaft sits in
    bright tissue. The ramp keeps a needle near 40 deg from switching bands
    from frame to frame.
    """
    theta = np.degrees(np.arctan2(abs(float(d[1])), abs(float(d[0]))))
    return float(10.0 - 2.0 * np.clip((theta - 35.0) / 10.0, 0.0, 1.0))


def needle_to_image(cand: NeedleCandidate, scale: Scale, image_f: np.ndarray | None, *,
                    refine: bool | str = True, tip_refine: bool = True, line_step_px: float = 8.0,
                    line_chunk: int = 8, tip_method: str = "fall_off") -> tuple[np.ndarray, np.ndarray, float]:
    """Map a working-resolution needle to image pixels and refine it on the image.

    ``image_f`` is the (cropped) image as float32, in the pixels of the
    working grid's scale *without* the crop offset (``scale`` with ox=oy=0 maps
    into it); the offset is added at the end. ``refine``:

    - ``"direction"`` (hybrid): the direction comes from the image (a line
      through the centroids of perpendicular profiles at full resolution, or
      for a shaft whose two walls echo alike :func:`two_wall_direction`), the
      position across the line from the candidate. The brightest echo is the
      shaft's upper wall, parallel to the axis but half a diameter off it, so
      the image gives the angle and the segmentation its centreline.
    - ``True`` / ``"full"``: direction and position from the image (the line
      moves onto the echo's centroid).
    - ``False``: no refinement.

    With ``tip_refine`` the tip moves along the line to where the echo falls
    off (``tip_method="fall_off"``: :func:`tip_fall_off`; ``"shaft_level"``:
    :func:`tip_from_intensity`, the classical baseline's). Profiles across the
    line are taken every ``line_step_px``, each the mean of ``line_chunk``
    1-px steps. Returns (tail_px, tip_px, contrast).
    """
    inner = Scale(scale.sx, scale.sy)
    tip0 = inner.points(cand.point + cand.t_tip * cand.direction)
    tail0 = inner.points(cand.point + cand.t_tail * cand.direction)
    d = tip0 - tail0
    length = float(np.hypot(*d))
    d = d / max(length, 1e-9)
    p = tail0
    contrast = 0.0
    if refine and image_f is not None and length > 8:
        # stay off the last few pixels before the tip: the bevel is not part of the straight shaft
        if refine == "direction":
            hw = direction_band_half_width_px(d)
        else:
            hw = max(4.0, 1.5 * max(scale.sx, scale.sy) + 2.0)
        p_r, d_r, contrast = refine_line_on_image(image_f, p, d, 0.0, length - 4.0, half_width_px=hw,
                                                  step_px=line_step_px, chunk=line_chunk)
        walls = two_wall_direction(image_f, p, d, 0.0, length - 4.0, half_width_px=hw, step_px=line_step_px,
                                   chunk=line_chunk) if refine == "direction" else None
        if walls is not None:
            d_r = walls[1]
        if refine == "direction":
            p = 0.5 * (tail0 + tip0)  # pivot about the middle of the segmented shaft
            d = d_r
        else:
            p, d = p_r, d_r
        # re-project the ends onto the refined line
        t_tail = float((tail0 - p) @ d)
        t_tip = float((tip0 - p) @ d)
    else:
        t_tail, t_tip = 0.0, length
    if tip_refine and image_f is not None:
        if tip_method == "shaft_level":
            t_tip = tip_from_intensity(image_f, p, d, t_tip, search_px=tip_search_px(scale))
        else:
            t_tip = tip_at_fall_off(image_f, p, d, t_tip, scale)
    off = np.array([scale.ox, scale.oy])
    return p + t_tail * d + off, p + t_tip * d + off, contrast


# ----------------------------------------------------------------------------- surfaces

def without_needle(prob: np.ndarray, cand: NeedleCandidate, *, half_width_px: float = 2.5,
                   keep_tip_px: float = 4.0) -> np.ndarray:
    """A copy of a surface-probability map with the needle's shaft cleared (working pixels).

    Where a bright steep shaft crosses columns that hold no bone, it is the
    brightest ridge there, and the bone surface took it: 12 % of the needle
    frames of the tuning scenes had the bone line running up along the
    needle. A pixel of the shaft is not bone. The last ``keep_tip_px`` before
    the tip are kept: a tip resting on the bone must not cut a gap in the
    surface right where the path meets it.
    """
    out = prob.copy()
    t_end = cand.t_tip - keep_tip_px
    if t_end <= cand.t_tail:
        return out
    mask = np.zeros(prob.shape, np.uint8)
    one = 1 << 4  # sub-pixel line ends (4 fractional bits)
    a = np.round((cand.point + cand.t_tail * cand.direction) * one).astype(int)
    b = np.round((cand.point + t_end * cand.direction) * one).astype(int)
    cv2.line(mask, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 1, int(round(2 * half_width_px + 1)),
             cv2.LINE_8, shift=4)
    out[mask > 0] = 0.0
    return out


def surface_from_prob(prob: np.ndarray, *, threshold: float = 0.5, min_run: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per-column surface depth from a surface-ridge probability map.

    In each column whose maximum exceeds ``threshold``, the depth is the
    vertex of a parabola through the log-probabilities of the maximum and its
    two neighbours (exact for a Gaussian ridge, which is what the model is
    trained to output). Runs of surface columns shorter than ``min_run`` are
    dropped as speckle.

    Returns
    -------
    xs, ys : float arrays of the surface's columns and depths (working pixels),
        ordered by x.
    """
    h, w = prob.shape
    cols = np.arange(w)
    peak_y = cv2.reduceArgMax(prob, 0).ravel()  # per column; numpy's strided argmax is 1.5x slower
    ok = prob[peak_y, cols] > threshold
    lp = np.log(np.clip(prob[np.clip(peak_y[None, :] + np.array([-1, 0, 1])[:, None], 0, h - 1), cols], 1e-6, 1.0))
    den = lp[0] - 2 * lp[1] + lp[2]
    delta = np.where(den < -1e-9, 0.5 * (lp[0] - lp[2]) / np.where(den < -1e-9, den, -1.0), 0.0)
    ys = peak_y + np.clip(delta, -0.5, 0.5)
    ok = _drop_short_runs(ok, min_run)
    xs = np.flatnonzero(ok).astype(float)
    return xs, ys[ok].astype(float)


def _drop_short_runs(ok: np.ndarray, min_run: int) -> np.ndarray:
    """Clear runs of True shorter than ``min_run`` in a 1-D boolean array."""
    if min_run <= 1 or not ok.any():
        return ok
    padded = np.concatenate([[False], ok, [False]]).astype(np.int8)
    edges = np.diff(padded)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = (ends - starts) >= min_run
    mark = np.zeros(len(ok) + 1, np.int32)
    np.add.at(mark, starts[keep], 1)
    np.add.at(mark, ends[keep], -1)
    return np.cumsum(mark)[:-1] > 0


def band_top_above(band_prob: np.ndarray, xs: np.ndarray, bone_ys: np.ndarray, *, threshold: float = 0.5,
                   max_gap: int = 2, max_rows: int | None = None) -> np.ndarray:
    """Top of the band (e.g. cartilage) lying on a surface, per surface column.

    For each column ``xs`` with the surface at ``bone_ys`` (working pixels),
    walks up from the surface while ``band_prob > threshold`` (allowing a gap
    of ``max_gap`` rows just above the surface) and returns the sub-pixel top
    edge, NaN where no band sits on the surface. The band is searched up to
    ``max_rows`` rows above the surface (a quarter of the map's height if None).
    """
    h, w = band_prob.shape
    if len(xs) == 0:
        return np.zeros(0)
    xi = np.clip(np.round(xs).astype(int), 0, w - 1)
    yb = np.clip(np.round(bone_ys).astype(int), 0, h - 1)
    h_up = max_rows or max(8, h // 4)
    up = np.arange(0, h_up)
    rows = yb[:, None] - up[None, :]                        # (n, h_up): rows going up from the surface
    # one flat gather (a 2-D fancy index is several times slower), each column's rows contiguous so the
    # searches below run along the last axis; above the map reads 0
    vals = band_prob.ravel()[np.maximum(rows, 0) * w + xi[:, None]]
    vals[rows < 0] = 0.0
    on = vals > threshold
    # first row (going up) that is inside the band, within max_gap of the surface
    first_on = np.argmax(on, axis=1)
    has = on.any(axis=1) & (first_on <= max_gap)
    # after entering the band, the first row that leaves it
    leave = (up[None, :] > first_on[:, None]) & ~on
    k = np.where(leave.any(axis=1), np.argmax(leave, axis=1), h_up)
    # sub-pixel: interpolate the threshold crossing between rows k-1 (in) and k (out)
    kk = np.clip(k, 1, h_up - 1)
    col = np.arange(len(xi))
    v_in = vals[col, kk - 1]
    v_out = np.where(k < h_up, vals[col, kk], 0.0)
    frac = np.clip((v_in - threshold) / np.maximum(v_in - v_out, 1e-6), 0, 1)
    top = bone_ys - (kk - 1 + frac)
    return np.where(has & (k > first_on + 1), top, np.nan)


def smooth_polyline_y(xs: np.ndarray, ys: np.ndarray, *, ksize: int = 9, max_jump_px: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Drop points of an x-ordered surface that jump off a running median of their neighbours.

    The median runs over ``ksize`` consecutive points (not columns): a single
    column caught on a bright speckle or tissue layer is removed, the surface
    itself, however curved, is kept.
    """
    if len(ys) < 3:
        return xs, ys
    from scipy.ndimage import median_filter

    med = median_filter(np.asarray(ys, dtype=float), size=min(ksize, len(ys) | 1), mode="nearest")
    keep = np.abs(ys - med) <= max_jump_px
    return xs[keep], ys[keep]


def clean_band_top(xs: np.ndarray, bone_ys: np.ndarray, top_ys: np.ndarray, *, ksize: int = 9,
                   max_dev_px: float = 2.0, min_thick_px: float = 1.0, min_run: int = 5) -> np.ndarray:
    """Keep only the points of a band's top edge that look like one band over the surface.

    Cartilage is a band of slowly changing thickness, so a column whose
    thickness (``bone_ys - top_ys``, pixels) is under ``min_thick_px`` or off
    the running median of its ``ksize`` neighbours by more than
    ``max(max_dev_px, 35 %)`` is a speckle or a tissue layer, not cartilage;
    pieces shorter than ``min_run`` points (single gaps bridged) are dropped.

    Returns ``top_ys`` with the rejected points set to NaN (same length as ``xs``).
    """
    top = np.array(top_ys, dtype=float)
    thick = np.asarray(bone_ys, dtype=float) - top
    ok = np.isfinite(thick) & (thick >= min_thick_px)
    # run lengths bridge single missing points: one bad column does not cut a band in two
    bridged = ok.copy()
    bridged[1:-1] |= ok[:-2] & ok[2:]
    ok &= _drop_short_runs(bridged, min_run)
    if ok.sum() >= 3:
        from scipy.ndimage import median_filter

        idx = np.flatnonzero(ok)
        med = median_filter(thick[idx], size=min(ksize, len(idx) | 1), mode="nearest")
        ok[idx[np.abs(thick[idx] - med) > np.maximum(max_dev_px, 0.35 * med)]] = False
    top[~ok] = np.nan
    return top


def band_echo_ratio(image: np.ndarray, top_px: np.ndarray, bone_px: np.ndarray) -> float:
    """How dark a band is against the tissue above it: its darkest layer over the grey above.

    ``top_px`` (N, 2) is the band's top edge and ``bone_px`` (M, 2, x-ordered)
    the surface it lies on, both in the pixels of ``image``. The band is
    sampled at 9 depths from 10 % to 90 % of its height in every top column,
    the strip above it (the same height, directly over the top) likewise. The
    ratio is the darkest of the band's layers (each the median along the band)
    over the median of the strip's column means. Articular cartilage is
    anechoic, so some layer of it is dark even where a thin band's edges are
    blurred by the bright top and bone echoes: the two knee scans 0.38-0.44. A
    layer of soft tissue over a bone without cartilage keeps the tissue's grey.
    NaN when there is nothing to compare.
    """
    top = np.asarray(top_px, dtype=float).reshape(-1, 2)
    bone = np.asarray(bone_px, dtype=float).reshape(-1, 2)
    if len(top) == 0 or len(bone) < 2:
        return float("nan")
    xs, yt = top[:, 0], top[:, 1]
    height = np.interp(xs, bone[:, 0], bone[:, 1]) - yt
    ok = height > 1.0
    if not ok.any():
        return float("nan")
    xs, yt, height = xs[ok], yt[ok], height[ok]
    frac = np.linspace(0.1, 0.9, 9)[:, None]
    mx = np.broadcast_to(xs, (len(frac), len(xs))).astype(np.float32)
    inside = yt + frac * height
    above = yt - height + frac * height
    # one remap for both strips; rows above the image repeat its top row
    vals = cv2.remap(image, np.concatenate([mx, mx], axis=1),
                     np.concatenate([inside, above], axis=1).astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    n = len(xs)
    darkest_layer = float(np.median(vals[:, :n], axis=1).min())
    return darkest_layer / max(float(np.median(vals[:, n:].mean(axis=0))), 1.0)


def surfaces_to_image(xs: np.ndarray, bone_ys: np.ndarray, top_ys: np.ndarray | None,
                      scale: Scale) -> tuple[np.ndarray, np.ndarray | None]:
    """Bone (and optional band top) from working pixels to image pixels, (N, 2) each."""
    bone = scale.points(np.stack([xs, bone_ys], axis=1)) if len(xs) else np.zeros((0, 2))
    top = None
    if top_ys is not None and len(xs):
        ok = np.isfinite(top_ys)
        top = scale.points(np.stack([xs[ok], top_ys[ok]], axis=1))
    return bone, top
