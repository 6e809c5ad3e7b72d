"""Random knee anatomy of the views used for injections, as echo maps.

The scene is built on a "canvas" a little wider than the frame (the probe
drifts over it). Depth runs down the rows, the skin is row 0. From the skin
down: dermis, subcutaneous fat with septa, a fibrillar tendon (quadriceps) or
a striated muscle, a deep fat pad (with optional anechoic joint fluid), the
hypoechoic cartilage band, and the bright rough subchondral bone surface with
its acoustic shadow.

Views (bone profile across the image):

- ``trochlea``: axial suprapatellar view of the femoral trochlea, a V-shaped
  groove with rounded condyles either side (the real ``knee/*.png`` frames).
- ``condyle``: a convex femoral condyle (a dome, like the PLUS bone frames).
- ``suprapatellar``: longitudinal view, a gently sloping, nearly flat femur.
- ``joint_line``: medial or lateral joint line, the femoral condyle and the
  tibial plateau either side of a 3-7 mm joint space holding the bright
  triangular meniscus.

Every layer is a function of the canvas column, so maps are built with
broadcasting and masks with a handful of OpenCV calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .needle import splat
from .noise import level_lines, smooth_curve, smooth_noise

VIEWS = ("trochlea", "condyle", "suprapatellar", "joint_line")
VIEW_P = (0.45, 0.2, 0.35, 0.0)
"""Default view odds; the joint line is drawn only when asked for (and in training)."""


@dataclass
class Anatomy:
    """A static knee scene on the canvas grid (pixels of ``spacing_mm``).

    ``bone_y_px`` and ``cartilage_top_y_px`` hold one row per canvas column,
    NaN where the bone leaves the image. ``echo`` is the diffuse scattering
    amplitude, ``specular`` the coherent reflectors (interfaces), and
    ``transmission`` the two-way amplitude factor reaching each pixel relative
    to soft tissue (bone shadow < 1, enhancement under fluid > 1).
    """

    view: str
    spacing_mm: float
    bone_y_px: np.ndarray
    cartilage_top_y_px: np.ndarray
    cartilage_thickness_mm: np.ndarray
    echo: np.ndarray
    specular: np.ndarray
    transmission: np.ndarray
    fluid: np.ndarray
    bone_mask: np.ndarray
    cartilage_mask: np.ndarray
    soft_tissue: np.ndarray
    """True above the cartilage: where the needle travels and the gain is set."""

    @property
    def surface_y_px(self) -> np.ndarray:
        """The surface a needle aims at, per column: cartilage top, else bone."""
        return np.where(np.isfinite(self.cartilage_top_y_px), self.cartilage_top_y_px, self.bone_y_px)

    @property
    def shape(self) -> tuple[int, int]:
        return self.echo.shape


def deposit_curve(target: np.ndarray, y_px: np.ndarray, amp: np.ndarray) -> None:
    """Add a one-pixel-thin curve ``y_px(x)`` of amplitude ``amp(x)`` with sub-pixel rows (in place)."""
    h, w = target.shape
    ok = np.isfinite(y_px) & (y_px >= 0) & (y_px < h - 1)
    xs = np.flatnonzero(ok)
    y = y_px[ok]
    r0 = np.floor(y).astype(np.intp)
    f = (y - r0).astype(np.float32)
    a = np.broadcast_to(amp, y_px.shape)[ok].astype(np.float32)
    target[r0, xs] += a * (1 - f)
    target[r0 + 1, xs] += a * f


def curve_runs(y_px: np.ndarray) -> list[np.ndarray]:
    """Split a per-column curve into (N, 2) point runs where it is finite."""
    ok = np.isfinite(y_px)
    if not ok.any():
        return []
    idx = np.flatnonzero(ok)
    breaks = np.flatnonzero(np.diff(idx) > 1) + 1
    return [np.column_stack([i, y_px[i]]) for i in np.split(idx, breaks)]


def _soft_max(a: np.ndarray, floor: float, k: float) -> np.ndarray:
    """max(a, floor) with a rounded corner of size k."""
    return floor + k * np.logaddexp(0.0, (a - floor) / k)


def _bone_profile(rng: np.random.Generator, view: str, w: int, h: int, s: float) -> np.ndarray:
    """Bone surface row per column (px), before roughness; NaN off the image."""
    xs = np.arange(w, dtype=np.float64)
    px = 1.0 / s
    depth_mm = h * s
    xc = w * rng.uniform(0.35, 0.65)
    dx = xs - xc
    if view == "trochlea":
        groove = depth_mm * rng.uniform(0.42, 0.62) * px
        r = rng.uniform(2.0, 5.0) * px
        slope = np.where(dx < 0, rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.8))
        y = groove - slope * (np.sqrt(r * r + dx * dx) - r)
        crest = groove - rng.uniform(3.5, 7.5) * px
        y = _soft_max(y, crest, rng.uniform(1.0, 2.5) * px)  # rounded condyles either side
    elif view == "condyle":
        radius = rng.uniform(12.0, 30.0) * px
        top = depth_mm * rng.uniform(0.32, 0.55) * px
        inside = np.clip(radius * radius - dx * dx, radius * radius * 0.02, None)
        y = top + radius - np.sqrt(inside)
        y = np.where(np.abs(dx) < radius * 0.99, y, np.inf)
    elif view == "joint_line":  # femoral condyle and tibial plateau either side of the joint space
        gap = rng.uniform(3.0, 7.0) * px
        side = rng.choice((-1.0, 1.0))  # which side the femur is on
        d = side * dx  # > 0 toward the tibia
        top_f = depth_mm * rng.uniform(0.3, 0.5) * px
        radius = rng.uniform(12.0, 25.0) * px
        centre = -gap / 2 - rng.uniform(3.0, 8.0) * px
        femur = top_f + (d - centre) ** 2 / (2 * radius) + 2.0 * px * np.exp((d + gap / 2) / (0.8 * px))
        top_t = top_f + rng.uniform(0.5, 4.0) * px
        tibia = (top_t + math.tan(math.radians(rng.uniform(-6, 6))) * (d - gap / 2)
                 + 1.5 * px * np.exp(-(d - gap / 2) / (0.6 * px)))
        y = np.where(d < -gap / 2, femur, np.where(d > gap / 2, tibia, np.inf))
    else:  # suprapatellar: nearly flat femur, slight tilt and bow
        base = depth_mm * rng.uniform(0.45, 0.72) * px
        tilt = math.tan(math.radians(rng.uniform(-9.0, 9.0)))
        bow = rng.uniform(-1.0, 1.0) / (w * w) * 4 * px  # up to ~1 mm across the canvas
        y = base + tilt * dx + bow * dx * dx
    y = y + rng.uniform(0.2, 0.7) * px * smooth_curve(rng, w, rng.uniform(4.0, 10.0) * px)
    y = _soft_max(y, 6.0 * px, 1.0 * px)  # leave room for the soft tissue layers
    y[(y > h - 1.5 * px) | ~np.isfinite(y)] = np.nan
    return y


def _fragments(rng, shape, px, corr_x_mm, corr_y_mm, width):
    """Broken, mostly horizontal bright strands (fat septa, fascia fragments), 0-1."""
    lines = level_lines(smooth_noise(rng, shape, corr_x_mm * px, corr_y_mm * px), width)
    keep = smooth_noise(rng, shape, 2 * corr_x_mm * px, 2 * corr_y_mm * px) > rng.uniform(-0.3, 0.5)
    return lines * keep


def _broken(rng, w, px):
    """Amplitude along an interface: patchy, with gaps where it fades out."""
    on = np.clip(smooth_curve(rng, w, rng.uniform(2, 6) * px) + rng.uniform(0.0, 1.0), 0.0, 1.0)
    return (np.exp(0.6 * smooth_curve(rng, w, 1.5 * px)) * on).astype(np.float32)


def _add_streaks(rng, specular, label, fluid_mask, px) -> None:
    """Short bright strands in the soft tissue (collagen bundles, fascia fragments), in place.

    Each is a 1-7 mm segment, nearly horizontal, tapered at both ends, with
    its own brightness: the "busy" look of real soft tissue.
    """
    from .needle import splat  # the same bilinear deposit as the needle's

    h, w = specular.shape
    n = int(rng.integers(4, 20) * w * h * 1e-2 / (px * px)) + 3  # about 4-20 per cm2
    cx = rng.uniform(0, w, n)
    cy = rng.uniform(0.3 * px, h, n)
    ok = (label[cy.astype(int).clip(0, h - 1), cx.astype(int).clip(0, w - 1)] < 4) & \
        ~fluid_mask[cy.astype(int).clip(0, h - 1), cx.astype(int).clip(0, w - 1)]
    cx, cy = cx[ok], cy[ok]
    if len(cx) == 0:
        return
    length = rng.uniform(1.0, 7.0, len(cx)) * px
    tilt = np.tan(np.radians(rng.normal(0, 7, len(cx))))
    amp = rng.uniform(0.1, 0.6, len(cx)) * 0.5
    t = np.linspace(-0.5, 0.5, 64)
    xs = cx[:, None] + t[None, :] * length[:, None]
    ys = cy[:, None] + t[None, :] * length[:, None] * tilt[:, None]
    a = amp[:, None] * np.sin(np.pi * (t[None, :] + 0.5)) * (length[:, None] / 64)
    specular += splat(np.column_stack([xs.ravel(), ys.ravel()]), a.ravel(), (0, 0), (h, w))


def add_oblique_strands(rng, anatomy: Anatomy, count: int, edges_px: tuple[float, float]) -> None:
    """Straight bright strands at a needle's angles in the soft tissue (in place, ``anatomy.specular``).

    Training distractors: an oblique septum or fascia that looks like a needle's
    shaft, 2-15 mm long at 12-60 degrees, 0.4-4 per pixel of length (a faint
    steep needle's to a flat one's shaft), patchy or tapered, some reaching a
    side edge as an entering needle does. They have no reverberation, no bevel
    and no shadow: the detector must learn what else makes a needle.
    ``edges_px``: the canvas columns of the frame's left and right edges.
    """
    spec, soft = anatomy.specular, anatomy.soft_tissue
    h, w = spec.shape
    px = 1.0 / anatomy.spacing_mm
    skin = int(1.5 * px)  # below the skin's own echo
    rows, cols = np.nonzero(soft[skin:])
    if len(rows) == 0:
        return
    for _ in range(int(count)):
        k = int(rng.integers(len(rows)))
        c = np.array([cols[k], rows[k] + skin], float)
        theta = math.radians(rng.uniform(12.0, 60.0)) * rng.choice([-1.0, 1.0])
        d = np.array([math.cos(theta), math.sin(theta)])
        length = rng.uniform(2.0, 15.0) * px
        if rng.random() < 0.3:  # from a side edge of the frame, as an entering needle
            left = rng.random() < 0.5
            d = np.array([abs(d[0]) if left else -abs(d[0]), d[1]])
            c = np.array([edges_px[0] if left else edges_px[1], c[1]]) + d * 0.5 * length
        t = np.arange(-0.5 * length, 0.5 * length, 0.5)
        amp = math.exp(rng.uniform(math.log(0.4), math.log(4.0))) * 0.5  # per half pixel
        if rng.random() < 0.5:  # patchy, with gaps
            along = np.clip(smooth_curve(rng, len(t), rng.uniform(4, 16) * px) + rng.uniform(0.3, 1.2), 0, 1)
        else:  # tapered at both ends
            along = np.sin(np.pi * (t / length + 0.5)) ** 0.5
        pts = c[None, :] + t[:, None] * d[None, :]
        inside = (pts[:, 0] >= 0) & (pts[:, 0] < w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] < h - 1)
        pts, a = pts[inside], (amp * along)[inside]
        ok = soft[pts[:, 1].astype(int), pts[:, 0].astype(int)]
        spec += splat(pts[ok], a[ok].astype(np.float32), (0, 0), (h, w))  # the needle's bilinear deposit


def fill_bone_shadow(rng, anatomy: Anatomy) -> None:
    """Take the bone's shadow away (in place): the region under the bone echoes like tissue.

    A full-wave simulator (k-Wave, ``bench/kwave_frames.py``) draws a smooth bone
    with no shadow under it: the wave goes back and forth between the bone and
    the tissue above, which mirrors that tissue below the surface (the
    mirror-image artefact of a strong smooth reflector). Training frames with it
    teach that a bone is its bright line, shadow or not. Under the surface: the
    tissue above mirrored across it (a random share, the rest plain speckle at
    the tissue's median), its interfaces mirrored more faintly, and the
    transmission raised to 0.3-1 of the tissue's.
    """
    h, w = anatomy.echo.shape
    bone_y = anatomy.bone_y_px.astype(np.float32)
    ys = np.arange(h, dtype=np.float32)[:, None]
    below = ys - np.where(np.isfinite(bone_y), bone_y, np.inf)[None, :]
    under = below > 0
    mirror_rows = np.clip(np.nan_to_num(2.0 * bone_y[None, :] - ys, nan=0.0), 0, h - 1).astype(np.intp)
    share = np.float32(rng.uniform(0.0, 1.0))
    plain = np.float32(np.median(anatomy.echo[anatomy.soft_tissue])) if anatomy.soft_tissue.any() else 0.5
    filled = share * np.take_along_axis(anatomy.echo, mirror_rows, axis=0) + (1 - share) * plain
    anatomy.echo = np.where(under, filled, anatomy.echo).astype(np.float32)
    # the mirrored interfaces, away from the bone's own echo (its cortex lies within 0.5 mm)
    deep = below > 0.5 / anatomy.spacing_mm
    ghost = np.take_along_axis(anatomy.specular, mirror_rows, axis=0) * np.float32(rng.uniform(0.0, 0.5))
    anatomy.specular = np.where(deep, anatomy.specular + ghost, anatomy.specular).astype(np.float32)
    level = np.float32(rng.uniform(0.3, 1.0))
    anatomy.transmission = np.where(under, np.maximum(anatomy.transmission, level),
                                    anatomy.transmission).astype(np.float32)


def add_bright_fascias(rng, anatomy: Anatomy, count: int) -> None:
    """Long bright fasciae in the soft tissue, as bright as the bone and with no shadow (in place).

    Training distractors for a bone without shadow (:func:`fill_bone_shadow`): on
    real frames a fascia or a tendon's edge is a long bright line with tissue
    under it, and must not be taken for the bone. Each runs 30-80 % of the
    width, at least 1.5 mm deep and 2 mm above the bone, at 0.5-1.2 of the
    bone's echo, gently curved.
    """
    spec = anatomy.specular
    h, w = spec.shape
    px = 1.0 / anatomy.spacing_mm
    bone_y = anatomy.bone_y_px
    rows = np.clip(np.round(np.nan_to_num(bone_y, nan=-1)).astype(np.intp), 0, h - 1)
    on_bone = spec[rows, np.arange(w)][np.isfinite(bone_y)]
    bone_amp = float(np.median(on_bone)) if len(on_bone) else 1.0
    floor = np.nanmin(bone_y) if np.isfinite(bone_y).any() else h
    for _ in range(int(count)):
        if floor - 2.5 * px <= 1.5 * px:
            return
        span = int(w * rng.uniform(0.3, 0.8))
        x0 = int(rng.integers(0, w - span + 1))
        y = rng.uniform(1.5 * px, floor - 2.5 * px) + rng.uniform(0.2, 1.0) * px * smooth_curve(rng, w, 8 * px)
        y = np.where((np.arange(w) >= x0) & (np.arange(w) < x0 + span), y, np.nan)
        y = np.where(y < np.nan_to_num(bone_y, nan=np.inf) - 2.0 * px, y, np.nan)
        amp = bone_amp * rng.uniform(0.5, 1.2) * np.exp(0.3 * smooth_curve(rng, w, 2 * px))
        deposit_curve(spec, y, amp.astype(np.float32))


def _add_vessels(rng, echo, specular, label, y_top, y_bottom, px) -> np.ndarray:
    """Zero to two small vessels (1-3.5 mm, anechoic, bright walls) in the fat or muscle, in place.

    Returns their mask (blood is anechoic and enhances what lies below, like fluid).
    """
    h, w = echo.shape
    mask = np.zeros((h, w), bool)
    n = int(rng.choice([0, 0, 1, 2]))
    for _ in range(n):
        cx = rng.uniform(0.05, 0.95) * w
        xi = int(np.clip(cx, 0, w - 1))
        lo, hi = y_top[xi] + 1.0 * px, y_bottom[xi] + 2.0 * px
        if hi - lo < 2.0 * px:
            continue
        cy = rng.uniform(lo, hi)
        rx = rng.uniform(0.5, 1.75) * px
        ry = rx * rng.uniform(0.6, 1.0)
        t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        ring = np.column_stack([cx + rx * np.cos(t), cy + ry * np.sin(t)])
        inside = np.zeros((h, w), np.uint8)
        cv2.ellipse(inside, (int(round(cx)), int(round(cy))), (max(1, int(rx)), max(1, int(ry))), 0, 0, 360, 1, -1)
        sel = (inside == 1) & (label < 4)
        echo[sel] = 0.01
        mask |= sel
        from .needle import splat
        amp = 0.35 * (1 + np.abs(np.sin(t))) * (2 * np.pi * rx / 96)  # top and bottom walls reflect best
        specular += splat(ring, amp, (0, 0), (h, w))
    return mask


def build_anatomy(rng: np.random.Generator, shape: tuple[int, int], spacing_mm: float,
                  view: str | None = None, fluid: bool | None = None, cartilage: bool = True) -> Anatomy:
    """Draw a random knee scene.

    Parameters
    ----------
    rng : numpy Generator
    shape : (rows, cols) of the canvas, in pixels.
    spacing_mm : float
        Isotropic pixel size in mm.
    view : one of :data:`VIEWS`, or None for a random one.
    fluid : whether joint fluid lies over the cartilage (None: random).
    cartilage : False for bone without a cartilage band (the target is then the bone).

    Returns
    -------
    Anatomy
    """
    h, w = shape
    s = float(spacing_mm)
    px = 1.0 / s
    view = view or str(rng.choice(VIEWS, p=VIEW_P))
    fluid = bool(rng.random() < 0.35) if fluid is None else fluid
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)[:, None]

    # --- bone and cartilage -------------------------------------------------
    bone_smooth = _bone_profile(rng, view, w, h, s)
    valid = np.isfinite(bone_smooth)
    rough = rng.uniform(0.02, 0.07) * px * smooth_curve(rng, w, max(0.25 * px, 1.0))
    bone_y = bone_smooth + rough
    slope = np.gradient(np.where(valid, bone_smooth, np.interp(xs, xs[valid], bone_smooth[valid])
                                 if valid.any() else 0.0))
    cos_slope = 1.0 / np.sqrt(1.0 + slope * slope)
    thick_mm = rng.uniform(1.5, 3.0) * (1 + 0.12 * smooth_curve(rng, w, rng.uniform(5, 12) * px))
    if view == "condyle":  # thins toward the sides of the dome
        thick_mm = thick_mm * (0.6 + 0.4 * cos_slope)
    thick_mm = np.clip(thick_mm, 1.2, 3.4)
    cart_top = bone_y - thick_mm * px / np.maximum(cos_slope, 0.4)
    if not cartilage:  # worn or out-of-view cartilage: the needle aims at the bone itself
        cart_top = bone_y.copy()
    cart_top[~valid] = np.nan
    bone_y[~valid] = np.nan
    cart_fill = np.interp(xs, xs[valid], cart_top[valid]) if valid.any() else np.full(w, h * 0.8)

    # --- soft tissue interfaces (rows per column) -----------------------------
    def wavy(base_mm, amp_mm, corr_mm):
        return base_mm * px + amp_mm * px * smooth_curve(rng, w, corr_mm * px)

    y_dermis = wavy(rng.uniform(1.0, 2.2), 0.15, 6)
    y_fat = y_dermis + wavy(rng.uniform(2.0, 6.5), 0.6, 8)
    y_mid = y_fat + wavy(rng.uniform(2.5, 7.0), 0.5, 10)
    follow = rng.uniform(0.3, 0.85)  # deep layers drape over the bone contour
    y_mid = (1 - follow) * y_mid + follow * (cart_fill - rng.uniform(1.5, 4.0) * px)
    y_mid = np.minimum(y_mid, cart_fill - 1.0 * px)
    y_fat = np.minimum(y_fat, y_mid - 1.0 * px)
    y_dermis = np.clip(np.minimum(y_dermis, y_fat - 0.7 * px), 0.6 * px, None)

    label = ((ys >= y_dermis).astype(np.int8) + (ys >= y_fat) + (ys >= y_mid)
             + (ys >= np.nan_to_num(cart_top, nan=np.inf)) + (ys >= np.nan_to_num(bone_y, nan=np.inf)))

    # --- textures ---------------------------------------------------------------
    # Regional brightness: tissue is patchy on a scale of millimetres (lobules, fascicles).
    het = np.exp(rng.uniform(0.25, 0.5) * smooth_noise(rng, shape, rng.uniform(2.5, 5) * px, rng.uniform(1, 2.5) * px))
    echo = np.empty(shape, np.float32)
    dermis = 0.9 * np.exp(0.3 * smooth_noise(rng, shape, 1.5 * px, 0.5 * px))
    fat = 0.35 + 0.8 * _fragments(rng, shape, px, rng.uniform(3, 8), rng.uniform(0.6, 1.5), rng.uniform(0.06, 0.12))
    if view != "condyle" and rng.random() < 0.7:  # quadriceps tendon: parallel fibrils
        fib = smooth_noise(rng, shape, rng.uniform(3, 8) * px, max(rng.uniform(0.1, 0.25) * px, 1.0))
        mid = 0.55 * np.exp(0.9 * fib)
    else:  # muscle: dark fascicles between bright oblique perimysium
        streak = smooth_noise(rng, shape, rng.uniform(3, 8) * px, max(rng.uniform(0.3, 0.6) * px, 1.0))
        shear = math.tan(math.radians(rng.uniform(-20, 20)))
        m = np.float32([[1, 0, 0], [shear, 1, -shear * w / 2]])
        streak = cv2.warpAffine(streak, m, (w, h), borderMode=cv2.BORDER_REFLECT)
        mid = 0.3 + 0.8 * level_lines(streak, 0.1) * (smooth_noise(rng, shape, 3 * px, 3 * px) > -0.2)
    deep = rng.uniform(0.3, 0.6) + 0.6 * _fragments(rng, shape, px, rng.uniform(2, 6), rng.uniform(0.6, 2.0), 0.1)
    bone_inner = np.float32(rng.uniform(0.3, 0.7))  # cancellous bone: plain speckle, shadowed
    level = rng.uniform(0.6, 1.5, 6)  # each layer's own echogenicity
    cart_echo = rng.uniform(0.04, 0.12)  # hyaline cartilage: nearly anechoic, a faint grain
    for k, tex in enumerate((dermis, fat, mid, deep, None, bone_inner)):
        sel = label == k
        echo[sel] = cart_echo if tex is None else (tex[sel] if np.ndim(tex) else tex) * level[k]
    echo *= np.where(label < 5, het, 1.0)  # the shadowed bone interior stays plain

    # --- joint fluid: an anechoic lens over the cartilage -------------------------
    fluid_mask = np.zeros(shape, bool)
    if fluid and valid.any():
        cols = xs[valid]
        xf = rng.uniform(cols.min() + 0.2 * np.ptp(cols), cols.max() - 0.2 * np.ptp(cols))
        half = rng.uniform(3, 8) * px
        lens = rng.uniform(1.0, 3.5) * px * np.sqrt(np.clip(1 - ((xs - xf) / half) ** 2, 0, None))
        bottom = cart_fill - rng.uniform(0.0, 1.0) * px
        fluid_mask = (ys < bottom) & (ys > bottom - lens) & (label >= 2) & (label <= 3)
        echo[fluid_mask] = 0.01

    if view == "joint_line" and valid.any():  # meniscus: a bright fibrous triangle in the joint space
        gap_cols = np.flatnonzero(~valid[1:] & valid[:-1]) + 1  # first column of each gap
        ends = np.flatnonzero(valid[1:] & ~valid[:-1]) + 1  # first valid column after a gap
        if len(gap_cols) and len(ends) and ends[-1] > gap_cols[0]:
            g0 = int(gap_cols[0])
            g1 = int(ends[ends > g0][0])
            yl, yr = cart_fill[g0 - 1], cart_fill[g1]
            reach = rng.uniform(2.0, 5.0) * px
            tri = np.array([[g0 - reach, yl - 0.8 * px], [g1 + reach, yr - 0.8 * px],
                            [(g0 + g1) / 2, max(yl, yr) + rng.uniform(2.0, 4.0) * px]], np.int32)
            men = np.zeros(shape, np.uint8)
            cv2.fillConvexPoly(men, tri, 1)
            men = (men == 1) & (label == 3)
            echo[men] = (rng.uniform(0.9, 1.5) * np.exp(0.5 * smooth_noise(rng, shape, 2 * px, 0.3 * px)))[men]

    # --- coherent reflectors --------------------------------------------------------
    specular = np.zeros(shape, np.float32)
    deposit_curve(specular, np.full(w, 0.5), np.float32(1.5))                     # gel / skin
    # Fascia between layers: broken, uneven echoes rather than drawn lines.
    deposit_curve(specular, y_dermis, 0.4 * _broken(rng, w, px))
    deposit_curve(specular, y_fat, rng.uniform(0.3, 1.0) * _broken(rng, w, px))
    deposit_curve(specular, y_mid, rng.uniform(0.2, 0.8) * _broken(rng, w, px))
    aniso = cos_slope ** rng.uniform(1.5, 4.0)  # specular echoes fade as the surface tilts
    # Bone reflects far more than the soft tissue / cartilage interface above it.
    bone_base = rng.uniform(1.5, 3.5)
    cart_amp = bone_base * rng.uniform(0.2, 0.45) * aniso * np.exp(0.3 * smooth_curve(rng, w, 1.5 * px))
    if cartilage:
        deposit_curve(specular, cart_top, cart_amp)
    bone_amp = bone_base * aniso * np.exp(0.4 * smooth_curve(rng, w, max(0.5 * px, 1.0)))
    for depth_mm, k in ((0.0, 1.0), (0.1, 0.35)):  # cortex thickness
        deposit_curve(specular, bone_y + depth_mm * px, bone_amp * k)

    _add_streaks(rng, specular, label, fluid_mask, px)
    vessels = _add_vessels(rng, echo, specular, label, y_fat, y_mid, px)

    # --- transmission: bone shadow, enhancement under fluid and cartilage -------
    below = ys - np.nan_to_num(bone_y, nan=np.inf)
    shadow = 10 ** (-rng.uniform(18, 34) / 20)  # from grey (some transmission) to black
    fall = rng.uniform(0.3, 0.8) * px
    transmission = np.where(below > 0, shadow + (1 - shadow) * np.exp(-np.clip(below, 0, None) / fall), 1.0)
    low_atten_mm = np.cumsum((fluid_mask | vessels) * 1.2 + (label == 4) * 0.4, axis=0) * s  # dB of gain per mm crossed
    transmission = transmission * 10 ** (np.minimum(low_atten_mm, 8.0) / 20)
    if view == "joint_line":  # deep in the joint space the beam meets the bones' flanks: darker
        deep_gap = np.clip((ys - cart_fill[None, :] - 3.0 * px) / (3.0 * px), 0, 1) * (~valid)[None, :]
        transmission = transmission * 10 ** (-rng.uniform(8, 16) / 20 * deep_gap)
    # The beam is ~0.5 mm wide: shadow edges are soft, not cut at one column.
    transmission = cv2.GaussianBlur(transmission.astype(np.float32), (0, 0), max(0.3 * px, 0.5), max(0.05 * px, 0.3))

    bone_mask = np.zeros(shape, np.uint8)
    cart_mask = ((label == 4) & np.isfinite(bone_y)[None, :]).astype(np.uint8)
    thick_px = int(np.clip(round(0.3 * px), 3, 7))
    runs = [np.round(r).astype(np.int32) for r in curve_runs(bone_y)]
    cv2.polylines(bone_mask, runs, False, 1, thickness=thick_px)

    if not cartilage:
        cart_top = np.full(w, np.nan)
        valid_cart = np.zeros(w, bool)
    else:
        valid_cart = valid
    return Anatomy(view=view, spacing_mm=s, bone_y_px=bone_y, cartilage_top_y_px=cart_top,
                   cartilage_thickness_mm=np.where(valid_cart, thick_mm, np.nan),
                   echo=echo.astype(np.float32), specular=specular,
                   transmission=transmission.astype(np.float32), fluid=fluid_mask,
                   bone_mask=bone_mask, cartilage_mask=cart_mask, soft_tissue=label < 4)
