"""Detection when the same frames get another scanner's look.

    python bench/eval_looks.py [--source foreign|sim] [--frames 160] [--detectors auto]

Scanners post-process what they show: speckle reduction, another grey map,
less gain, JPEG from a frame grabber or a screen capture. This runs the
detector on one set of frames as they are and after each such change, and
prints the figures of ``guidance.evaluate`` per look. ``--source foreign``
takes the frames of ``bench/eval_foreign.py`` (seed 1, needles with walls);
``--source sim`` every 8th frame of five tuning scenes of our simulator
(seeds 6203-6229, not the evaluation seeds). Every frame is detected alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_foreign import make_frame  # noqa: E402

from guidance.contract import needle_to_dict, target_to_dict  # noqa: E402
from guidance.detect import load_detector  # noqa: E402
from guidance.evaluate import evaluate  # noqa: E402
from guidance.sim import SimConfig, Simulator  # noqa: E402

SIM_SCENES = (("insertion", 6210, 480, 640, 40.0), ("steep", 6216, 512, 512, 45.0),
              ("out_of_plane", 6222, 400, 320, 25.0), ("no_needle", 6203, 512, 512, 30.0),
              ("no_needle", 6229, 512, 512, 30.0))


def _grey_map(gamma: float) -> np.ndarray:
    return np.round(np.linspace(0.0, 1.0, 256) ** gamma * 255).astype(np.uint8)


LOOKS = {
    "as is": lambda im: im,
    "speckle reduction (bilateral 7 px)": lambda im: cv2.bilateralFilter(im, 7, 40, 5),
    "smoothing (median 5 px)": lambda im: cv2.medianBlur(im, 5),
    "grey map gamma 0.6 (brighter)": lambda im: cv2.LUT(im, _grey_map(0.6)),
    "grey map gamma 1.6 (darker)": lambda im: cv2.LUT(im, _grey_map(1.6)),
    "gain x0.6": lambda im: (im.astype(np.float32) * 0.6).astype(np.uint8),
    "JPEG quality 40": lambda im: cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 40])[1],
                                               cv2.IMREAD_GRAYSCALE),
}


def frames_from(source: str, n: int) -> list[tuple[np.ndarray, tuple[float, float], dict]]:
    out = []
    if source == "foreign":
        rng = np.random.default_rng(1)
        for k in range(n):
            img, sp, truth = make_frame(rng, needle=(k % 2 == 0), needle_model="walls")
            out.append((img, sp, {"frame": k, **truth}))
        return out
    for scn, seed, w, h, depth in SIM_SCENES:
        sim = Simulator(SimConfig(width_px=w, height_px=h, seed=seed, scenario=scn, depth_mm=depth))
        for i in range(0, len(sim), 8):
            sf = sim.render(i)
            out.append((sf.image, tuple(sf.spacing_mm), {**sf.truth, "frame": len(out)}))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", choices=("foreign", "sim"), default="foreign")
    ap.add_argument("--frames", type=int, default=160, help="foreign frames (half with a needle)")
    ap.add_argument("--detectors", default="auto")
    args = ap.parse_args()
    frames = frames_from(args.source, args.frames)
    out = {"source": args.source, "frames": len(frames)}
    for name in args.detectors.split(","):
        det = load_detector(name)
        per_look = {}
        for look, change in LOOKS.items():
            pairs = []
            for img, sp, truth in frames:
                d = det.detect(change(img), spacing_mm=sp)
                pairs.append(({"frame": truth["frame"], "needle": needle_to_dict(d.needle),
                               "target": target_to_dict(d.target)}, truth))
            r = evaluate(pairs)
            per_look[look] = {k: r[k] for k in ("needle_recall", "false_positive_rate", "tip_error",
                                                "angle_error_deg", "bone_distance", "bone_coverage")}
            print(f"{det.name} {look}: recall {r['needle_recall']}, false positives {r['false_positive_rate']}, "
                  f"tip median/p95 {r['tip_error']['median'] if r['tip_error'] else None}/"
                  f"{r['tip_error']['p95'] if r['tip_error'] else None}", file=sys.stderr, flush=True)
        out[det.name] = per_look
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
