"""Detection on frames from a second, independent image-formation model (not ``guidance.sim``).

    python bench/eval_foreign.py [--frames 120] [--seed 0] [--out-dir DIR] [--detectors auto,classical]
                                 [--needle walls|scatterers]

The detector will be judged on physics-based simulations made with other tools.
This script makes frames the way such tools do and none of our training data
did: complex Gaussian scatterers with an echogenicity map, specular lines for
the bone surface and the needle's two walls with their reverberations, one
coherent convolution with a Gaussian pulse (baseband), the envelope, depth
attenuation with a TGC that does not fully undo it, and log compression over
a 45-60 dB dynamic range. No scanner screen, no JPEG, no speckle texture from
our simulator. Half the frames hold a straight needle entering from a side edge
(20-50 degrees, 0.5-0.9 mm across), a quarter of all frames a bright straight
fascia as a distractor. ``--needle scatterers`` makes the needle the way
point-scatterer tools (Field II phantoms) usually do: a cylinder of dense,
strong random scatterers, with no specular walls and no reverberation, so it
shows as a bright speckled band. Every frame is detected alone; figures from
``guidance.evaluate``. ``--out-dir`` writes a contact sheet of the first frames
with truth (green) and detections (red), one of the frames whose tip is farthest
off, and every detector's lines and the truth as JSON Lines for ``guidance eval``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from guidance.contract import needle_to_dict, target_to_dict
from guidance.detect import load_detector
from guidance.evaluate import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_sim import _write as write_jsonl  # noqa: E402  (the same layout guidance eval reads)


def _polyline_mask(shape, pts_px, thickness_px) -> np.ndarray:
    m = np.zeros(shape, np.float32)
    cv2.polylines(m, [np.round(pts_px * 16).astype(np.int32)], False, 1.0, max(1, int(round(thickness_px))),
                  cv2.LINE_AA, shift=4)
    return m


def make_frame(rng: np.random.Generator, size=(512, 512), needle: bool = True, needle_model: str = "walls"):
    """One B-mode frame (uint8) and its contract truth line."""
    w, h = size
    depth_mm = rng.uniform(25.0, 40.0)
    sp = depth_mm / h                                     # square pixels, mm
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Echogenicity: layered soft tissue (skin, subcutis, muscle), smooth random variation.
    layers = np.cumsum(rng.uniform(1.5, 5.0, 6)) / sp
    tilt = rng.uniform(-0.08, 0.08, 6)
    echo = np.full((h, w), 0.6, np.float32)
    for y0, t in zip(layers, tilt):
        echo[yy > y0 + t * (xx - w / 2)] = rng.uniform(0.35, 1.0)
    echo *= cv2.GaussianBlur(rng.uniform(0.7, 1.3, (h // 16, w // 16)).astype(np.float32), (0, 0), 1.5).repeat(
        16, 0).repeat(16, 1)[:h, :w]
    # Bone: a smooth convex curve deep in the frame, cartilage (hypoechoic) above it, shadow below.
    bx = np.arange(w, dtype=np.float32)
    by = (rng.uniform(0.55, 0.75) * h - rng.uniform(0.0, 0.12) * h * np.exp(-((bx - rng.uniform(0.3, 0.7) * w) /
                                                                              (rng.uniform(0.25, 0.5) * w)) ** 2)
          + rng.uniform(-0.05, 0.05) * (bx - w / 2))
    cart_px = rng.uniform(1.5, 3.0) / sp
    below = yy > by[None, :]
    echo[(yy > by[None, :] - cart_px) & ~below] = 0.08
    echo[below] *= 0.03
    # Scatterers (complex Gaussian) and specular reflectors.
    scat = (rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w))).astype(np.complex64) * echo
    spec = np.zeros((h, w), np.complex64)
    bone_pts = np.stack([bx, by], 1)
    spec += 9.0 * _polyline_mask((h, w), bone_pts, 1) * np.exp(1j * rng.uniform(0, 2 * np.pi))
    spec += 2.5 * _polyline_mask((h, w), bone_pts - [0, cart_px], 1)       # cartilage surface
    if rng.random() < 0.25:  # a straight fascia: the distractor false needles come from
        a = np.radians(rng.uniform(-35, 35))
        p0 = np.array([rng.uniform(0.1, 0.6) * w, rng.uniform(0.1, 0.4) * h])
        p1 = p0 + rng.uniform(4, 10) / sp * np.array([np.cos(a), np.sin(a)])
        spec += rng.uniform(2.0, 5.0) * _polyline_mask((h, w), np.stack([p0, p1]), 1)
    truth_needle = None
    if needle:
        ang = np.radians(rng.uniform(20.0, 50.0))
        left = rng.random() < 0.5
        d = np.array([np.cos(ang) if left else -np.cos(ang), np.sin(ang)])
        tail = np.array([0.0 if left else w - 1.0, rng.uniform(0.0, 0.15) * h])
        tip_depth = rng.uniform(0.3, 0.85) * float(by.min())          # above the bone
        length = max((tip_depth - tail[1]) / d[1], 4.0 / sp)
        length = min(length, (w - 2.0) / abs(d[0]))                     # the tip stays in the frame
        tip = tail + length * d
        diam = rng.uniform(0.5, 0.9) / sp
        n = np.array([-d[1], d[0]])
        if needle_model == "scatterers":
            # a cylinder of dense strong scatterers about the axis (random amplitude and phase)
            m = max(int(length * diam * 2), 1)
            u, v = rng.uniform(0, length, m), rng.uniform(-diam / 2, diam / 2, m)
            pts = tail + n * np.sign(n[1]) * diam / 2 + u[:, None] * d + v[:, None] * n
            xi, yi = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
            ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            amp = rng.uniform(2.0, 5.0) * (rng.standard_normal(m) + 1j * rng.standard_normal(m))
            np.add.at(spec, (yi[ok], xi[ok]), amp[ok].astype(np.complex64))
        else:
            gain = rng.uniform(3.0, 8.0) * np.cos(ang) ** 1.5          # steeper: less specular echo back
            for k in range(4):                                            # two walls, then reverberations
                off = n * (diam * (k % 2) + 2 * diam * (k // 2)) * np.sign(n[1])
                spec += gain * 0.55 ** k * _polyline_mask((h, w), np.stack([tail + off, tip + off]), 1)
        mid = tail + n * np.sign(n[1]) * diam / 2                      # the axis: what the truth means
        axis_tip = tip + n * np.sign(n[1]) * diam / 2
        truth_needle = {"tip_px": axis_tip.tolist(), "shaft_px": [mid.tolist(), axis_tip.tolist()],
                        "angle_deg": float(np.degrees(np.arctan2(d[1], d[0])))}
    # Pulse: Gaussian, axial 0.08-0.2 mm and lateral 0.15-0.4 mm (1 SD: a 7-15 MHz linear probe
    # near its focus); baseband convolution.
    sy, sx = rng.uniform(0.08, 0.2) / sp, rng.uniform(0.15, 0.4) / sp
    field = scat + spec
    env = np.abs(cv2.GaussianBlur(field.real, (0, 0), sx, sigmaY=sy)
                 + 1j * cv2.GaussianBlur(field.imag, (0, 0), sx, sigmaY=sy))
    att_db = rng.uniform(0.3, 0.8) * (yy * sp / 10.0) * 2 * rng.uniform(3.0, 5.0)    # dB/cm/MHz x depth x f
    env *= 10 ** (-(att_db * rng.uniform(0.2, 0.6)) / 20)                               # TGC undoes the rest
    db = 20 * np.log10(env + 1e-6)
    top = np.percentile(db, 99.9)
    dr = rng.uniform(45.0, 60.0)
    img = np.clip((db - (top - dr)) / dr, 0, 1) ** rng.uniform(0.8, 1.3) * 255
    img = img.astype(np.uint8)
    target = {"kind": "cartilage", "surface_px": (bone_pts - [0, cart_px]).tolist(), "bone_px": bone_pts.tolist(),
              "cartilage_thickness_mm": float(cart_px * sp)}
    return img, (sp, sp), {"needle": truth_needle, "target": target, "spacing_mm": [sp, sp]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detectors", default="auto,classical")
    ap.add_argument("--out-dir", type=Path,
                    help="write each detector's lines and the truth as JSON Lines (for `guidance eval`), a contact "
                         "sheet of the first frames and one of the frames whose tip is farthest off")
    ap.add_argument("--needle", choices=("walls", "scatterers"), default="walls",
                    help="the needle as two specular walls with reverberations, or as a cylinder of strong scatterers")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    frames = [make_frame(rng, needle=(k % 2 == 0), needle_model=args.needle) for k in range(args.frames)]
    out = {"frames": len(frames), "seed": args.seed, "needle_model": args.needle}
    run_name = f"foreign_{args.needle}_s{args.seed}"
    if args.out_dir is not None:  # the truth once, whatever the detectors
        write_jsonl(args.out_dir / "truth" / run_name / "truth.jsonl",
                    [{"frame": k, **t} for k, (_, _, t) in enumerate(frames)])
    for name in args.detectors.split(","):
        det = load_detector(name)
        pairs, dets = [], []
        for k, (img, sp, truth) in enumerate(frames):
            d = det.detect(img, spacing_mm=sp)
            dets.append(d)
            truth = {"frame": k, **truth}
            pairs.append(({"frame": k, "needle": needle_to_dict(d.needle), "target": target_to_dict(d.target)}, truth))
        r = evaluate(pairs)
        out[det.name] = {k: r[k] for k in ("tip_error", "tip_along_error", "tip_short_rate", "tip_beyond_rate",
                                           "angle_error_deg", "needle_recall", "false_positive_rate",
                                           "bone_distance", "bone_coverage", "cartilage_thickness_error_mm")}
        if args.out_dir is not None:
            _write_outputs(args.out_dir, run_name, det.name, frames, dets, pairs)
    print(json.dumps(out, indent=1))
    return 0


def _write_outputs(out_dir: Path, run_name: str, det_name: str, frames, dets, pairs) -> None:
    """The detector's lines laid out as ``bench/eval_sim.py`` writes them, and two contact sheets
    (truth green, detection red)."""
    tag = det_name.replace(":", "_").replace("/", "_")
    write_jsonl(out_dir / tag / f"{run_name}.jsonl", [p for p, _ in pairs])
    # the worst tips: how far each detected tip is from the true one (px), found needles only
    off = [np.hypot(*np.subtract(d.needle.tip_px, t["needle"]["tip_px"])) if d.needle is not None and t["needle"]
           else -1.0 for d, (_, t) in zip(dets, pairs)]
    worst = [k for k in np.argsort(off)[::-1][:8] if off[k] > 0]
    for name, ks in (("first", range(min(12, len(frames)))), ("worst_tips", worst)):
        tiles = [_draw(frames[k][0], dets[k].needle, pairs[k][1]["needle"]) for k in ks]
        if len(tiles) >= 4:
            rows = [np.hstack(tiles[i:i + 4]) for i in range(0, len(tiles) - len(tiles) % 4, 4)]
            cv2.imwrite(str(out_dir / f"{run_name}_{tag}_{name}.png"), np.vstack(rows))


def _draw(img, needle, truth_needle) -> np.ndarray:
    bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if truth_needle is not None:
        a, b = (tuple(int(round(v)) for v in p) for p in truth_needle["shaft_px"])
        cv2.line(bgr, a, b, (0, 200, 0), 1)
    if needle is not None:
        cv2.line(bgr, tuple(int(round(v)) for v in needle.tail_px), tuple(int(round(v)) for v in needle.tip_px),
                 (0, 0, 255), 1)
    return cv2.resize(bgr, (256, 256), interpolation=cv2.INTER_AREA)


if __name__ == "__main__":
    sys.exit(main())
