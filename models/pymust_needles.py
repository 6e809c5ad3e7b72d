"""Walled needles imaged by another project's simulator (PyMUST), drawn into training frames.

    pip install pymust                                        # training only
    python models/pymust_needles.py calibrate --out DIR       # tissue speckle's level, once (a few minutes)
    python models/pymust_needles.py make --out DIR --seed 1 --start 0 --count 150 [--minutes 50]
    python models/train.py ... --pymust-needles DIR --pymust-share 0.3

Why: PyMUST's walled needles (``bench/pymust_frames.py``) were all missed, and
our own imitation of their look (the ``coherent`` needle style) did not teach
the networks to see them (model card). So the look is taken from PyMUST
itself. ``make`` images a needle alone (two walls of reflectors lambda/6 apart,
0.4-1.3 mm across, a bevel of random scatterers, 3-32 degrees from the
horizontal, entering at the left edge) with plane waves (1, 3, 5 or 7, up to
+-8, 12 or 16 degrees; L11-5v or L12-3v), delay and sum, coherent compounding,
and keeps the linear envelope with the needle's axis in mm. On one core,
2-20 s a needle once an imager's beamforming matrices are built (40-70 s,
once per probe and set of plane waves: ``make`` takes the needles in that order). ``calibrate`` images tissue alone (20 scatterers per mm2,
amplitude 0.5 N(0, 1), as ``bench/pymust_frames.py``'s muscle) for the level
the needles' echo is scaled to.

:class:`NeedleLibrary` is ``make_sample``'s ``add_needle``: it resizes a needle's
envelope to the frame's mm per pixel, places it at the imaging region's left
or right edge at a random depth, and adds it to the frame's speckle as
incoherent power, on a log scale of 45-60 dB whose level is the frame's
median tissue. The evaluation frames of ``bench/pymust_frames.py`` (whole
scenes, their own needles) are never imaged here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np

GRID_MM = 0.075
WALL_AMPLITUDE = (1.5, 4.0)   # relative to the tissue's 0.5, as bench/pymust_frames.py's walled needles


class NeedleLibrary:
    """Needles imaged by PyMUST (``make``), drawn into frames as ``make_sample(add_needle=...)``."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        files = sorted(folder.glob("[0-9]*_[0-9]*.npz"))
        cal = folder / "tissue_calibration.npz"
        if not files or not cal.is_file():
            raise FileNotFoundError(f"{folder}: no needles or no tissue_calibration.npz "
                                    f"(python models/pymust_needles.py calibrate/make --out {folder})")
        self.tissue_level = float(np.median(np.load(cal)["env"]))
        self.needles = []
        for f in files:
            try:
                z = np.load(f)
                self.needles.append((z["env"].astype(np.float32), np.asarray(z["tail_mm"], float),
                                     np.asarray(z["tip_mm"], float), float(z["x0_mm"]), float(z["z0_mm"])))
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # cut short by an interrupted `make`
                raise ValueError(f"{f}: not a needle of `pymust_needles.py make` ({exc}); delete it and "
                                 f"run make again") from None

    def __len__(self) -> int:
        return len(self.needles)

    def __call__(self, image: np.ndarray, truth: dict, spacing_mm: tuple[float, float],
                 rng: np.random.Generator) -> dict | None:
        rx, ry, rw, rh = truth["region_px"]
        top = _surface_rows(truth, rx, rw) - ry - 1.0 / spacing_mm[1]   # 1 mm above the bone or cartilage
        for _ in range(5):  # a needle that does not fit above the bone here is swapped for another
            env, tail_mm, tip_mm, x0_mm, z0_mm = self.needles[int(rng.integers(len(self.needles)))]
            fx, fy = GRID_MM / spacing_mm[0], GRID_MM / spacing_mm[1]
            pw, ph = max(2, int(round(env.shape[1] * fx))), max(2, int(round(env.shape[0] * fy)))
            fx, fy = pw / env.shape[1], ph / env.shape[0]

            def px(p_mm):  # the envelope's pixel centres, then the resize's
                return np.array([((p_mm[0] - x0_mm) / GRID_MM + 0.5) * fx - 0.5,
                                 ((p_mm[1] - z0_mm) / GRID_MM + 0.5) * fy - 0.5])

            tail, tip = px(tail_mm), px(tip_mm)
            flip = rng.random() < 0.5
            if flip:  # mirrored, its right edge on the region's right edge
                tail[0], tip[0] = rw - 1 - tail[0], rw - 1 - tip[0]
            if not 2 <= tip[0] <= rw - 3:
                continue
            # rows: the entry under the region's top, the whole shaft above the surface
            on = tail + np.linspace(0.0, 1.0, 50)[:, None] * (tip - tail)
            lo = 1.0 - tail[1]
            hi = min(rh - 3.0 - tip[1], float(np.min(np.interp(on[:, 0], np.arange(rw), top) - on[:, 1])))
            if hi >= lo:
                break
        else:
            return None
        dy = int(np.floor(rng.uniform(lo, hi + 1)))
        amp = np.sqrt(cv2.resize(env * env, (pw, ph), interpolation=cv2.INTER_AREA))
        if flip:
            amp = amp[:, ::-1]
        # the needle's envelope on the region's pixels (left or right edges aligned; rows shifted by dy)
        canvas = np.zeros((rh, rw), np.float32)
        ox = rw - pw if flip else 0
        sx0, dx0 = max(0, -ox), max(0, ox)
        w = min(pw - sx0, rw - dx0)
        sy0, dy0 = max(0, -dy), max(0, dy)
        h = min(ph - sy0, rh - dy0)
        if w <= 0 or h <= 0:
            return None
        canvas[dy0:dy0 + h, dx0:dx0 + w] = amp[sy0:sy0 + h, sx0:sx0 + w]
        # incoherent sum on a log scale whose tissue level is the frame's own
        dr = rng.uniform(45.0, 60.0)
        g = image[ry:ry + rh, rx:rx + rw].astype(np.float32)
        a_bg = 10.0 ** ((g / 255.0 - 1.0) * dr / 20.0)
        # tissue of echo 0.5 (the calibration) is the frame's median; walls of amplitude A echo A times a
        # library needle's (imaged at amplitude 1)
        scale = np.median(a_bg) / self.tissue_level * rng.uniform(*WALL_AMPLITUDE)
        a = np.sqrt(a_bg * a_bg + (scale * canvas) ** 2)
        out = 255.0 * (1.0 + 20.0 * np.log10(a) / dr)
        image[ry:ry + rh, rx:rx + rw] = np.clip(np.round(out), 0, 255).astype(np.uint8)
        tail, tip = tail + (rx, ry + dy), tip + (rx, ry + dy)
        d = tip - tail
        return {"tip_px": [round(float(v), 3) for v in tip],
                "shaft_px": [[round(float(v), 3) for v in tail], [round(float(v), 3) for v in tip]],
                "angle_deg": round(float(np.degrees(np.arctan2(d[1], d[0]))), 3), "confidence": 1.0,
                "tip_visible": True}


def _surface_rows(truth: dict, rx: int, rw: int) -> np.ndarray:
    """Frame rows of the cartilage top (else the bone) at each column of the region; the frame's foot if none."""
    t = truth.get("target") or {}
    pts = t.get("surface_px") or t.get("bone_px") or []
    x = np.arange(rx, rx + rw, dtype=float)
    if len(pts) < 2:
        return np.full(rw, 1e9)
    pts = np.asarray(pts, float)
    pts = pts[np.argsort(pts[:, 0])]
    return np.interp(x, pts[:, 0], pts[:, 1])


# ----------------------------------------------------------------------------- making the library (PyMUST)

def _imager(probe: str, angles: tuple[float, ...]):
    """``bench/pymust_frames.py``'s imager with these plane waves, and that module (its image's extent)."""
    bench = str(Path(__file__).resolve().parents[1] / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import pymust_frames as pf

    return pf.Imager(probe, GRID_MM, angles), pf


def _envelope(imager, sc: dict) -> np.ndarray:
    """The linear envelope, the round trip's attenuation (0.5 dB/cm/MHz) undone."""
    gain_db = 0.5 * imager.param.fc * 1e-6 * 2 * (imager.zi * 100)
    return (np.abs(imager.compounded_iq(sc)) * 10 ** (gain_db / 20)).astype(np.float32)


def _config(seed: int, k: int) -> tuple[str, tuple[float, ...]]:
    r = np.random.default_rng([seed, k, 1])
    probe = "L11-5v" if r.random() < 0.6 else "L12-3v"
    n = int(r.choice([1, 3, 5, 7]))
    span = float(r.choice([8.0, 12.0, 16.0])) if n > 1 else 0.0
    return probe, tuple(float(v) for v in np.linspace(-span, span, n).round(2))


def _needle(rng: np.random.Generator, wavelength_mm: float, pf) -> tuple[dict, dict]:
    """Scatterers of one walled needle (``pf``: ``bench/pymust_frames.py``, its image and helpers) and its axis."""
    ang = rng.uniform(3.0, 32.0)
    d = np.array([np.cos(np.radians(ang)), np.sin(np.radians(ang))])
    nrm = np.array([-d[1], d[0]])
    entry = np.array([-pf.X_HALF_MM, rng.uniform(1.0, 9.0)])
    length = rng.uniform(6.0, min(34.0, (pf.Z1_MM - 3.5 - entry[1]) / max(d[1], 1e-3)))
    tip, back = entry + length * d, entry - 3.0 * d     # the shaft goes on outside the image
    diam = rng.uniform(0.4, 1.3)
    pts = [pf.reflector_line(back + off * nrm, tip + off * nrm, 1.0, wavelength_mm / 6)
           for off in (-diam / 2, diam / 2)]
    q = tip + rng.uniform(-diam / 2, diam / 2, (40, 1)) * nrm    # the bevel
    pts += [(q[:, 0], q[:, 1], rng.standard_normal(40)), pf.silent_corners()]
    xs, zs, rc = (np.concatenate(v) for v in zip(*pts))
    return {"x": xs, "z": zs, "rc": rc}, {"tail_mm": entry, "tip_mm": tip, "diam_mm": diam, "angle_deg": ang}


def make(out: Path, seed: int, start: int, count: int, minutes: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    ks = sorted(range(start, start + count), key=lambda k: (_config(seed, k), k))  # one imager per run of configs
    key, im, pf = None, None, None
    for k in ks:
        if (time.time() - t_start) / 60 > minutes:
            print(f"time budget of {minutes} min reached", flush=True)
            break
        path = out / f"{seed}_{k:05d}.npz"
        if path.exists():
            continue
        if _config(seed, k) != key:
            key = _config(seed, k)
            im = None  # the last imager's matrices go before the next one's are built
            im, pf = _imager(*key)
        t0 = time.time()
        sc, nd = _needle(np.random.default_rng([seed, k]), im.wavelength_mm, pf)
        env = _envelope(im, sc)
        np.savez_compressed(path, env=env, x0_mm=-pf.X_HALF_MM, z0_mm=pf.Z0_MM, probe=key[0],
                            angles=np.array(key[1]), **{n: np.asarray(v) for n, v in nd.items()})
        print(f"{path.name} {key[0]} {len(key[1])} waves to {key[1][-1]:g} deg: needle {nd['angle_deg']:.1f} deg, "
              f"{nd['diam_mm']:.2f} mm, {time.time() - t0:.0f} s", flush=True)


def calibrate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    im, pf = _imager("L11-5v", pf_angles := (-12.0, -6.0, 0.0, 6.0, 12.0))
    rng = np.random.default_rng(12345)
    n = int(20 * 2 * pf.X_HALF_MM * (pf.Z1_MM - pf.Z0_MM + 1))   # as bench/pymust_frames.py's tissue
    sc = {"x": rng.uniform(-pf.X_HALF_MM - 1, pf.X_HALF_MM + 1, n), "z": rng.uniform(0.3, pf.Z1_MM, n),
          "rc": 0.5 * rng.standard_normal(n)}
    env = _envelope(im, sc)
    np.savez_compressed(out / "tissue_calibration.npz", env=env, angles=np.array(pf_angles))
    print(f"tissue median envelope {float(np.median(env)):.4g}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calibrate")
    c.add_argument("--out", type=Path, required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--start", type=int, default=0)
    m.add_argument("--count", type=int, default=150)
    m.add_argument("--minutes", type=float, default=float("inf"))
    args = ap.parse_args()
    try:
        import pymust  # noqa: F401
    except ImportError:
        print("pymust_needles.py: PyMUST is not installed (pip install pymust)", file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.getLogger().setLevel(logging.ERROR)           # PyMUST warns on every call
    if args.cmd == "calibrate":
        calibrate(args.out)
    else:
        make(args.out, args.seed, args.start, args.count, args.minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
