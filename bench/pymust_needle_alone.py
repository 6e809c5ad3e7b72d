"""A walled needle alone, imaged with PyMUST at several angles: what plane waves make of its walls.

    pip install pymust                      # bench only
    python bench/pymust_needle_alone.py OUT.png [--angles 0,10,17.5,25]

The needle of ``bench/pymust_frames.py`` (two walls of reflectors λ/6 apart,
0.85 mm across, entering at the left edge 4 mm deep), with only sparse weak
scatterers around it so the log compression has a floor, imaged the same way
(L11-5v, five plane waves at -12..+12°, delay and sum, coherent compounding).
Writes the frames side by side, two per row. The model card's section
"Needles drawn by plane waves" describes them: two bright walls when flat,
then a band of parallel fringes with haze below and a part running on past the
tip, nothing but the bevel when steep. About 10-60 s a frame on one core.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pymust_frames as pf  # noqa: E402

DIAMETER_MM, LENGTH_MM, AMPLITUDE = 0.85, 30.0, 3.0


def needle_alone(angle_deg: float, wavelength_mm: float, rng: np.random.Generator) -> dict:
    """Scatterers (x, z in mm, amplitude) of the needle's walls and a sparse weak background."""
    d = np.array([np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))])
    nrm = np.array([-d[1], d[0]])
    entry = np.array([-pf.X_HALF_MM, 4.0]) - 3.0 * d          # the shaft goes on outside the image
    tip = entry + LENGTH_MM * d
    pts = [pf.reflector_line(entry + off * nrm, tip + off * nrm, AMPLITUDE, wavelength_mm / 6)
           for off in (-DIAMETER_MM / 2, DIAMETER_MM / 2)]
    m = 3000
    pts.append((rng.uniform(-pf.X_HALF_MM, pf.X_HALF_MM, m), rng.uniform(pf.Z0_MM, pf.Z1_MM, m),
                0.3 * rng.standard_normal(m)))
    pts.append(pf.silent_corners())
    xs, zs, rc = (np.concatenate(v) for v in zip(*pts))
    return {"x": xs, "z": zs, "rc": rc}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--angles", default="0,10,17.5,25", help="degrees from the horizontal, comma-separated")
    args = ap.parse_args()
    if not pf.pymust_ready("pymust_needle_alone.py"):
        return 2
    logging.getLogger().setLevel(logging.ERROR)           # PyMUST warns on every call
    imager = pf.Imager("L11-5v", 0.075)
    frames = []
    for angle in (float(a) for a in args.angles.split(",")):
        sc = needle_alone(angle, imager.wavelength_mm, np.random.default_rng(0))
        frames.append(imager.image(sc, np.random.default_rng(1)))
        print(f"{angle:g} deg done", file=sys.stderr, flush=True)
    if len(frames) % 2:
        frames.append(np.zeros_like(frames[0]))
    cv2.imwrite(str(args.out), np.vstack([np.hstack(frames[i:i + 2]) for i in range(0, len(frames), 2)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
