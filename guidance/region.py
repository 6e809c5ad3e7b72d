"""The ultrasound imaging region inside a grabbed scanner screen, and its depth scale.

A frame grabber sees the scanner's whole screen: the ultrasound image plus
black background, text, logos and a depth ruler. :func:`find_imaging_region`
finds the image in one frame (the one large block of content; chrome comes in
small separate pieces); :class:`RegionEstimator` does better over several
frames (live pixels change, chrome does not). :class:`RegionStage` puts the
region on each result, a user override winning. All coordinates are pixels of
the grabbed frame.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from .errors import InputError
from .scene import SceneWatch
from .types import FrameResult, ImagingRegion, Spacing

_BLOCK_PX = 8          # content is judged in blocks of this size
_MIN_SIDE_PX = 64      # pieces narrower than this (text, logos, ruler ticks) are chrome
_NOISE_LEVELS = 3      # grey levels above the background that still count as background


def _background_level(image_u8: np.ndarray) -> int:
    """The most common grey level: the screen's background."""
    hist = cv2.calcHist([image_u8], [0], None, [256], [0, 256]).ravel()
    return int(np.argmax(hist))


def _content_mask(image_u8: np.ndarray) -> np.ndarray:
    """255 where a pixel differs from the flat background (darker or brighter), else 0."""
    level = _background_level(image_u8)
    flat = cv2.inRange(image_u8, max(0, level - _NOISE_LEVELS), min(255, level + _NOISE_LEVELS))
    return cv2.bitwise_not(flat)


def _largest_piece(mask_u8: np.ndarray, min_side: int,
                   score: np.ndarray | None = None) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the best connected piece of ``mask_u8`` after removing pieces thinner than ``min_side``.

    The best piece is the largest, or, given ``score`` (same shape), the one
    holding the most of it.
    """
    k = max(1, int(min_side))
    opened = cv2.morphologyEx(mask_u8, cv2.MORPH_OPEN, np.ones((k, k), np.uint8)) if k > 1 else mask_u8
    n, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=4)
    if n <= 1:
        return None
    values = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    if score is not None:
        held = np.bincount(labels.ravel(), weights=score.ravel().astype(np.float64), minlength=n)[1:]
        if held.max() > 0:
            values = held
    best = 1 + int(np.argmax(values))
    x, y, w, h = (int(v) for v in stats[best, :4])
    return x, y, w, h


def _refine(mask_u8: np.ndarray, box_px: tuple[int, int, int, int], margin_px: int,
            max_gap_px: int = 6, reach_px: int = 48) -> ImagingRegion:
    """Move each edge of a coarse box to where the image's content ends.

    From one margin inside each edge, walk outward over rows (columns) that
    hold content, across gaps of up to ``max_gap_px`` empty ones (dark deep
    tissue), at most ``reach_px`` beyond the box (its blocky edges fall short
    where deep tissue is dark). Chrome further than the gap away (a logo
    beside the image) is not reached.
    """
    height, width = mask_u8.shape
    x, y, w, h = box_px
    x0, y0, x1, y1 = x, y, min(width, x + w), min(height, y + h)
    if x1 - x0 < 2 * margin_px + 2 or y1 - y0 < 2 * margin_px + 2:
        return ImagingRegion(x0, y0, max(1, x1 - x0), max(1, y1 - y0))
    # Share of content pixels in each column (row) across the box: text and labels beside the
    # image fill a small share, image columns a large one. Deep tissue at the bottom may be
    # nearly black, so the bottom edge only asks for a little content.
    col_share = mask_u8[y0 + margin_px:y1 - margin_px, :].mean(axis=0) / 255.0
    row_share = mask_u8[:, x0 + margin_px:x1 - margin_px].mean(axis=1) / 255.0
    col_ref = float(np.median(col_share[x0 + margin_px:x1 - margin_px]))
    row_ref = float(np.median(row_share[y0 + margin_px:y1 - margin_px]))
    cols = col_share >= max(0.3 * col_ref, 1e-6)
    rows_strict = row_share >= max(0.3 * row_ref, 1e-6)
    rows_faint = row_share >= min(0.02, 0.3 * row_ref) + 1e-6
    left = _walk(cols, x0 + margin_px, -1, max(0, x0 - reach_px), max_gap_px)
    right = _walk(cols, x1 - 1 - margin_px, +1, min(width - 1, x1 - 1 + reach_px), max_gap_px)
    top = _walk(rows_strict, y0 + margin_px, -1, max(0, y0 - reach_px), max_gap_px)
    bottom = _walk(rows_faint, y1 - 1 - margin_px, +1, min(height - 1, y1 - 1 + reach_px), max_gap_px)
    return ImagingRegion(left, top, right - left + 1, bottom - top + 1)


def _down_to_bottom(region: ImagingRegion, height_px: int, width_px: int) -> ImagingRegion:
    """A region filling the frame's width from its top edge is the whole frame.

    Such a frame is the ultrasound image itself (a PLUS, DICOM or simulated
    feed, no scanner screen around it); rows below where content seems to end
    are deep tissue in the bone's shadow, nearly black, not chrome.
    """
    if region.x_px == 0 and region.y_px == 0 and region.width_px == width_px:
        return ImagingRegion(0, 0, width_px, height_px)
    return region


def _walk(has: np.ndarray, start: int, step: int, limit: int, max_gap: int) -> int:
    """Last index with content reached from ``start`` toward ``limit`` without a gap longer than ``max_gap``."""
    last, gap, i = start, 0, start
    while i != limit:  # at most a few dozen steps along a profile, not over pixels
        i += step
        if has[i]:
            last, gap = i, 0
        else:
            gap += 1
            if gap > max_gap:
                break
    return last


def _coarse_box(mask_u8: np.ndarray, block_px: int,
                score: np.ndarray | None = None) -> tuple[int, int, int, int] | None:
    """Best block of content in pixels, judged on ``block_px`` blocks (any content in a block counts).

    Without ``score`` the largest; with it (a float map of any size, e.g. where
    pixels change) the one holding the most of it.
    """
    height, width = mask_u8.shape
    bw, bh = max(1, width // block_px), max(1, height // block_px)
    blocks = (cv2.resize(mask_u8, (bw, bh), interpolation=cv2.INTER_AREA) > 0).astype(np.uint8) * 255
    if score is not None:
        score = cv2.resize(score.astype(np.float32), (bw, bh), interpolation=cv2.INTER_AREA)
    piece = _largest_piece(blocks, _MIN_SIDE_PX // block_px, score)
    if piece is None:
        return None
    sx, sy = width / bw, height / bh
    x, y, w, h = piece
    return int(x * sx), int(y * sy), int(np.ceil(w * sx)), int(np.ceil(h * sy))


def _union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return x0, y0, x1 - x0, y1 - y0


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def find_imaging_region(image_u8: np.ndarray) -> ImagingRegion:
    """Find the ultrasound image in one grabbed frame.

    Parameters
    ----------
    image_u8 : (H, W) uint8 array
        The grabbed frame, grey.

    Returns
    -------
    ImagingRegion
        Bounding box of the largest connected block of content in frame
        pixels; the whole frame when nothing stands out (a frame that is all
        ultrasound, or all background).
    """
    mask = _content_mask(image_u8)
    box = _coarse_box(mask, _BLOCK_PX)
    if box is None:
        return ImagingRegion.full(image_u8)
    return _down_to_bottom(_refine(mask, box, 2 * _BLOCK_PX).clip_to(*image_u8.shape), *image_u8.shape)


class RegionEstimator:
    """Refines the imaging region over frames: live pixels change, chrome does not.

    Each :meth:`update` compares the frame (at a quarter of its size) with
    the previous one and keeps a decaying map of where pixels change. When
    enough of the frame is changing, the region is the largest changing
    block, tightened to the frame's content; otherwise (a frozen image, the
    first frame) the single-frame estimate is used.

    Parameters
    ----------
    decay : float
        Weight kept by the change map at each update (0.9: it forgets over
        about ten updates, so a change of depth or layout is followed).
    """

    _SCALE = 4

    def __init__(self, decay: float = 0.9, change_levels: int = 2) -> None:
        self.decay = float(decay)
        self.change_levels = int(change_levels)
        self.reset()

    def reset(self) -> None:
        self._prev: np.ndarray | None = None
        self._activity: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None
        self.region: ImagingRegion | None = None
        self.updates = 0

    @property
    def frame_shape(self) -> tuple[int, int] | None:
        """(rows, cols) of the frames seen so far; a new shape starts afresh."""
        return self._shape

    def update(self, image_u8: np.ndarray) -> ImagingRegion:
        """Take one more frame into account and return the current region estimate."""
        if self._shape != image_u8.shape:
            self.reset()
            self._shape = image_u8.shape
        height, width = image_u8.shape
        small = cv2.resize(image_u8, (max(1, width // self._SCALE), max(1, height // self._SCALE)),
                           interpolation=cv2.INTER_AREA)
        if self._prev is not None:
            changed = (cv2.absdiff(small, self._prev) > self.change_levels).astype(np.float32)
            self._activity = changed if self._activity is None else self.decay * self._activity + changed
        self._prev = small
        self.updates += 1
        mask = _content_mask(image_u8)
        live = None
        if self._activity is not None:
            live = (self._activity > 0.5).astype(np.uint8) * 255
            if np.count_nonzero(live) < 0.01 * live.size:
                live = None  # a frozen image: nothing to learn from changes
        if live is None:
            box = _coarse_box(mask, _BLOCK_PX)
        else:
            # Of the pieces of content, the one where pixels change (a static panel can be larger);
            # grown by the changing area, since dark deep tissue changes without standing out.
            box = _coarse_box(mask, _BLOCK_PX, score=live)
            changing = _largest_piece(live, _MIN_SIDE_PX // self._SCALE)
            if changing is not None:
                changing = tuple(v * self._SCALE for v in changing)
                box = changing if box is None else _union(box, changing) if _overlap(box, changing) else box
            # Changing blocks straddle the image's edges: shrink them by a block so that the exact
            # edges still come from the frame's own content wherever it has some.
            grown = cv2.resize(live, (width, height), interpolation=cv2.INTER_NEAREST)
            grown = cv2.erode(grown, np.ones((2 * self._SCALE + 1, 2 * self._SCALE + 1), np.uint8))
            mask = cv2.bitwise_or(mask, grown)
        self.region = (ImagingRegion.full(image_u8) if box is None
                       else _down_to_bottom(_refine(mask, box, 2 * _BLOCK_PX).clip_to(height, width), height, width))
        return self.region


class RegionStage:
    """Pipeline stage: sets ``result.region`` (and optionally the pixel spacing).

    Parameters
    ----------
    override : ImagingRegion, optional
        The user's region: always wins over the automatic one.
    spacing_mm : float or (sx, sy), optional
        Pixel spacing to put on every frame, overriding the source's.
    every_n_frames : int
        Re-estimate the region on every n-th frame (it changes rarely), and at
        once, from that frame alone, on a frame that shows another scene
        (:mod:`guidance.scene`: another scanner's screen, a folder of unrelated
        frames), whose region the last scene's says nothing about.
    read_scale : bool
        When the frame has no spacing, read it from the depth ruler
        (:func:`read_depth_scale`). Off by default: a misread ruler gives
        wrong millimetres, which is worse than none.
    """

    def __init__(self, name: str = "region", *, override: ImagingRegion | None = None, spacing_mm=None,
                 every_n_frames: int = 5, read_scale: bool = False) -> None:
        self.name = name
        self.override = override
        if spacing_mm is not None and not isinstance(spacing_mm, (tuple, list)):
            spacing_mm = (float(spacing_mm), float(spacing_mm))
        self.spacing_mm: Spacing | None = None if spacing_mm is None else (float(spacing_mm[0]), float(spacing_mm[1]))
        self.every_n_frames = max(1, int(every_n_frames))
        self.read_scale = read_scale
        self.estimator = RegionEstimator()
        self._count = 0
        self._scale_for: tuple[ImagingRegion | None, float | None] = (None, None)
        self.scene = SceneWatch()  # a frame of another scene: its region is estimated afresh

    @property
    def scene_changes(self) -> int:
        """Frames whose region was estimated afresh on a new scene (for tests and benchmarks)."""
        return self.scene.changes

    def set_override(self, region: ImagingRegion | None) -> None:
        self.override = region

    def __call__(self, result: FrameResult) -> FrameResult:
        frame = result.frame
        height, width = frame.image.shape
        if self.override is not None:
            region = _user_region_in_frame(self.override, height, width)
        elif self.scene.changed(frame.image):
            self.estimator.reset()
            region = self.estimator.update(frame.image)
        elif (self._count % self.every_n_frames == 0 or self.estimator.region is None
              or self.estimator.frame_shape != frame.image.shape):
            region = self.estimator.update(frame.image)
        else:
            region = self.estimator.region
        self._count += 1
        spacing = self.spacing_mm
        if spacing is None and frame.spacing_mm is None and self.read_scale:
            if self._scale_for[0] != region:
                self._scale_for = (region, read_depth_scale(frame.image, region))
            if self._scale_for[1] is not None:
                spacing = (self._scale_for[1], self._scale_for[1])
        if spacing is not None and spacing != frame.spacing_mm:
            frame = replace(frame, spacing_mm=spacing)
            return replace(result, frame=frame, region=region)
        return replace(result, region=region)


def _user_region_in_frame(region: ImagingRegion, height_px: int, width_px: int) -> ImagingRegion:
    """The user's region clipped to the frame; refused when it misses the frame entirely.

    Clipping such a region would leave a 1-pixel sliver in a corner: detection
    would silently find nothing, frame after frame, with no hint why.
    """
    if (region.x_px >= width_px or region.y_px >= height_px
            or region.x_px + region.width_px <= 0 or region.y_px + region.height_px <= 0):
        raise InputError(f"imaging region {region.x_px},{region.y_px},{region.width_px},{region.height_px}: "
                         f"outside the {width_px}x{height_px} frame")
    return region.clip_to(height_px, width_px)


def read_depth_scale(image: np.ndarray, region: ImagingRegion) -> float | None:
    """Millimetres per pixel from the scanner's depth ruler, or None when no ruler is found.

    The ruler is a column of small bright ticks beside the image, evenly
    spaced (some may be too faint to see), with larger ticks at whole
    centimetres. The scale is 10 mm over the distance between consecutive
    large ticks. Without large ticks the tick spacing in millimetres is
    unknown and None is returned rather than a guess.

    Parameters
    ----------
    image : (H, W) uint8 array
        The grabbed frame.
    region : ImagingRegion
        The imaging region (the ruler lies outside it, beside it).
    """
    img = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    bright = (img > 40).astype(np.uint8)
    rs, cs = region.slices
    bright[rs, cs] = 0
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(bright, connectivity=8)
    if n <= 1:
        return None
    # Brightness mass of each blob: a large tick has about twice a small one's, however it is anti-aliased.
    mass = np.bincount(labels.ravel(), weights=img.ravel().astype(np.float64), minlength=n)[1:]
    w, h = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]
    cx, cy = centroids[1:, 0], centroids[1:, 1]
    top, bottom = region.y_px, region.y_px + region.height_px
    is_tick = (w <= 14) & (h <= 8) & (h <= 2 * w + 1) & (mass >= 255) & (cy >= top - 12) & (cy <= bottom + 12)
    idx = np.flatnonzero(is_tick)
    best, best_count = None, 0
    for column in _columns(cx[idx]):
        ticks = idx[column]
        ticks = ticks[np.argsort(cy[ticks])]
        scale = _ruler_scale(cy[ticks], mass[ticks], region.height_px)
        if scale is not None and ticks.size > best_count:
            best, best_count = scale, ticks.size
    return best


def _ruler_scale(ys: np.ndarray, mass: np.ndarray, region_height_px: int) -> float | None:
    """mm per pixel from tick positions ``ys`` (sorted) and their brightness ``mass``; None if not a ruler."""
    if ys.size < 5:
        return None
    gaps = np.diff(ys)
    if np.any(gaps < 4):
        return None
    base = float(gaps.min())
    step = float(np.median(gaps[gaps <= 1.5 * base]))
    k = np.round((ys - ys[0]) / step).astype(int)
    if np.any(np.diff(k) < 1) or np.any(np.abs(ys - ys[0] - k * step) > 0.1 * step + 1.0):
        return None  # not on one even grid: text, not a ruler
    if ys.size < 0.6 * (k[-1] + 1):
        return None  # too many ticks missing to trust the grid
    span = ys[-1] - ys[0]
    if span < 0.5 * region_height_px or span > 1.15 * region_height_px:
        return None
    step, _ = np.polyfit(k, ys, 1)  # least squares over every tick
    lo, hi = float(mass.min()), float(mass.max())
    if hi < 1.6 * lo:
        return None  # no large ticks: the millimetres per tick are unknown
    major_k = k[mass > 0.5 * (lo + hi)]
    every = np.diff(major_k)
    if major_k.size < 2 or np.any(every != every[0]) or not 2 <= every[0] <= 10:
        return None
    return float(10.0 / (every[0] * step))


def _columns(x: np.ndarray, tol_px: float = 3.0) -> list[np.ndarray]:
    """Group indices of ``x`` into columns whose members lie within ``tol_px`` of each other."""
    if x.size == 0:
        return []
    order = np.argsort(x)
    breaks = np.flatnonzero(np.diff(x[order]) > tol_px) + 1
    return np.split(order, breaks)
