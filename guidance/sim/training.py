"""Labelled training frames with strong domain randomisation.

:func:`make_sample` draws one random frame of a random scenario with every
appearance switch on: probe (frequency, focus, PSF size), dynamic range, grey
map, gain, blur, noise, and in a share of samples the imaging region placed
inside a larger scanner screen (black border, text, depth ruler) and scaled
anisotropically (other scanners' scan conversion). Truth and masks are moved
with the image. The detector trained on this must work on real scans from
other machines and on other simulators: variety matters more than beauty.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from .needle import NEEDLE_STYLES
from .screen import draw_overlays, draw_screen
from .simulator import SimConfig, SimFrame, Simulator

TRAINING_SCENARIOS = ("insertion", "steep", "out_of_plane", "no_needle")
_SCENARIO_P = (0.38, 0.27, 0.2, 0.15)
# make_sample's add_needle: (image, truth, spacing_mm, rng) -> the needle's contract fields or None
AddNeedle = Callable[[np.ndarray, dict, tuple[float, float], np.random.Generator], "dict | None"]


def make_sample(seed: int, size_px: tuple[int, int] = (256, 256), *,
                needle_styles: bool | dict[str, float] = False, distractors: float = 0.0,
                shadowless_bone: float = 0.0, bright_fascias: float = 0.0, scenario: str | None = None,
                add_needle: AddNeedle | None = None) -> SimFrame:
    """One randomised labelled frame, deterministic in ``seed``.

    Parameters
    ----------
    seed : int
    size_px : (width, height) of the output image in pixels.
    needle_styles : when True, 35 % of the needles are made of point scatterers
        (``SimConfig.needle_style="scatter"``) instead of specular walls; a dict
        such as ``{"scatter": 0.25, "walls": 0.3}`` gives each style's share
        (the rest specular). The choice has its own random stream, so every
        other sample, and every sample with False, is the same as before.
    distractors : the share of samples given 1-3 needle-like oblique tissue
        strands (``SimConfig.oblique_strands``), chosen on their own random
        stream like the style.
    shadowless_bone : the share of samples whose bone casts no shadow, the
        tissue above mirrored under it (``SimConfig.shadowless_bone``, as a
        full-wave simulator draws a smooth bone), chosen on its own stream.
    bright_fascias : the share of samples given 1-3 long fasciae as bright as
        the bone with no shadow (``SimConfig.bright_fascias``), on its own stream.
    scenario : draw this scenario (one of ``TRAINING_SCENARIOS``) instead of
        the random one; the random choice is still drawn, so the rest of the
        sample is as it would have been.
    add_needle : draws a needle imaged elsewhere (another simulator's
        frames, ``models/pymust_needles.py``) into the frame before the
        scanner's degradations: called as ``add_needle(image, truth,
        spacing_mm, rng)`` with the frame (uint8, changed in place), its
        truth in pixels (``region_px`` and the target, to keep the needle
        above the bone) and the mm per pixel; returns the needle's contract
        fields in pixels (at least ``tip_px`` and ``shaft_px``) or None when
        it drew none. Use it on a needle-free scenario: the frame's own
        needle is replaced in the truth.

    Returns
    -------
    SimFrame whose ``image`` is (height, width) uint8, ``masks`` "needle",
    "bone", "cartilage" the same size (0/1 uint8), ``truth`` a contract line
    in output pixels (with ``region_px`` [x, y, w, h] of the imaging region),
    and ``tip_px`` the truth tip or None.
    """
    W, H = int(size_px[0]), int(size_px[1])
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x7A1])
    drawn = str(rng.choice(TRAINING_SCENARIOS, p=_SCENARIO_P))
    if scenario is None:
        scenario = drawn
    elif scenario not in TRAINING_SCENARIOS:
        raise ValueError(f"scenario {scenario!r}: one of {TRAINING_SCENARIOS}")
    screen = rng.random() < 0.4
    if screen:
        rw = int(W * rng.uniform(0.5, 0.85))
        rh = int(H * rng.uniform(0.5, 0.85))
        rx = int(rng.integers(0, W - rw + 1))
        ry = int(rng.integers(0, H - rh + 1))
    else:
        rw, rh, rx, ry = W, H, 0, 0
    # Render at an anisotropic scale sometimes (another scanner's scan conversion).
    kx = rng.uniform(0.8, 1.25) if rng.random() < 0.4 else 1.0
    ky = rng.uniform(0.8, 1.25) if rng.random() < 0.4 else 1.0
    sw, sh = max(32, int(round(rw / kx))), max(32, int(round(rh / ky)))
    depth_mm = rng.uniform(20.0, 50.0)
    fps = 15.0
    cfg = SimConfig(width_px=sw, height_px=sh, fps=fps, seed=int(rng.integers(0, 2**31)), scenario=scenario,
                    depth_mm=depth_mm, n_frames=int(rng.integers(30, 90)), randomize=True,
                    drift_mm=rng.uniform(0.2, 2.0), cartilage=bool(rng.random() > 0.15),
                    needle_style=_needle_style(seed, needle_styles),
                    oblique_strands=_variety_count(seed, distractors, 0xD15),
                    shadowless_bone=_variety_count(seed, shadowless_bone, 0x5AD0) > 0,
                    bright_fascias=_variety_count(seed, bright_fascias, 0xFA50))
    overlays = rng.random() < 0.3
    jpeg_quality = int(rng.integers(25, 90)) if rng.random() < 0.3 else None
    sim = Simulator(cfg)
    frame = sim.render(int(rng.integers(0, len(sim))))
    if (sw, sh) == (rw, rh) and not screen:
        frame.truth["region_px"] = [0, 0, W, H]
        if add_needle is not None:
            frame.image = frame.image.copy()
            _add_needle(add_needle, seed, frame.image, frame.masks, frame.truth, frame.spacing_mm)
            frame.tip_px = tuple(frame.truth["needle"]["tip_px"]) if frame.truth["needle"] else None
        frame.image = _degrade(rng, frame.image, (0, 0, W, H), overlays, jpeg_quality)
        return frame

    sx, sy = rw / sw, rh / sh
    img = cv2.resize(frame.image, (rw, rh), interpolation=cv2.INTER_LINEAR)
    masks = {k: cv2.resize(m, (rw, rh), interpolation=cv2.INTER_NEAREST) for k, m in frame.masks.items()}
    if screen:
        canvas = draw_screen(rng, (W, H), (rx, ry, rw, rh), depth_mm)
        canvas[ry:ry + rh, rx:rx + rw] = img
        img = canvas
        full = {}
        for k, m in masks.items():
            z = np.zeros((H, W), np.uint8)
            z[ry:ry + rh, rx:rx + rw] = m
            full[k] = z
        masks = full
    spacing = (frame.spacing_mm[0] / sx, frame.spacing_mm[1] / sy)
    truth = transform_truth(frame.truth, (sx, sy), (rx, ry), spacing)
    truth["region_px"] = [rx, ry, rw, rh]
    if add_needle is not None:
        _add_needle(add_needle, seed, img, masks, truth, spacing)
    img = _degrade(rng, img, (rx, ry, rw, rh), overlays, jpeg_quality)
    tip = tuple(truth["needle"]["tip_px"]) if truth["needle"] else None
    return SimFrame(image=img, truth=truth, masks=masks, tip_px=tip, index=frame.index, t_s=frame.t_s,
                    spacing_mm=spacing)


def _add_needle(add_needle: AddNeedle, seed: int, image: np.ndarray, masks: dict, truth: dict,
                spacing: tuple[float, float]) -> None:
    """Let ``add_needle`` draw its needle (on its own random stream); the truth and mask follow it."""
    needle = add_needle(image, truth, spacing, np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xADD]))
    truth["needle"] = needle
    mask = np.zeros(image.shape[:2], np.uint8)
    if needle is not None:
        p0, p1 = (tuple(int(round(v)) for v in p) for p in (needle["shaft_px"][0], needle["tip_px"]))
        cv2.line(mask, p0, p1, 1, thickness=3)
    masks["needle"] = mask


def _style_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x57E1])


def _needle_style(seed: int, shares: bool | dict[str, float]) -> str:
    """The needle style of sample ``seed`` for ``make_sample``'s ``needle_styles``."""
    if not shares:
        return "specular"
    if shares is True:
        shares = {"scatter": 0.35}
    if sum(shares.values()) > 1.0 or any(k not in NEEDLE_STYLES for k in shares):
        raise ValueError(f"needle style shares {shares}: styles of {NEEDLE_STYLES} summing to at most 1")
    u = _style_rng(seed).random()
    for style, share in shares.items():  # the same draw as before for {"scatter": 0.35}
        if u < share:
            return style
        u -= share
    return "specular"


def _variety_count(seed: int, share: float, stream: int) -> int:
    """0, or 1-3 for ``share`` of the samples: how many of a training variety sample ``seed`` gets.

    Drawn on the variety's own random ``stream``, so that adding one leaves
    every other choice of the sample as it was.
    """
    if share <= 0:
        return 0
    r = np.random.default_rng([int(seed) & 0xFFFFFFFF, stream])
    return int(r.integers(1, 4)) if r.random() < share else 0


def _degrade(rng, image: np.ndarray, region, overlays: bool, jpeg_quality: int | None) -> np.ndarray:
    """Burnt-in overlays and lossy compression, as on frames grabbed from a scanner's video output."""
    if overlays:
        image = image.copy()
        draw_overlays(rng, image, region)
    if jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if ok:
            image = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return image


def _map(p, scale, offset):
    return [round((p[0] + 0.5) * scale[0] - 0.5 + offset[0], 2), round((p[1] + 0.5) * scale[1] - 0.5 + offset[1], 2)]


def transform_truth(truth: dict, scale_xy: tuple[float, float], offset_px: tuple[float, float],
                    spacing_mm: tuple[float, float]) -> dict:
    """A truth line after scaling the image by ``scale_xy`` and pasting it at ``offset_px``.

    Pixel coordinates move; millimetre values and angles read in tissue space
    (distance_mm, approach_deg, thickness) do not; ``angle_deg`` (pixel space)
    is recomputed.
    """
    out = dict(truth)
    n = truth.get("needle")
    if n:
        tip = _map(n["tip_px"], scale_xy, offset_px)
        tail = _map(n["shaft_px"][0], scale_xy, offset_px)
        out["needle"] = dict(n, tip_px=tip, shaft_px=[tail, tip],
                             angle_deg=round(math.degrees(math.atan2(tip[1] - tail[1], tip[0] - tail[0])), 2))
    t = truth.get("target")
    if t:
        out["target"] = dict(t, surface_px=[_map(p, scale_xy, offset_px) for p in t["surface_px"]],
                             bone_px=[_map(p, scale_xy, offset_px) for p in t["bone_px"]])
    tr = truth.get("trajectory")
    if tr:
        out["trajectory"] = dict(tr, intercept_px=_map(tr["intercept_px"], scale_xy, offset_px))
        if out["needle"]:
            a, b = np.array(out["needle"]["tip_px"]), np.array(out["trajectory"]["intercept_px"])
            out["trajectory"]["distance_px"] = round(float(np.hypot(*(b - a))), 2)
    if "sim" in truth and "true_tip_px" in truth["sim"]:
        out["sim"] = dict(truth["sim"], true_tip_px=_map(truth["sim"]["true_tip_px"], scale_xy, offset_px))
    out["spacing_mm"] = [float(spacing_mm[0]), float(spacing_mm[1])]
    return out
