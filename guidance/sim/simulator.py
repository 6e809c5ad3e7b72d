"""The knee injection B-mode sequence simulator with per-frame ground truth.

A sequence is fixed by its :class:`SimConfig` (size, spacing, frame rate,
scenario, seed). At construction the static scene is drawn once: anatomy,
probe, the scatterer field and its beamformed IQ field on a canvas a little
wider than the frame. Each frame then only updates what moves: the canvas
window (probe drift), the needle's echo and shadow, the injected bolus (an
anechoic region with posterior enhancement), electronic noise and the gain;
so a 512x512 frame costs a few milliseconds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Iterator

import cv2
import numpy as np

from .. import __version__
from ..errors import InputError
from .anatomy import (VIEWS, Anatomy, add_bright_fascias, add_oblique_strands, build_anatomy, deposit_curve,
                      fill_bone_shadow)
from .beam import Beam, Probe
from .coherent import round_trip_wavevectors, wall_field
from .needle import NEEDLE_STYLES, VISIBLE_LEVEL, NeedleEcho, NeedlePlan, needle_echo, plan_needle, splat
from .noise import smooth_curve
from .scenarios import Scenario, get_scenario
from .truth import frame_truth

SIM_VERSION = f"{__version__}+sim1"
DB_PER_NEPER = 20.0 / math.log(10.0)


@dataclass(frozen=True)
class SimConfig:
    """One simulated sequence.

    ``spacing_mm`` is the isotropic pixel size in mm; when None it is
    ``depth_mm / height_px``. ``n_frames`` defaults to the scenario's duration
    times ``fps``. ``randomize`` turns on strong appearance randomisation
    (probe, grey map, blur, noise) for training. ``needle_style`` is how the
    needle echoes: ``"specular"`` (a metal tube's walls, reverberation and
    bevel; our default), ``"scatter"`` (a cylinder of strong point scatterers,
    as point-scatterer simulators such as Field II phantoms make it),
    ``"walls"`` (two equally bright walls and no ringing, as simulators of
    single scattering such as PyMUST make a tube) or ``"coherent"`` (those
    walls as continuous reflectors imaged by steered plane waves,
    :mod:`guidance.sim.coherent`: faint and fringed unless a wave meets them
    square on, as in PyMUST's compounded frames). ``oblique_strands``: that
    many needle-like tissue strands (training distractors,
    :func:`~guidance.sim.anatomy.add_oblique_strands`), drawn on their own
    random stream so that the rest of the scene is unchanged.
    ``shadowless_bone``: the bone casts no shadow and the tissue above is
    mirrored under it, as a full-wave simulator draws a smooth bone (training
    variety, :func:`~guidance.sim.anatomy.fill_bone_shadow`; its own stream).
    ``bright_fascias``: that many long fasciae as bright as the bone, with no
    shadow (:func:`~guidance.sim.anatomy.add_bright_fascias`; its own stream).
    ``visible_level``: the fraction of its in-plane echo below which the truth
    calls a piece of shaft out of the plane (:data:`~guidance.sim.needle.VISIBLE_LEVEL`).
    The images do not depend on it, only the truth and the needle mask: a
    fading needle's visibility is a line drawn on a gradual fade, and
    ``bench/eval_sim.py --visible-level`` scores the same detections against
    other lines.
    """

    width_px: int = 512
    height_px: int = 512
    fps: float = 30.0
    seed: int = 0
    scenario: str = "insertion"
    spacing_mm: float | None = None
    depth_mm: float = 30.0
    n_frames: int | None = None
    randomize: bool = False
    view: str | None = None
    fluid: bool | None = None
    drift_mm: float = 1.5
    cartilage: bool = True
    needle_style: str = "specular"
    oblique_strands: int = 0
    shadowless_bone: bool = False
    bright_fascias: int = 0
    visible_level: float = VISIBLE_LEVEL

    @property
    def spacing(self) -> float:
        return float(self.spacing_mm) if self.spacing_mm else self.depth_mm / self.height_px


@dataclass(eq=False)
class SimFrame:
    """One rendered frame: the image, its contract truth line and training masks.

    ``masks`` holds uint8 (0/1) images "needle" (visible shaft), "bone" (the
    bone surface line, a few px thick) and "cartilage" (the band between the
    cartilage top and the bone). ``tip_px`` is the truth tip (the visible end
    of the needle nearest its tip) or None when no needle is seen.
    """

    image: np.ndarray
    truth: dict
    masks: dict[str, np.ndarray]
    tip_px: tuple[float, float] | None
    index: int = 0
    t_s: float = 0.0
    spacing_mm: tuple[float, float] = (0.1, 0.1)
    extra: dict = field(default_factory=dict)


@dataclass
class _Look:
    """One compounded look: its scatterers and their beamformed IQ field on the canvas."""

    src_re: np.ndarray
    src_im: np.ndarray
    f_re: np.ndarray
    f_im: np.ndarray


def grey_map(rng: np.random.Generator | None, strong: bool = False) -> np.ndarray:
    """A scanner-style 256-entry grey map (post-processing curve), uint8."""
    x = np.linspace(0, 1, 256)
    if rng is None:
        y = x ** 1.15
    else:
        gamma = rng.uniform(0.75, 1.6) if strong else rng.uniform(1.0, 1.3)
        y = x ** gamma
        if strong and rng.random() < 0.5:  # S-curve (contrast around the mid-grey)
            k = rng.uniform(3.0, 8.0)
            c = rng.uniform(0.35, 0.6)
            sig = 1 / (1 + np.exp(-k * (y - c)))
            y = (sig - sig[0]) / (sig[-1] - sig[0])
        if strong and rng.random() < 0.12:  # as if the envelope were shown without log compression
            k = rng.uniform(2.0, 5.0)
            y = (np.exp(k * x) - 1) / (np.exp(k) - 1)
        if strong:
            y = rng.uniform(0.0, 0.06) + y * rng.uniform(0.85, 1.0)  # lifted black, dimmed white
    return np.clip(np.round(y * 255), 0, 255).astype(np.uint8)


class Simulator:
    """Render frames of one simulated sequence; ``render(i)`` is deterministic in (config, i)."""

    def __init__(self, config: SimConfig):
        self.config = cfg = config
        if cfg.width_px < 32 or cfg.height_px < 32:
            raise InputError(f"sim size {cfg.width_px}x{cfg.height_px}: at least 32x32 px")
        if not cfg.fps > 0:
            raise InputError(f"sim fps {cfg.fps}: must be positive")
        if cfg.needle_style not in NEEDLE_STYLES:
            raise InputError(f"sim needle style {cfg.needle_style!r}: unknown (choose one of: {', '.join(NEEDLE_STYLES)})")
        if cfg.view is not None and cfg.view not in VIEWS:
            raise InputError(f"sim view {cfg.view!r}: unknown (choose one of: {', '.join(VIEWS)})")
        self.scenario: Scenario = get_scenario(cfg.scenario)
        rng = np.random.default_rng([int(cfg.seed) & 0xFFFFFFFF, 0x5EED])
        self.seed = int(cfg.seed)
        H, W = cfg.height_px, cfg.width_px
        s = cfg.spacing
        self.spacing_mm = (s, s)
        self.n_frames = int(cfg.n_frames) if cfg.n_frames else max(1, int(round(self.scenario.duration_s * cfg.fps)))
        duration = self.n_frames / cfg.fps
        self.margin_px = int(math.ceil(cfg.drift_mm / s)) + 2
        Wc = W + 2 * self.margin_px
        strong = cfg.randomize

        view = cfg.view
        if strong and view is None:  # training: every view, the joint line included
            view = str(rng.choice(VIEWS, p=(0.35, 0.2, 0.25, 0.2)))
        self.anatomy: Anatomy = build_anatomy(rng, (H, Wc), s, view, cfg.fluid, cfg.cartilage)
        self.probe = Probe.random(rng, H * s, strong=strong)
        self.beam = Beam(self.probe, H, s, rng)

        # Static scatterers: complex Gaussian (diffuse) + a few strong points + coherent
        # interfaces. Scanners compound several looks (steering angles, frequency
        # bands) whose speckle differs while the anatomy does not: each look gets
        # its own diffuse scatterers, the interfaces are shared.
        self.n_looks = int(rng.integers(1, 4)) if strong else 2
        if strong and rng.random() < 0.12:  # plain phantom-like tissue, as simple simulators make
            soft = self.anatomy.soft_tissue & ~self.anatomy.fluid
            flat = float(np.median(self.anatomy.echo[soft]))
            a = rng.uniform(0.7, 1.0)
            self.anatomy.echo[soft] = (1 - a) * self.anatomy.echo[soft] + a * flat
        if strong and rng.random() < 0.3:  # reverberation between probe face and skin: echo copies
            gap_mm = rng.uniform(1.0, 3.0)
            wav = rng.uniform(0.0, 0.3) / s * smooth_curve(rng, Wc, 6.0 / s)
            for k in range(1, 5):
                deposit_curve(self.anatomy.specular, k * gap_mm / s + wav, np.float32(0.3 * 0.6 ** k))
        if cfg.oblique_strands:
            add_oblique_strands(np.random.default_rng([self.seed & 0xFFFFFFFF, 0x0B1]), self.anatomy,
                                cfg.oblique_strands, (self.margin_px, self.margin_px + W - 1))
        if cfg.shadowless_bone:
            fill_bone_shadow(np.random.default_rng([self.seed & 0xFFFFFFFF, 0x5AD]), self.anatomy)
        if cfg.bright_fascias:
            add_bright_fascias(np.random.default_rng([self.seed & 0xFFFFFFFF, 0xFA5]), self.anatomy,
                               cfg.bright_fascias)
        echo = self.anatomy.echo * np.float32(1 / math.sqrt(2))
        density = 0.004 if not strong else rng.uniform(0.0, 0.01)
        self.looks: list[_Look] = []
        for _ in range(self.n_looks):
            src_re = rng.standard_normal((H, Wc), dtype=np.float32) * echo
            src_im = rng.standard_normal((H, Wc), dtype=np.float32) * echo
            src_re += (rng.random((H, Wc), dtype=np.float32) < density) * self.anatomy.echo * 2.5
            src_re += self.anatomy.specular
            f_re, f_im = self.beam.form([src_re, src_im])
            self.looks.append(_Look(src_re, src_im, f_re, f_im))
        self.tissue_echo = float(np.median(self.anatomy.echo[self.anatomy.soft_tissue]))
        self.gmap = (self.beam.gain[:, None] * self.anatomy.transmission).astype(np.float32)

        # Grey-level calibration: median soft tissue lands at probe.tissue_level.
        amp = np.sqrt(sum(cv2.magnitude(lk.f_re, lk.f_im) ** 2 for lk in self.looks) / self.n_looks) * self.gmap
        sel = self.anatomy.soft_tissue.copy()
        sel[: max(1, int(1.0 / s))] = False
        ref = float(np.median(amp[sel])) if sel.any() else float(np.median(amp))
        dr = self.probe.dynamic_range_db
        self.ln_top = math.log(max(ref, 1e-12)) + dr * (1 - self.probe.tissue_level) / DB_PER_NEPER
        self.alpha = 255.0 * DB_PER_NEPER / dr
        self.ln_floor = self.ln_top - dr / DB_PER_NEPER

        pad = 64
        ng = (self.beam.noise_gain * ref)[:, None]
        self.noise_re = rng.standard_normal((H, W + pad), dtype=np.float32) * ng
        self.noise_im = rng.standard_normal((H, W + pad), dtype=np.float32) * ng
        self.lut = grey_map(rng if strong or cfg.seed else None, strong)
        sr = rng.uniform(0.0, 1.6) if strong else rng.uniform(0.3, 0.7)  # speckle-reduction strength
        self.smooth_px = (max(sr * 0.09 / s, 0.3), max(sr * 0.05 / s, 0.3)) if sr > 0.15 else None
        self.blur_sigma_px = rng.uniform(0.0, 1.2) if strong and rng.random() < 0.5 else 0.0
        self.extra_noise = rng.uniform(0.0, 10.0) if strong and rng.random() < 0.5 else 0.0
        # Poor probe contact at one end of the array: a dark band (probe-fixed).
        self.contact = None
        if strong and rng.random() < 0.25:
            width = rng.uniform(0.04, 0.25) * W
            ramp = np.clip((np.arange(W) - width) / (0.3 * width + 1), 0, 1)
            ramp = rng.uniform(0.02, 0.3) + (1 - rng.uniform(0.02, 0.3)) * ramp
            self.contact = (ramp if rng.random() < 0.5 else ramp[::-1]).astype(np.float32)

        sc = self.scenario
        if strong and sc.angle_deg[0] <= 20.0:  # training covers the whole 10-60 degree range
            sc = dataclasses.replace(sc, angle_deg=(10.0, sc.angle_deg[1]), gauges=tuple(sorted(set(sc.gauges) | {19, 23})))
        self.plan: NeedlePlan | None = None
        self.brightness = rng.uniform(*sc.brightness) * (rng.uniform(0.5, 1.5) if strong else 1.0)
        if sc.needle:
            self.plan = plan_needle(rng, cartilage_top_y_px=self.anatomy.surface_y_px,
                                    frame_x0_px=self.margin_px, frame_width_px=W, spacing_mm=s,
                                    duration_s=duration, angle_range_deg=sc.angle_deg, gauges=sc.gauges,
                                    out_of_plane=sc.out_of_plane, inject=sc.inject, redirect=sc.redirect,
                                    echogenic=bool(strong and rng.random() < 0.25),
                                    reverb=rng.uniform(0.0, 2.5) if strong else 1.0)
            if self.plan is not None and cfg.needle_style != "specular":
                # its own random stream: the rest of the scene stays what the same seed always made
                self.plan = dataclasses.replace(self.plan, style=cfg.needle_style,
                                                scatter_seed=int(cfg.seed) & 0xFFFFFFFF)
            if self.plan is not None and self.plan.style == "coherent":
                # its own random stream, like the style's
                prng = np.random.default_rng([int(cfg.seed) & 0xFFFFFFFF, 0xC0DE])
                steer = prng.uniform(0.0, 20.0)
                tx = np.linspace(-steer, steer, int(prng.choice((1, 3, 5)))) if steer > 1.0 else np.zeros(1)
                wavelength = 1.54 / self.probe.frequency_mhz
                self.wavevectors = round_trip_wavevectors(s, wavelength, tx, prng.uniform(10.0, 35.0))
                self.carrier = 4 * math.pi * s / wavelength
                self.coherent_gain = prng.uniform(1.0, 3.0)
                # Plane-wave compounding also draws fringed bands beside the shaft and haze below it,
                # some running on past the tip (PyMUST's frames): ghost lines of the walls' echo.
                k = int(prng.integers(0, 7))
                offset = prng.uniform(-1.5, 3.0, k)                      # diameters across, + deeper
                gain = prng.uniform(0.15, 0.7, k) * prng.choice((-1, 1), k)
                past_tip = np.where(prng.random(k) < 0.4, prng.uniform(0.5, 8.0, k), 0.0)
                self.plan = dataclasses.replace(self.plan, roughness=float(prng.uniform(0.4, 1.0)),
                                                ghosts=np.column_stack([offset, gain, past_tip]))

        # Probe drift (lateral, whole pixels) and operator gain changes, per frame.
        t = np.arange(self.n_frames) / cfg.fps
        # A held probe drifts by a fraction of a millimetre; training sees more.
        amp_px = rng.uniform(0.2, 1.0) * self.margin_px * 0.9 if strong else rng.uniform(0.1, 0.4) / s
        period = rng.uniform(3.0, 10.0)
        walk = np.cumsum(rng.normal(0, 0.15 if strong else 0.06, self.n_frames))
        drift = amp_px * np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi)) + walk
        self.drift_px = np.clip(np.round(self.margin_px + drift), 0, 2 * self.margin_px).astype(int)
        gain = np.zeros(self.n_frames)
        for _ in range(int(rng.integers(0, 3))):
            t0 = rng.uniform(0.1, 0.9) * duration
            gain += rng.uniform(-5.0, 5.0) * np.clip((t - t0) / 0.4, 0.0, 1.0)
        self.gain_db = gain + (rng.uniform(-4, 4) if strong else 0.0)
        # Tissue motion (pulse, breathing, pressure) slowly changes the speckle: the
        # looks' weights in the compound drift over time.
        wob = 0.25 * np.sin(2 * math.pi * t / rng.uniform(1.5, 5.0) + rng.uniform(0, 2 * math.pi))
        self.look_weights = np.ones((self.n_frames, self.n_looks), np.float32)
        if self.n_looks > 1:
            self.look_weights[:, 0] += wob
            self.look_weights[:, 1] -= wob

    # ------------------------------------------------------------------ frames
    def __len__(self) -> int:
        return self.n_frames

    def frames(self) -> Iterator[SimFrame]:
        for i in range(self.n_frames):
            yield self.render(i)

    def render(self, i: int) -> SimFrame:
        """Frame ``i`` of the sequence, with its truth line and masks."""
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} outside 0..{self.n_frames - 1}")
        cfg = self.config
        H, W = cfg.height_px, cfg.width_px
        s = self.spacing_mm[0]
        t_s = i / cfg.fps
        ox = int(self.drift_px[i])
        cols = slice(ox, ox + W)
        frng = np.random.default_rng([self.seed & 0xFFFFFFFF, i, 1])

        g = self.gmap[:, cols].copy()
        if self.contact is not None:
            g *= self.contact
        fields = [[lk.f_re[:, cols].copy(), lk.f_im[:, cols].copy()] for lk in self.looks]
        needle_mask = np.zeros((H, W), np.uint8)
        needle_truth = None
        sim_extra: dict = {"scenario": self.scenario.name, "view": self.anatomy.view}

        if self.plan is not None:
            pose = self.plan.pose(t_s)
            echo = needle_echo(self.plan, pose, (H, self.looks[0].f_re.shape[1]), self.brightness,
                               visible_level=cfg.visible_level)
            self._add_dynamic(fields, g, echo, pose, ox, frng)
            needle_truth = self._needle_truth(echo, pose, ox, needle_mask)
            tip = pose.tip_px
            sim_extra.update(phase=pose.phase, gauge=self.plan.gauge,
                             true_tip_px=[round(float(tip[0] - ox), 2), round(float(tip[1]), 2)],
                             tip_elevation_mm=round(float(pose.tip_elevation_mm), 3),
                             bolus=round(float(pose.bolus), 3),
                             needle_echo=round(echo.shaft_echo / self.tissue_echo, 2))
            if self.plan.style != "specular":  # only then: sequences made before the styles keep their truth
                sim_extra["needle_style"] = self.plan.style

        power = np.zeros((H, W), np.float32)
        span = self.noise_re.shape[1] - W + 1
        for (re, im), wgt in zip(fields, self.look_weights[i]):
            np.multiply(re, g, out=re)
            np.multiply(im, g, out=im)
            off = int(frng.integers(0, span))
            re += self.noise_re[:, off:off + W]
            im += self.noise_im[:, off:off + W]
            power += (cv2.multiply(re, re) + cv2.multiply(im, im)) * wgt
        if self.smooth_px is not None:  # scanner speckle reduction: local averaging of intensity
            power = cv2.GaussianBlur(power, (0, 0), *self.smooth_px)
        amp = cv2.sqrt(power * np.float32(1.0 / self.n_looks))
        gain_n = float(self.gain_db[i]) / DB_PER_NEPER
        cv2.max(amp, math.exp(self.ln_floor - gain_n), dst=amp)
        logamp = cv2.log(amp)
        beta = 255.0 - self.alpha * (self.ln_top - gain_n)
        img = cv2.convertScaleAbs(logamp, alpha=self.alpha, beta=beta)
        if self.blur_sigma_px > 0:
            img = cv2.GaussianBlur(img, (0, 0), self.blur_sigma_px)
        if self.extra_noise > 0:
            n = frng.normal(0, self.extra_noise, img.shape).astype(np.float32)
            img = cv2.convertScaleAbs(img.astype(np.float32) + n)
        img = cv2.LUT(img, self.lut)

        a = self.anatomy
        truth = frame_truth(i, t_s, self.spacing_mm, needle=needle_truth,
                            bone_y_px=a.bone_y_px[cols], cartilage_top_y_px=a.cartilage_top_y_px[cols],
                            cartilage_thickness_mm=a.cartilage_thickness_mm[cols],
                            step_px=max(1, W // 160), extra=sim_extra)
        masks = {"needle": needle_mask, "bone": a.bone_mask[:, cols].copy(),
                 "cartilage": a.cartilage_mask[:, cols].copy()}
        tip = tuple(truth["needle"]["tip_px"]) if truth["needle"] else None
        return SimFrame(image=img, truth=truth, masks=masks, tip_px=tip, index=i, t_s=t_s,
                        spacing_mm=self.spacing_mm)

    # ------------------------------------------------------------ internals
    def _box(self, x0f, y0f, x1f, y1f, ox, W, H):
        """Integer canvas box around a float box, padded by the PSF, clipped to the frame; None if empty."""
        half = self.beam.half_px
        x0 = int(max(math.floor(x0f) - half, ox))
        x1 = int(min(math.ceil(x1f) + half + 2, ox + W))
        y0 = int(max(math.floor(y0f) - half, 0))
        y1 = int(min(math.ceil(y1f) + half + 2, H))
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def _add_dynamic(self, fields, g, echo: NeedleEcho, pose, ox: int, frng) -> None:
        """Add the needle echo, bolus and their shadow/enhancement to each look's IQ and the gain (in place)."""
        H, W = g.shape
        s = self.spacing_mm[0]
        px = 1.0 / s
        p = echo.points_px
        ends = np.concatenate([p] + [np.stack([a, a + n * d]) for a, d, n, _ in echo.walls])
        if len(ends):  # coherent: the same in every look
            box = self._box(ends[:, 0].min(), ends[:, 1].min(), ends[:, 0].max(), ends[:, 1].max(), ox, W, H)
            if box is not None:
                x0, y0, x1, y1 = box
                shape = (y1 - y0, x1 - x0)
                dre = splat(p, echo.amplitude, (x0, y0), shape)
                (fre,) = self.beam.form([dre], y0)  # real (coherent) source: the Q part stays zero
                fim = None
                if echo.walls:
                    wre, wim = self._coherent_walls(echo.walls, (x0, y0), shape)
                    fre, fim = fre + wre, wim
                for re, im in fields:
                    re[y0:y1, x0 - ox:x1 - ox] += fre
                    if fim is not None:
                        im[y0:y1, x0 - ox:x1 - ox] += fim
        if pose.bolus > 0:
            c = self.plan.bolus_centre_px
            rx = self.plan.bolus_radius_mm * math.sqrt(pose.bolus) * px
            ry = 0.5 * rx
            cy = c[1] - 0.6 * ry
            box = self._box(c[0] - rx, cy - ry, c[0] + rx, cy + ry, ox, W, H)
            if box is not None:
                x0, y0, x1, y1 = box
                shape = (y1 - y0, x1 - x0)
                fx = slice(x0 - ox, x1 - ox)
                yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
                q = ((xx - c[0]) / rx) ** 2 + ((yy - cy) / ry) ** 2
                m = 0.92 * np.clip((1.0 - q) * 1.5, 0.0, 1.0) * self.anatomy.soft_tissue[y0:y1, x0:x1]
                # Microbubbles in the injectate: sparse moving scatterers, the same in every look.
                bub = (frng.random(shape) < 0.003) & (m > 0.6)
                bre = bub * frng.normal(0, 0.7, shape).astype(np.float32)
                bim = bub * frng.normal(0, 0.7, shape).astype(np.float32)
                for (re, im), lk in zip(fields, self.looks):  # the injectate displaces tissue scatterers
                    fre, fim = self.beam.form([bre - m * lk.src_re[y0:y1, x0:x1],
                                               bim - m * lk.src_im[y0:y1, x0:x1]], y0)
                    re[y0:y1, fx] += fre
                    im[y0:y1, fx] += fim
                enh = 10 ** (np.minimum(np.cumsum(m, axis=0) * s * 1.2, 6.0) / 20)  # posterior enhancement
                g[y0:y1, fx] *= enh
                g[y1:, fx] *= enh[-1]
        # Metal shadows the tissue below the in-plane part of the shaft.
        for far, near in echo.in_plane_segments_px:
            xa, xb = sorted((far[0], near[0]))
            ca, cb = int(max(math.floor(xa), ox)), int(min(math.ceil(xb) + 1, ox + W))
            if cb <= ca:
                continue
            xsf = np.arange(ca, cb, dtype=np.float64)
            yl = np.interp(xsf, [far[0], near[0]] if far[0] < near[0] else [near[0], far[0]],
                           [far[1], near[1]] if far[0] < near[0] else [near[1], far[1]])
            below = np.arange(H)[:, None] > (yl + echo.diameter_px)[None, :]
            g[:, ca - ox:cb - ox] *= np.where(below, np.float32(0.85), np.float32(1.0))

    def _coherent_walls(self, walls, origin_px: tuple[int, int], shape: tuple[int, int]):
        """IQ field (re, im) on the box at ``origin_px`` of a "coherent" needle's walls (:mod:`.coherent`)."""
        x0, y0 = origin_px
        h, w = shape
        field_ = np.zeros(h * w, np.complex128)
        yy, xx = np.divmod(np.arange(h * w), w)
        pix = np.column_stack([xx + x0, yy + y0]).astype(np.float64)
        for start, d, length, amp in walls:
            mid_row = start[1] + 0.5 * length * d[1]
            sig = self.beam.sigmas_px(mid_row)
            reach = 4.0 * max(sig) + 1.0
            q = pix - start
            along = q @ d
            near = (np.abs(q[:, 0] * d[1] - q[:, 1] * d[0]) <= reach) & (along >= -reach) & (along <= length + reach)
            field_[near] += wall_field(pix[near], start, d, length, amp, sig, self.wavevectors, self.carrier)
        field_ *= self.coherent_gain
        return field_.real.reshape(shape).astype(np.float32), field_.imag.reshape(shape).astype(np.float32)

    def _needle_truth(self, echo: NeedleEcho, pose, ox: int, mask: np.ndarray):
        """(tail, tip, tip_visible) in frame px from the visible pieces inside the frame; draws the mask."""
        H, W = mask.shape
        pieces = []
        for far, near in echo.visible_segments_px:
            clipped = _clip_segment(far - (ox, 0), near - (ox, 0), W, H)
            if clipped is not None and np.hypot(*(clipped[1] - clipped[0])) * self.spacing_mm[0] >= 1.0:
                pieces.append((clipped, np.allclose(clipped[1], near - (ox, 0))))
        if not pieces:
            return None
        thick = max(2, int(round(echo.diameter_px)))
        for (a, b), _ in pieces:
            cv2.line(mask, tuple(int(round(v)) for v in a), tuple(int(round(v)) for v in b), 1, thick)
        tail = pieces[0][0][0]
        tip_piece, tip_inside = pieces[-1]
        tip = tip_piece[1]
        tip_visible = bool(echo.tip_visible and tip_inside)
        return tail, tip, tip_visible


def _clip_segment(a: np.ndarray, b: np.ndarray, w: int, h: int):
    """Clip segment a->b to the box [0, w-1] x [0, h-1] (Liang-Barsky); None when outside."""
    d = b - a
    t0, t1 = 0.0, 1.0
    for p, q in ((-d[0], a[0]), (d[0], (w - 1) - a[0]), (-d[1], a[1]), (d[1], (h - 1) - a[1])):
        if p == 0:
            if q < 0:
                return None
            continue
        r = q / p
        if p < 0:
            t0 = max(t0, r)
        else:
            t1 = min(t1, r)
        if t0 > t1:
            return None
    return np.array([a + t0 * d, a + t1 * d])
