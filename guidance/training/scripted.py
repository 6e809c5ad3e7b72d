"""A scripted needle insertion with known truth, built geometrically.

Used by the tests and the demo report: the needle pivots about a skin entry
point, advances, is withdrawn, turned and re-advanced, so the number of
redirections, the path length and the final position are known exactly.
Produces contract records (as a recording shows them live), events and, on
request, a simple grey image per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass(frozen=True)
class Script:
    """What the scripted operator does. Lengths in pixels, speeds in px/s."""

    pass_angles_deg: tuple[float, ...] = (30.0, 38.0)
    """Angles of the passes before the final one (each ends in a withdrawal)."""
    final: str = "target"
    """'target' ends on the cartilage surface, 'bone' drives on to the bone."""
    fps: float = 20.0
    spacing_mm: float = 0.1
    size_px: tuple[int, int] = (480, 400)
    entry_px: tuple[float, float] = (40.0, 30.0)
    pass_depth_px: float = 200.0
    withdraw_to_px: float = 100.0
    advance_px_s: float = 80.0
    withdraw_px_s: float = 120.0
    turn_s: float = 0.6
    lost_s: tuple[float, float] | None = None
    """Interval (s from start) in which the needle is not detected."""
    noise_px: float = 0.0
    seed: int = 0
    t0_s: float = 100.0
    """Clock of the first frame (recordings do not start at 0)."""


@dataclass
class ScriptedSession:
    records: list[dict]
    events: list[dict]
    script: Script
    truth: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    def image(self, i: int) -> np.ndarray:
        return render_image(self.script, self.records[i])


def bone_y_px(x: np.ndarray, width_px: int) -> np.ndarray:
    """Bone surface: a shallow trough, like the femoral trochlea."""
    return 290.0 + 40.0 * ((np.asarray(x, float) - width_px * 0.55) / (width_px * 0.55)) ** 2


CARTILAGE_PX = 20.0


def _target_px(sc: Script) -> np.ndarray:
    x = sc.size_px[0] * 0.55
    return np.array([x, float(bone_y_px(x, sc.size_px[0])) - CARTILAGE_PX])


def _depth_to(sc: Script, angle_deg: float, below_px: float) -> float:
    """Depth along a ray from the entry at which the tip reaches ``below_px`` above the bone."""
    u = np.array([math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))])
    d = np.linspace(0, 800, 16001)
    p = np.asarray(sc.entry_px) + d[:, None] * u
    gap = bone_y_px(p[:, 0], sc.size_px[0]) - below_px - p[:, 1]
    return float(d[np.argmax(gap <= 0)])


def scripted_insertion(script: Script = Script()) -> ScriptedSession:
    """Build the session: keyframes (t, depth, angle) sampled at ``fps``."""
    sc = script
    entry = np.asarray(sc.entry_px)
    tgt = _target_px(sc)
    final_angle = math.degrees(math.atan2(*(tgt - entry)[::-1]))
    final_depth = (float(np.hypot(*(tgt - entry))) if sc.final == "target"
                   else _depth_to(sc, final_angle, 0.0))
    keys = [(0.0, 40.0, sc.pass_angles_deg[0] if sc.pass_angles_deg else final_angle)]

    def go(depth=None, angle=None, dt=None):
        t, d, a = keys[-1]
        depth = d if depth is None else depth
        angle = a if angle is None else angle
        if dt is None:
            speed = sc.advance_px_s if depth >= d else sc.withdraw_px_s
            dt = abs(depth - d) / speed
        keys.append((t + dt, depth, angle))

    go(dt=0.5)
    angles = list(sc.pass_angles_deg) + [final_angle]
    for k, a in enumerate(sc.pass_angles_deg):
        go(depth=sc.pass_depth_px)
        go(depth=sc.withdraw_to_px)
        go(angle=angles[k + 1], dt=sc.turn_s)
    go(depth=final_depth)
    go(dt=1.5)
    kt, kd, ka = (np.array(v) for v in zip(*keys))
    n = int(math.floor(kt[-1] * sc.fps)) + 1
    t = np.arange(n) / sc.fps
    depth = np.interp(t, kt, kd)
    angle = np.interp(t, kt, ka)
    u = np.stack([np.cos(np.radians(angle)), np.sin(np.radians(angle))], axis=1)
    tip = entry + depth[:, None] * u
    tail = np.broadcast_to(entry, tip.shape).copy()
    rng = np.random.default_rng(sc.seed)
    if sc.noise_px > 0:
        tip = tip + rng.normal(0, sc.noise_px, tip.shape)
        tail = tail + rng.normal(0, sc.noise_px, tail.shape)
    lost = np.zeros(n, bool)
    if sc.lost_s is not None:
        lost = (t >= sc.lost_s[0]) & (t < sc.lost_s[1])

    w = sc.size_px[0]
    xs = np.arange(0.0, w, 8.0)
    bone = np.stack([xs, bone_y_px(xs, w)], axis=1)
    surface = bone - [0.0, CARTILAGE_PX]
    bone_l, surf_l = np.round(bone, 2).tolist(), np.round(surface, 2).tolist()
    sp = [sc.spacing_mm, sc.spacing_mm]
    records = []
    traj_of = _trajectory_fn(surface, bone, sc.spacing_mm)
    for i in range(n):
        needle = None
        if not lost[i]:
            tp, tl = np.round(tip[i], 2).tolist(), np.round(tail[i], 2).tolist()
            needle = {"tip_px": tp, "shaft_px": [tl, tp], "confidence": 0.95,
                      "angle_deg": round(math.degrees(math.atan2(tp[1] - tl[1], tp[0] - tl[0])), 2)}
        records.append({"frame": i, "t_s": round(sc.t0_s + t[i], 6), "needle": needle,
                        "target": {"kind": "cartilage", "surface_px": surf_l, "bone_px": bone_l,
                                   "cartilage_thickness_mm": CARTILAGE_PX * sc.spacing_mm},
                        "trajectory": traj_of(needle), "ms": {"total": 5.0},
                        "tracking": "lost" if lost[i] else "tracking", "spacing_mm": sp})
    inj_t = sc.t0_s + kt[-1] - 0.75
    events = [{"kind": "injection", "t_s": inj_t, "data": {}}]
    # truth from the keyframes: straight advances/withdrawals plus arcs while turning
    dd = np.abs(np.diff(kd))
    arcs = kd[1:] * np.abs(np.radians(np.diff(ka)))
    turns = np.abs(np.diff(angles)) if len(angles) > 1 else np.zeros(0)
    truth = {"redirections": int(np.sum(turns > 1e-6)), "withdrawals": len(sc.pass_angles_deg),
             "path_length_mm": float(np.sum(dd + arcs) * sc.spacing_mm),
             "lost_episodes": int(sc.lost_s is not None),
             "visible_fraction": float(1 - lost.mean()),
             "final_angle_deg": final_angle, "target_px": tgt.tolist(),
             "tip_px": tip, "duration_s": float(t[-1])}
    meta = {"source": "scripted", "spacing_mm": sp, "fps": sc.fps, "frames": n,
            "size_px": list(sc.size_px)}
    return ScriptedSession(records, events, sc, truth, meta)


def _trajectory_fn(surface: np.ndarray, bone: np.ndarray, spacing_mm: float):
    """Record the guidance's path to the target too, when guidance.trajectory is present."""
    try:
        from ..contract import trajectory_to_dict
        from ..trajectory import compute_trajectory
        from ..types import NeedleDetection, TargetDetection
    except ImportError:
        return lambda needle: None
    target = TargetDetection("cartilage", surface, bone)

    def traj(needle: dict | None) -> dict | None:
        if needle is None:
            return None
        nd = NeedleDetection(tuple(needle["tip_px"]), tuple(needle["shaft_px"][0]), needle["confidence"])
        return trajectory_to_dict(compute_trajectory(nd, target, (spacing_mm, spacing_mm)))
    return traj


def render_image(sc: Script, record: dict) -> np.ndarray:
    """A grey frame for a record: speckle, bright bone with shadow, dark cartilage, the needle."""
    w, h = sc.size_px
    rng = np.random.default_rng(sc.seed * 100003 + int(record["frame"]))
    img = rng.gamma(2.0, 18.0, (h, w)).clip(0, 255).astype(np.uint8)
    tg = record.get("target") or {}
    if tg.get("bone_px"):
        bone = np.asarray(tg["bone_px"], float)
        surf = np.asarray(tg["surface_px"], float)
        shadow = np.concatenate([bone, [[w, h], [0, h]]]).astype(np.int32)
        cv2.fillPoly(img, [shadow], 8)
        band = np.concatenate([surf, bone[::-1]]).astype(np.int32)
        cv2.fillPoly(img, [band], 25)
        cv2.polylines(img, [bone.astype(np.int32)], False, 235, 4, cv2.LINE_AA)
    nd = record.get("needle")
    if nd:
        (x0, y0), (x1, y1) = nd["shaft_px"]
        cv2.line(img, (int(x0), int(y0)), (int(x1), int(y1)), 210, 3, cv2.LINE_AA)
    return cv2.GaussianBlur(img, (3, 3), 0)
