"""Knee-like frames from a physics-based simulator of another project: PyMUST (SIMUS).

    pip install pymust                      # bench only; not a dependency of the system
    python bench/pymust_frames.py --out DIR [--frames 60] [--seed 0] [--probe L11-5v] [--spacing 0.075]
                                  [--needle-style walls|scatter]
    guidance detect DIR/frames --spacing 0.075 --no-track --out pred.jsonl
    guidance eval pred.jsonl DIR/truth.jsonl

The detector will be judged on physics-based simulations made with other tools.
``bench/eval_foreign.py`` imitates such tools with our own code; this script
uses one of them. PyMUST's ``simus`` computes the radio-frequency signals of a
linear array (the L11-5v by default: 128 elements, 7.6 MHz) from point
scatterers, for five plane waves steered -12 to +12 degrees; ``dasmtx`` beamforms
them (delay and sum, receive f-number chosen by MUST), the five are compounded
coherently, a TGC undoes most of the attenuation, and the envelope is
log-compressed over 45-60 dB.
Nothing of ``guidance.sim`` is used, and no scanner post-processing is added.

Each frame is its own scene: layered soft tissue with septa and striations,
a bright bone surface (a dome, or a trochlea's groove) with its shadow, a
near-anechoic cartilage band over it with a thin bright top, and in two frames
of three a straight needle entering from a side edge at 15-55 degrees. The
needle is either a cylinder of dense strong scatterers (as Field II phantoms
make it) or two walls of closely spaced reflectors, which return their echo
coherently, so a steep walled needle is faint as it is on a real scanner. In a
quarter of the frames a straight fascia is a distractor. Pixels are square,
``--spacing`` mm (0.075), the image spans the array's width and 30 mm of depth.

Writes ``DIR/frames/NNNNN.png``, ``DIR/truth.jsonl`` (the lines of
``../shared/CONTRACT.md`` with the true values; the needle is its axis, tail
where it enters the image) and ``DIR/meta.json``. Existing frames are kept, so
an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

X_HALF_MM = 17.5           # image half-width (the L11-5v's aperture is 38.4 mm)
Z0_MM, Z1_MM = 0.5, 30.5    # image depth range
ANGLES_DEG = (-12.0, -6.0, 0.0, 6.0, 12.0)
TISSUE_PER_MM2 = 20.0       # about three scatterers per resolution cell


def reflector_line(p0, p1, amp: float, step_mm: float, jitter_mm: float = 0.0,
                   rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reflectors (x, z in mm, amplitude) every ``step_mm`` along a segment: closely spaced, they
    echo like a surface (a septum, a needle's wall); ``jitter_mm`` roughens them, drawn from ``rng``."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    k = max(int(np.hypot(*(p1 - p0)) / step_mm), 2)
    t = np.linspace(0, 1, k)[:, None]
    q = p0 + t * (p1 - p0) + rng.normal(0, jitter_mm, (k, 2)) if jitter_mm else p0 + t * (p1 - p0)
    return q[:, 0], q[:, 1], amp * np.ones(k)


def silent_corners() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two silent scatterers at the far corners: every frame's echoes last as long, so the
    beamforming matrices built for the first frame fit all of them."""
    return np.array([-X_HALF_MM - 1, X_HALF_MM + 1]), np.array([Z1_MM + 1, Z1_MM + 1]), np.zeros(2)


def scene(rng: np.random.Generator, needle: bool, wavelength_mm: float) -> dict:
    """Scatterers (x, z in mm, signed amplitude) of one knee-like scene and its truth in mm."""
    # bone surface: a dome or a trochlea (two flanks and a groove), 14-24 mm deep
    bx = np.linspace(-X_HALF_MM - 1, X_HALF_MM + 1, 2400)
    base = rng.uniform(14.0, 24.0)
    if rng.random() < 0.5:
        bz = base + rng.uniform(2.0, 5.0) * ((bx - rng.uniform(-6, 6)) / X_HALF_MM) ** 2
    else:
        c, wdt = rng.uniform(-6, 6), rng.uniform(5.0, 9.0)
        bz = base - rng.uniform(2.0, 4.0) * np.exp(-((np.abs(bx - c) - wdt) / (0.6 * wdt)) ** 2) \
            + rng.uniform(0.5, 2.0) * np.exp(-((bx - c) / (0.5 * wdt)) ** 2)
    bz += rng.uniform(-0.08, 0.08) * bx
    cart = rng.uniform(1.5, 3.0)
    # echogenicity by depth: skin, subcutis, muscle or fat pad; cartilage near anechoic
    skin = rng.uniform(1.0, 2.0)
    subcut = skin + rng.uniform(3.0, 7.0)
    n = int(TISSUE_PER_MM2 * 2 * X_HALF_MM * (Z1_MM - Z0_MM + 1))
    x, z = rng.uniform(-X_HALF_MM - 1, X_HALF_MM + 1, n), rng.uniform(0.3, Z1_MM, n)
    zb = np.interp(x, bx, bz)
    tilt = rng.uniform(-0.06, 0.06)
    zt = z + tilt * x
    echo = np.where(zt < skin, 1.0, np.where(zt < subcut, rng.uniform(0.25, 0.45), rng.uniform(0.5, 0.8)))
    echo = echo * (1 + 0.3 * np.sin(x / rng.uniform(2, 6) + rng.uniform(0, 6)) * np.sin(z / rng.uniform(2, 6)))
    echo = np.where(z > zb - cart, 0.05, echo)
    keep = z < zb                                                   # the bone's shadow: nothing below
    pts = [(x[keep], z[keep], echo[keep] * rng.standard_normal(keep.sum()))]

    def line(p0, p1, amp, step_mm, jitter_mm=0.0):
        return reflector_line(p0, p1, amp, step_mm, jitter_mm, rng)

    # septa and muscle striations: thin bright lines near the skin's direction
    for _ in range(rng.integers(2, 6)):
        zc = rng.uniform(skin, base - cart - 1)
        a = np.radians(rng.uniform(-8, 8))
        xc, half = rng.uniform(-X_HALF_MM, X_HALF_MM), rng.uniform(3, 15)
        d = np.array([np.cos(a), np.sin(a)]) * half
        pts.append(line([xc, zc] - d, [xc, zc] + d, rng.uniform(0.3, 0.8), wavelength_mm / 3, 0.03))
    if rng.random() < 0.25:   # a straight oblique fascia: what false needles come from
        a = np.radians(rng.uniform(-35, 35))
        p0 = np.array([rng.uniform(-12, 8), rng.uniform(skin + 1, base - cart - 6)])
        p1 = p0 + rng.uniform(4, 10) * np.array([np.cos(a), np.sin(a)])
        pts.append(line(p0, p1, rng.uniform(0.6, 1.5), wavelength_mm / 4, 0.02))
    # bone surface (strong, closely spaced, slightly rough) and the cartilage's top interface
    step = wavelength_mm / 5
    arc = np.concatenate([[0], np.cumsum(np.hypot(np.diff(bx), np.diff(bz)))])
    s = np.arange(0, arc[-1], step)
    sx, sz = np.interp(s, arc, bx), np.interp(s, arc, bz)
    pts.append((sx, sz + rng.normal(0, 0.02, len(s)), rng.uniform(2.0, 4.0) * np.ones(len(s))))
    pts.append((sx, sz - cart + rng.normal(0, 0.02, len(s)), rng.uniform(0.4, 0.8) * np.ones(len(s))))

    truth_needle = None
    if needle:
        ang = np.radians(rng.uniform(15.0, 55.0))
        left = rng.random() < 0.5
        d = np.array([np.cos(ang) if left else -np.cos(ang), np.sin(ang)])
        entry = np.array([-X_HALF_MM if left else X_HALF_MM, rng.uniform(1.0, 6.0)])   # where the axis enters
        zmax = float(np.interp(0.0, bx, bz)) - cart
        tip_z = rng.uniform(entry[1] + 4.0 * d[1], max(entry[1] + 4.0 * d[1] + 0.1, zmax - 0.3))
        length = (tip_z - entry[1]) / d[1]
        length = min(length, (2 * X_HALF_MM - 1.0) / abs(d[0]))       # the tip stays in the image
        tip = entry + length * d
        tip_z = tip[1]
        if tip_z > float(np.interp(tip[0], bx, bz)) - cart - 0.2:     # not into the cartilage
            length = max(4.0, length - 3.0)
            tip = entry + length * d
        diam = rng.uniform(0.5, 0.9)
        nrm = np.array([-d[1], d[0]]) * (1 if d[0] > 0 else -1)         # points deeper
        back = entry - 3.0 * d                                          # the shaft goes on outside the image
        style = "scatter" if rng.random() < 0.5 else "walls"
        if style == "scatter":
            m = int((length + 3.0) * diam * 200)
            u, v = rng.uniform(0, length + 3.0, m), rng.uniform(-diam / 2, diam / 2, m)
            q = back + u[:, None] * d + v[:, None] * nrm
            pts.append((q[:, 0], q[:, 1], rng.uniform(2.0, 4.0) * rng.standard_normal(m)))
        else:
            amp = rng.uniform(1.5, 4.0)
            for off in (-diam / 2, diam / 2):
                pts.append(line(back + off * nrm, tip + off * nrm, amp, wavelength_mm / 6))
            q = tip + rng.uniform(-diam / 2, diam / 2, (40, 1)) * nrm        # the bevel
            pts.append((q[:, 0], q[:, 1], amp * rng.standard_normal(40)))
        truth_needle = {"tail_mm": entry, "tip_mm": tip, "style": style, "diam_mm": diam,
                        "angle_deg": float(np.degrees(np.arctan2(d[1], d[0])))}
    pts.append(silent_corners())
    xs, zs, rc = (np.concatenate(v) for v in zip(*pts))
    return {"x": xs, "z": zs, "rc": rc, "bone": (bx, bz), "cart_mm": cart, "needle": truth_needle}


class Imager:
    """PyMUST plane-wave imaging on a fixed pixel grid; the beamforming matrices are built once."""

    def __init__(self, probe: str, spacing_mm: float, angles_deg: tuple[float, ...] = ANGLES_DEG):
        import pymust

        self.pm = pymust
        self.params = []                                  # one per plane wave: simus stores its delays in it
        for _ in angles_deg:
            p = pymust.getparam(probe)
            p.fs = 4 * p.fc
            p.attenuation = 0.5                           # dB/cm/MHz, mostly undone by a TGC below
            p.fnumber = None                              # receive aperture grows with depth (MUST's own choice)
            self.params.append(p)
        self.param = self.params[0]
        nx = int(round(2 * X_HALF_MM / spacing_mm)) + 1
        nz = int(round((Z1_MM - Z0_MM) / spacing_mm)) + 1
        self.shape = (nz, nx)
        xi, zi = np.meshgrid(-X_HALF_MM + spacing_mm * np.arange(nx), Z0_MM + spacing_mm * np.arange(nz))
        self.xi, self.zi = xi * 1e-3, zi * 1e-3
        self.delays = [pymust.txdelay(p, np.radians(a)) for p, a in zip(self.params, angles_deg)]
        self.opt = pymust.utils.Options()
        self.opt.dBThresh = -30.0          # frequencies within 30 dB of the pulse's peak: 5x faster, same image
        self.opt.ElementSplitting = 1
        self.M = [None] * len(angles_deg)  # beamforming matrices, built on the first frame

    @property
    def wavelength_mm(self) -> float:
        return 1540.0 / self.param.fc * 1e3

    def compounded_iq(self, sc: dict) -> np.ndarray:
        """The scatterers' beamformed I/Q on the pixel grid, the plane waves summed coherently."""
        pm = self.pm
        iq_sum = 0
        for k, (dl, param) in enumerate(zip(self.delays, self.params)):
            rf, _ = pm.simus(sc["x"] * 1e-3, sc["z"] * 1e-3, sc["rc"], dl, param, self.opt)
            iq = pm.rf2iq(rf, param)
            if self.M[k] is None or self.M[k].shape[1] != iq.size:
                self.M[k] = pm.dasmtx(iq, self.xi, self.zi, dl, param)
            iq_sum = iq_sum + (self.M[k] @ iq.flatten(order="F")).reshape(self.shape, order="F")
        return iq_sum

    def image(self, sc: dict, rng: np.random.Generator) -> np.ndarray:
        iq_sum = self.compounded_iq(sc)
        # TGC: undo most of the round trip's attenuation (alpha f 2 z), not all of it
        f_mhz = self.param.fc * 1e-6
        gain_db = 0.5 * f_mhz * 2 * (self.zi * 100) * rng.uniform(0.7, 0.95)
        env = np.abs(iq_sum) * 10 ** (gain_db / 20)
        db = 20 * np.log10(env / np.percentile(env, 99.9) + 1e-9)
        dr = rng.uniform(45.0, 60.0)
        return (np.clip((db + dr) / dr, 0, 1) * 255).astype(np.uint8)


def truth_line(frame: int, sc: dict, sp: float, x_half_mm: float = X_HALF_MM, z0_mm: float = Z0_MM) -> dict:
    """The contract's line with the true values, in pixels of an image ``2 x_half_mm`` wide from depth
    ``z0_mm`` (also used by ``kwave_frames.py``)."""
    def px(p_mm):
        return [round((p_mm[0] + x_half_mm) / sp, 3), round((p_mm[1] - z0_mm) / sp, 3)]

    bx, bz = sc["bone"]
    inside = (bx >= -x_half_mm) & (bx <= x_half_mm)
    step = max(1, int(inside.sum() // 200))
    bone = [px(p) for p in np.stack([bx[inside], bz[inside]], 1)[::step]]
    surf = [px(p) for p in np.stack([bx[inside], bz[inside] - sc["cart_mm"]], 1)[::step]]
    needle = None
    if sc["needle"] is not None:
        nd = sc["needle"]
        needle = {"tip_px": px(nd["tip_mm"]), "shaft_px": [px(nd["tail_mm"]), px(nd["tip_mm"])],
                  "angle_deg": round(nd["angle_deg"], 3), "confidence": 1.0, "tip_visible": True,
                  "style": nd["style"], "diam_mm": round(nd["diam_mm"], 3)}
    return {"frame": frame, "t_s": 0.0, "needle": needle,
            "target": {"kind": "cartilage", "surface_px": surf, "bone_px": bone,
                       "cartilage_thickness_mm": round(sc["cart_mm"], 3)},
            "trajectory": None, "spacing_mm": [sp, sp]}


def make(out: Path, frames: int, seed: int, probe: str, spacing_mm: float, needle_style: str | None = None) -> None:
    (out / "frames").mkdir(parents=True, exist_ok=True)
    truth_path = out / "truth.jsonl"
    done = {json.loads(s)["frame"]: s for s in truth_path.read_text().splitlines()} if truth_path.exists() else {}
    logging.getLogger().setLevel(logging.ERROR)           # PyMUST warns on every call
    imager = Imager(probe, spacing_mm)
    lines = dict(done)
    for k in range(frames):
        rng = np.random.default_rng([seed, k])
        sc = scene(rng, needle=(k % 3 != 2), wavelength_mm=imager.wavelength_mm)
        if needle_style is not None and (sc["needle"] is None or sc["needle"]["style"] != needle_style):
            continue  # the frames kept are those of a full run, byte for byte
        png = out / "frames" / f"{k:05d}.png"
        if k in done and png.exists():
            continue
        t0 = time.perf_counter()
        img = imager.image(sc, rng)
        cv2.imwrite(str(png), img)
        lines[k] = json.dumps(truth_line(k, sc, spacing_mm))
        truth_path.write_text("".join(lines[i] + "\n" for i in sorted(lines)))
        print(f"[{k + 1}/{frames}] {len(sc['x'])} scatterers, {time.perf_counter() - t0:.0f} s", file=sys.stderr,
              flush=True)
    (out / "meta.json").write_text(json.dumps({
        "tool": "PyMUST simus + dasmtx", "probe": probe, "plane_waves_deg": ANGLES_DEG,
        "spacing_mm": [spacing_mm, spacing_mm], "frames": frames, "seed": seed, "needle_style": needle_style,
        "command": " ".join(["python", "bench/pymust_frames.py", "--out", str(out), "--frames", str(frames),
                             "--seed", str(seed), "--probe", probe, "--spacing", str(spacing_mm)]
                            + (["--needle-style", needle_style] if needle_style else []))}, indent=1))


def pymust_ready(script: str) -> bool:
    """Whether PyMUST can be imported (else says how to install it); one thread for its maths."""
    try:
        import pymust  # noqa: F401
    except ImportError:
        print(f"{script}: PyMUST is not installed (pip install pymust)", file=sys.stderr)
        return False
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe", default="L11-5v", help="a linear array PyMUST's getparam knows (L11-5v, L12-3v)")
    ap.add_argument("--spacing", type=float, default=0.075, help="pixel size, mm")
    ap.add_argument("--needle-style", choices=("walls", "scatter"), default=None,
                    help="image only the frames of the first FRAMES whose needle has this style")
    args = ap.parse_args()
    if not pymust_ready("pymust_frames.py"):
        return 2
    make(args.out, args.frames, args.seed, args.probe, args.spacing, args.needle_style)
    return 0


if __name__ == "__main__":
    sys.exit(main())
