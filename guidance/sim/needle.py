"""The needle: its motion plan over a sequence and its echo in one frame.

Geometry lives on the canvas grid (pixels, x right, y down, skin at row 0).
The needle enters the skin at ``entry_px`` beside the probe (in-plane
approach from the left or right end of the probe) and pivots there: a
redirect turns it about the entry point, a withdrawal shortens the inserted
length. The tip elevation (distance out of the imaging plane) swings about
the same point, so when the hand rolls the needle out of plane the tip goes
first and only the shaft near the skin stays visible.

Echo model: a metal shaft is a specular reflector. Its brightness falls as the
shaft steepens away from perpendicular to the beam (the echo is reflected
away from the probe); the bevel scatters more diffusely and stays brighter.
Both walls of the hollow shaft reflect, and sound ringing between them makes
the comet-tail reverberation: copies below the shaft at the wall spacing,
decaying. The shaft also shadows a little below it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .noise import smooth_curve

GAUGE_MM = {18: 1.27, 19: 1.07, 20: 0.91, 21: 0.82, 22: 0.72, 23: 0.64, 25: 0.51}
NEEDLE_STYLES = ("specular", "scatter", "walls", "coherent")
"""How the shaft echoes: a metal tube's specular walls with the far wall in the near one's shadow and
ringing between them (what scanners show), a cylinder of point scatterers (Field II-style), two
equally bright walls with no ringing (what single-scattering simulators such as PyMUST make of a tube),
or those two walls as continuous reflectors imaged by steered plane waves (:mod:`.coherent`: the
echo's strength and its fringes follow the walls' angle, as in PyMUST's compounded frames)."""
BEVEL_MM = 1.2
"""Length of the bevel, which scatters diffusely, at the tip."""
VISIBLE_LEVEL = 0.35
"""Fraction of the in-plane echo below which a piece of shaft counts as out of plane."""


@dataclass
class NeedlePose:
    """Where the needle is at one instant (canvas pixels)."""

    entry_px: np.ndarray
    direction: np.ndarray
    """Unit vector (dx, dy) from the entry toward the tip."""
    length_px: float
    tip_elevation_mm: float
    bolus: float
    """Injected fraction 0-1 of the bolus (0: no injection yet)."""
    phase: str

    @property
    def tip_px(self) -> np.ndarray:
        return self.entry_px + self.length_px * self.direction

    @property
    def angle_from_horizontal_deg(self) -> float:
        return math.degrees(math.atan2(abs(self.direction[1]), abs(self.direction[0])))


@dataclass
class Keyframe:
    t_s: float
    length_mm: float
    angle_deg: float
    elevation_mm: float
    bolus: float
    phase: str


@dataclass
class NeedlePlan:
    """A needle's motion over a sequence: keyframes plus hand tremor."""

    entry_px: np.ndarray
    side: int
    """+1: enters at the left and points right; -1: the opposite."""
    keys: list[Keyframe]
    spacing_mm: float
    gauge: int
    elevation_width_mm: float
    bolus_centre_px: np.ndarray
    bolus_radius_mm: float
    texture: np.ndarray
    """Along-shaft brightness modulation, one value per 0.1 mm from the tip."""
    tremor: np.ndarray = field(default_factory=lambda: np.zeros((3, 4, 3)))
    """(quantity: angle_deg, length_mm, elevation_mm) x (components) x (amplitude, hz, phase)."""
    bend_mm: float = 0.0
    """Bow of the shaft out of the imaging plane at mid-length (a bent needle shows in pieces)."""
    reverb: float = 1.0
    """Strength of the comet-tail reverberation (1: typical)."""
    style: str = "specular"
    """One of NEEDLE_STYLES."""
    scatter_seed: int = 0
    """Seed of the scatterers fixed in a "scatter" needle (they move with it)."""
    roughness: float = 0.0
    """A "coherent" needle's diffuse echo, as a fraction of a specular tube's."""
    ghosts: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    """A "coherent" needle's ghost lines: (offset across in diameters, + deeper; signed gain
    relative to a wall; how far past the tip it runs, mm) each."""

    @property
    def diameter_mm(self) -> float:
        return GAUGE_MM[self.gauge]

    @cached_property
    def scatterers(self) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """A "scatter" needle's scatterers, fixed in it and drawn once: (strength, px from the tip,
        offset across as a fraction of the diameter, signed gain), a 150 mm needle's worth."""
        rng = np.random.default_rng([self.scatter_seed, 0x5CA7])
        strength = rng.uniform(1.0, 5.0)
        n = int(2 * 150.0 / self.spacing_mm * (self.diameter_mm * (1.0 / self.spacing_mm)))  # 2 per px^2
        along_mm = rng.uniform(0.0, 150.0, n)
        across = rng.uniform(-0.5, 0.5, n)
        gain = rng.standard_normal(n)
        return float(strength), along_mm / self.spacing_mm, across, gain

    def pose(self, t_s: float) -> NeedlePose:
        times = np.array([k.t_s for k in self.keys])
        j = int(np.clip(np.searchsorted(times, t_s, side="right") - 1, 0, len(times) - 2))
        a, b = self.keys[j], self.keys[j + 1]
        f = float(np.clip((t_s - a.t_s) / max(b.t_s - a.t_s, 1e-9), 0.0, 1.0))
        f = f * f * (3 - 2 * f)  # hands accelerate and stop smoothly
        lerp = lambda p, q: p + (q - p) * f  # noqa: E731
        tr = self.tremor
        wob = (tr[..., 0] * np.sin(2 * math.pi * tr[..., 1] * t_s + tr[..., 2])).sum(axis=1)
        angle = lerp(a.angle_deg, b.angle_deg) + wob[0]
        length_mm = max(lerp(a.length_mm, b.length_mm) + wob[1], 0.0)
        elev = lerp(a.elevation_mm, b.elevation_mm) + wob[2]
        rad = math.radians(angle)
        d = np.array([self.side * math.cos(rad), math.sin(rad)])
        return NeedlePose(self.entry_px, d, length_mm / self.spacing_mm, elev,
                          lerp(a.bolus, b.bolus), a.phase)


def plan_needle(rng: np.random.Generator, *, cartilage_top_y_px: np.ndarray, frame_x0_px: int,
                frame_width_px: int, spacing_mm: float, duration_s: float, angle_range_deg: tuple[float, float],
                gauges: tuple[int, ...], out_of_plane: bool, inject: bool, redirect: bool = True,
                side: int | None = None, echogenic: bool = False, reverb: float = 1.0) -> NeedlePlan | None:
    """Choose an approach to a point on the cartilage and the motions that reach it.

    The target is a point of the cartilage top inside the frame; the entry
    point lies on the skin beyond the probe's end, so that the needle crosses
    the frame edge. Returns None when no target is reachable (no cartilage seen).
    """
    s = spacing_mm
    px = 1.0 / s
    w = len(cartilage_top_y_px)
    side = side if side is not None else int(rng.choice((-1, 1)))
    lo, hi = angle_range_deg
    cols = np.arange(w)
    with np.errstate(invalid="ignore"):
        surface_angle = np.arctan(np.gradient(cartilage_top_y_px))  # NaN off the bone: never chosen
    surface_angle = np.nan_to_num(surface_angle, nan=np.pi / 2 + math.radians(angle_range_deg[0]))
    for _ in range(8):
        angle = rng.uniform(lo, hi)
        tan_a = math.tan(math.radians(angle))
        run = cartilage_top_y_px / tan_a  # horizontal distance from entry to target, px
        # The entry lies beyond the probe's end (1 mm past the frame edge), the
        # target far enough inside the frame for a length of shaft to show, and
        # at least 2 mm from the far edge.
        left = cols - frame_x0_px
        right = frame_x0_px + frame_width_px - 1 - cols
        near, far = (left, right) if side > 0 else (right, left)
        from_edge = run - near - 1.0 * px
        shown = near - max(3.0 * px, 0.15 * frame_width_px)
        # No grazing approach: the path meets the surface at 25 degrees or more.
        phi = math.atan2(math.sin(math.radians(angle)), side * math.cos(math.radians(angle)))
        approach = np.abs((phi - surface_angle + np.pi / 2) % np.pi - np.pi / 2)
        ok = (np.isfinite(cartilage_top_y_px) & (from_edge >= 0) & (shown >= 0) & (far >= 2.0 * px)
              & (approach >= math.radians(25.0)))
        if ok.any():
            break
        lo, hi = max(lo - 5.0, 8.0), max(hi - 5.0, 10.0)
    else:
        return None
    cand = np.flatnonzero(ok)
    # Prefer targets well inside the frame: a longer stretch of shaft in view.
    weight = (near[cand] + 1.0) * (far[cand] + 1.0)
    x_t = float(rng.choice(cand, p=weight / weight.sum()))
    y_t = float(np.interp(x_t, cols, np.nan_to_num(cartilage_top_y_px, nan=0.0)))
    rad = math.radians(angle)
    reach_px = y_t / math.sin(rad)
    entry = np.array([x_t - side * reach_px * math.cos(rad), 0.0])
    standoff_mm = rng.uniform(0.05, 0.15)  # tip stops at the cartilage surface
    final_mm = reach_px * s - standoff_mm
    # Where the shaft crosses the frame edge: the tip starts a little beyond it.
    edge_x = frame_x0_px if side > 0 else frame_x0_px + frame_width_px - 1
    edge_mm = max((edge_x - entry[0]) * side / math.cos(rad) * s, 0.0)
    start_mm = edge_mm + rng.uniform(0.12, 0.3) * (final_mm - edge_mm)

    T = duration_s
    miss = rng.uniform(3.0, 8.0) * rng.choice((-1, 1)) if redirect else 0.0
    a0 = float(np.clip(angle + miss, 8.0, 70.0))
    mid_mm = start_mm + rng.uniform(0.45, 0.6) * (final_mm - start_mm)
    back_mm = mid_mm - rng.uniform(1.5, 3.0)
    f = lambda lo_, hi_: T * rng.uniform(lo_, hi_)  # noqa: E731
    keys = [Keyframe(0.0, start_mm, a0, 0.0, 0.0, "advance"),
            Keyframe(f(0.26, 0.32), mid_mm, a0, 0.0, 0.0, "pause"),
            Keyframe(f(0.36, 0.40), mid_mm, a0, 0.0, 0.0, "withdraw"),
            Keyframe(f(0.44, 0.48), back_mm, a0, 0.0, 0.0, "redirect"),
            Keyframe(f(0.52, 0.56), back_mm, angle, 0.0, 0.0, "advance"),
            Keyframe(f(0.74, 0.78), final_mm, angle, 0.0, 0.0, "pause"),
            Keyframe(f(0.80, 0.84), final_mm, angle, 0.0, 0.0, "inject" if inject else "pause"),
            Keyframe(T, final_mm, angle, 0.0, 1.0 if inject else 0.0, "inject" if inject else "pause")]
    if out_of_plane:  # the hand rolls the needle out of plane and back during the approach
        lost = rng.uniform(1.6, 2.8) * rng.choice((-1, 1))
        keys[1].elevation_mm = lost * 0.6
        keys[2].elevation_mm = lost
        keys[3].elevation_mm = lost
        keys[4].elevation_mm = lost * 0.5
    gauge = int(rng.choice(gauges))
    tremor = np.stack([
        np.column_stack([rng.uniform(0.03, 0.12, 4), rng.uniform(0.3, 9.0, 4), rng.uniform(0, 2 * math.pi, 4)]),
        np.column_stack([rng.uniform(0.01, 0.05, 4), rng.uniform(0.3, 9.0, 4), rng.uniform(0, 2 * math.pi, 4)]),
        np.column_stack([rng.uniform(0.02, 0.08, 4), rng.uniform(0.3, 6.0, 4), rng.uniform(0, 2 * math.pi, 4)]),
    ])
    # The hand's tremor must not poke the resting tip through the cartilage:
    # stand off by most of the depth and angle tremor's reach as well.
    shake_mm = 0.6 * (tremor[1, :, 0].sum() + math.radians(tremor[0, :, 0].sum()) * reach_px * s)
    for k in keys[5:]:
        k.length_mm = final_mm - shake_mm
    texture = np.exp(0.3 * smooth_curve(rng, 1200, 8.0)).astype(np.float32)
    if echogenic:  # echogenic needle: a band of dimples near the tip scatters back even when steep
        u_mm = np.arange(len(texture)) * 0.1
        band = u_mm < rng.uniform(10.0, 20.0)
        period = rng.uniform(0.8, 2.0)
        texture = texture * np.where(band & (np.sin(2 * math.pi * u_mm / period) > 0.2), rng.uniform(1.8, 3.0), 1.0)
        texture = texture.astype(np.float32)
    tip_final = entry + final_mm * px * np.array([side * math.cos(rad), math.sin(rad)])
    bend = rng.uniform(0.4, 0.9) * -np.sign(keys[2].elevation_mm) if out_of_plane else rng.uniform(-0.2, 0.2)
    return NeedlePlan(entry_px=entry, side=side, keys=keys, spacing_mm=s, gauge=gauge,
                      elevation_width_mm=rng.uniform(0.5, 0.9), bolus_centre_px=tip_final,
                      bolus_radius_mm=rng.uniform(1.5, 3.5), texture=texture, tremor=tremor, bend_mm=float(bend),
                      reverb=float(reverb))


@dataclass
class NeedleEcho:
    """The needle's coherent echo source and visible extent in one frame (canvas px)."""

    points_px: np.ndarray
    """(N, 2) deposit positions."""
    amplitude: np.ndarray
    """(N,) deposit amplitudes."""
    visible_segments_px: list[tuple[np.ndarray, np.ndarray]]
    """(far end, near-tip end) of each visible piece of shaft, far-to-tip order."""
    tip_visible: bool
    diameter_px: float
    shadow_segment_px: tuple[np.ndarray, np.ndarray] | None
    shaft_echo: float = 0.0
    """In-plane shaft echo amplitude per px of length (tissue scatterers are ~0.3-1)."""
    walls: list[tuple[np.ndarray, np.ndarray, float, np.ndarray]] = field(default_factory=list)
    """Style "coherent": the walls as continuous reflectors (start, unit direction, length in px,
    amplitude per px sampled evenly from the start), imaged by :func:`.coherent.wall_field`;
    ``points_px`` then holds only the bevel."""
    in_plane_segments_px: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    """The pieces at :data:`VISIBLE_LEVEL`, under which the metal shadows the tissue: the image does
    not depend on the truth's line."""


def needle_echo(plan: NeedlePlan, pose: NeedlePose, canvas_shape: tuple[int, int],
                brightness: float = 1.0, visible_level: float = VISIBLE_LEVEL) -> NeedleEcho:
    """Sample the shaft, walls, reverberations and bevel of the needle at ``pose``.

    ``visible_level`` (default :data:`VISIBLE_LEVEL`) only decides which pieces the truth calls
    visible; the echo, and the shadow under the shaft, do not depend on it.
    """
    h, w = canvas_shape
    s = plan.spacing_mm
    px = 1.0 / s
    step = 0.5
    d = pose.direction
    tip = pose.tip_px
    u = np.arange(0.0, pose.length_px, step)  # px from the tip back toward the entry
    pts = tip[None, :] - u[:, None] * d[None, :]
    inside = (pts[:, 0] >= -2) & (pts[:, 0] < w + 2) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
    u, pts = u[inside], pts[inside]
    diameter_px = plan.diameter_mm * px
    if len(u) == 0:
        return NeedleEcho(np.zeros((0, 2)), np.zeros(0), [], False, diameter_px, None)

    vis = _in_plane(plan, pose, u)
    if plan.style == "scatter":
        points, amp, shaft_echo = _scatterer_shaft(plan, pose, brightness, u[-1], diameter_px)
    else:
        points, amp, shaft_echo = _specular_shaft(plan, pose, brightness, u, pts, vis, diameter_px, step,
                                                  walls_only=plan.style in ("walls", "coherent"))

    segments = _pieces_above(vis, visible_level, u, pts, s, tip)
    # the metal's shadow is drawn under the pieces at the simulator's own line, whatever the truth's
    in_plane = segments if visible_level == VISIBLE_LEVEL else _pieces_above(vis, VISIBLE_LEVEL, u, pts, s, tip)
    tip_visible = bool(vis[0] >= visible_level) and u[0] < step * 2
    shadow = (pts[-1].copy(), pts[0].copy()) if len(pts) > 1 else None
    walls = []
    if plan.style == "coherent" and len(u) > 1:
        # The walls (the first 2 x len(u) deposits) as continuous reflectors, without the angle's
        # fall-off (the plane waves' phases make it); left among the points only as the weak
        # direct echo of the metal's roughness.
        n = len(u)
        specular = _specular_factor(pose)
        walls = [(points[j * n], -d, float(u[-1] - u[0]), amp[j * n:(j + 1) * n] / (step * specular))
                 for j in range(2)]
        wall_amp = amp[:n].copy()
        amp = amp.copy()
        amp[:2 * n] *= plan.roughness
        if len(plan.ghosts):
            gp, ga = _ghost_lines(plan, pose, u, wall_amp, diameter_px, step)
            points, amp = np.concatenate([points, gp]), np.concatenate([amp, ga])
    return NeedleEcho(points, amp.astype(np.float32), segments, tip_visible, diameter_px, shadow,
                      shaft_echo=shaft_echo, walls=walls, in_plane_segments_px=in_plane)


def _pieces_above(vis: np.ndarray, level: float, u: np.ndarray, pts: np.ndarray, spacing_mm: float,
                  tip: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(far end, near-tip end) of each piece of shaft whose echo is at least ``level`` of its in-plane
    echo and at least 1 mm long (shorter is a speck, not a shaft), far pieces first."""
    seen = vis >= level
    segments = []
    if seen.any():
        idx = np.flatnonzero(seen)
        breaks = np.flatnonzero(np.diff(idx) > 1) + 1
        for run in np.split(idx, breaks):
            if (u[run[-1]] - u[run[0]]) * spacing_mm < 1.0:
                continue
            segments.append((pts[run[-1]].copy(), pts[run[0]].copy()))
    segments.sort(key=lambda seg: -np.hypot(*(seg[1] - tip)))
    return segments


def _ghost_lines(plan: NeedlePlan, pose: NeedlePose, u: np.ndarray, wall_amp: np.ndarray,
                 diameter_px: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Deposits of a "coherent" needle's ghost lines (:attr:`NeedlePlan.ghosts`): the bands of
    parallel fringes and haze that plane-wave compounding draws beside a specular shaft, some
    running on past the tip (seen in PyMUST's frames, bench/pymust_frames.py).

    ``u`` are the axis samples (px back from the tip, ``step`` apart) and
    ``wall_amp`` a wall's deposit amplitudes there; returns positions (N, 2)
    in canvas px and amplitudes (N,)."""
    d = pose.direction
    normal = np.array([-d[1], d[0]]) * (1.0 if d[0] >= 0 else -1.0)  # points deeper
    out_p, out_a = [], []
    for offset, gain, extend_mm in plan.ghosts:
        ext = np.arange(-step, -extend_mm / plan.spacing_mm, -step)[::-1]  # past the tip
        uu = np.concatenate([ext, u])
        aa = np.concatenate([np.full(len(ext), wall_amp[0]), wall_amp]) * gain
        p = pose.tip_px[None, :] - uu[:, None] * d[None, :] + (offset * diameter_px) * normal[None, :]
        out_p.append(p)
        out_a.append(aa)
    return np.concatenate(out_p), np.concatenate(out_a)


def _in_plane(plan: NeedlePlan, pose: NeedlePose, u_px: np.ndarray) -> np.ndarray:
    """Visibility (0-1) of the shaft ``u_px`` back from the tip: the elevation out of the plane
    falls linearly to zero at the skin entry, plus the shaft's bow."""
    frac = u_px / max(pose.length_px, 1e-6)
    elev = pose.tip_elevation_mm * (1 - frac) + plan.bend_mm * np.sin(np.pi * frac)
    return np.exp(-(elev / plan.elevation_width_mm) ** 2)


def _specular_factor(pose: NeedlePose) -> float:
    """A specular tube's echo relative to a flat one's: it falls as the shaft steepens."""
    return max(math.exp(-(math.radians(pose.angle_from_horizontal_deg) / math.radians(32.0)) ** 2), 0.12)


def _specular_shaft(plan: NeedlePlan, pose: NeedlePose, brightness: float, u: np.ndarray, pts: np.ndarray,
                    vis: np.ndarray, diameter_px: float, step: float,
                    walls_only: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """Deposits of a metal tube: its two walls, the ringing between them and the bevel.

    ``pts`` are the axis samples ``u`` px back from the tip, ``step`` px apart,
    with their in-plane visibility ``vis``. Returns the deposits' positions
    (N, 2) in canvas px, their amplitudes (N,) and the in-plane shaft echo per
    px of length. ``walls_only``: the far wall as bright as the near one and no
    ringing, as a simulator of single scattering draws a tube (style "walls").
    """
    s = plan.spacing_mm
    px = 1.0 / s
    theta = math.radians(pose.angle_from_horizontal_deg)
    specular = _specular_factor(pose)
    tex = np.interp(u * s, np.arange(len(plan.texture)) * 0.1, plan.texture)
    base = brightness * 12.0 * specular * vis * tex * step
    bevel_len = BEVEL_MM * px
    bevel = np.where(u < bevel_len, brightness * 7.0 * max(specular, 0.35) * vis * step
                     * (1.0 - u / bevel_len * 0.5), 0.0)

    # Walls and ringing inside the shaft, spaced by the vertical chord of the tube.
    chord = diameter_px / max(math.cos(theta), 0.2)
    reverb_decay = 0.3 + 0.3 * specular
    offsets = [-chord / 2, chord / 2] + [chord / 2 + 0.5 * k * chord for k in range(1, 6)]
    gains = [1.0, 0.3] + [0.1 * plan.reverb * reverb_decay ** k * specular for k in range(1, 6)]
    if walls_only:
        offsets, gains = offsets[:2], [1.0, 1.0]
    all_pts = [pts + np.array([0.0, off]) for off in offsets]
    all_amp = [base * g for g in gains]
    all_pts.append(pts[u < bevel_len])
    all_amp.append(bevel[u < bevel_len])
    return np.concatenate(all_pts), np.concatenate(all_amp), float(brightness * 12.0 * specular)


def _scatterer_shaft(plan: NeedlePlan, pose: NeedlePose, brightness: float, u_max_px: float,
                     diameter_px: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Deposits of a needle made of strong point scatterers fixed in the shaft (:attr:`NeedlePlan.scatterers`).

    Returns their positions (N, 2) in canvas px, their amplitudes (N,) and the
    shaft's RMS echo per px of length.

    Two scatterers per square pixel of the shaft's section in the plane, each
    with a random signed amplitude 1-5 times a tissue scatterer's: a bright
    speckled band with no walls, no reverberation and no fall-off with the
    angle (point scatterers echo the same way in every direction).
    """
    strength, along_px, across, gain = plan.scatterers
    keep = along_px <= u_max_px
    u = along_px[keep]
    d = pose.direction
    normal = np.array([-d[1], d[0]])
    pts = pose.tip_px[None, :] - u[:, None] * d[None, :] + (across[keep] * diameter_px)[:, None] * normal[None, :]
    amp = brightness * strength * _in_plane(plan, pose, u) * gain[keep]
    return pts, amp.astype(np.float32), float(brightness * strength * np.sqrt(2 * diameter_px))


def splat(points_px: np.ndarray, amplitude: np.ndarray, origin_px: tuple[int, int],
          shape: tuple[int, int]) -> np.ndarray:
    """Bilinear deposit of point amplitudes onto a (rows, cols) grid whose top-left is ``origin_px`` (x, y)."""
    h, w = shape
    out = np.zeros(h * w, np.float64)
    if len(points_px):
        x = points_px[:, 0] - origin_px[0]
        y = points_px[:, 1] - origin_px[1]
        x0 = np.floor(x).astype(np.intp)
        y0 = np.floor(y).astype(np.intp)
        fx = x - x0
        fy = y - y0
        for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                            (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            xi, yi = x0 + dx, y0 + dy
            ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            out += np.bincount(yi[ok] * w + xi[ok], weights=(amplitude * wgt)[ok], minlength=h * w)
    return out.reshape(h, w).astype(np.float32)
