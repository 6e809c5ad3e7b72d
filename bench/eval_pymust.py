"""Detection on frames of other projects' simulators: PyMUST (``bench/pymust_frames.py``) or k-Wave.

    python bench/eval_pymust.py DIR [DIR ...] [--detectors auto,classical] [--out-dir OUT]
    python bench/eval_pymust.py replay_data/pymust_frames      # the five committed frames
    python bench/eval_pymust.py replay_data/kwave_frames       # six of ``bench/kwave_frames.py``

Every frame is detected alone and scored with ``guidance.evaluate`` against
``DIR/truth.jsonl``: overall, and by how the needle was made (dense
scatterers, two walls of reflectors, or k-Wave's metal tube) and by its angle
from the horizontal.
``--out-dir`` writes each detector's lines and the truth as JSON Lines (for
``guidance eval``) and contact sheets (truth green, detection red) of the first
frames and of the frames whose tip is farthest off. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from guidance.contract import needle_to_dict, read_jsonl, target_to_dict
from guidance.detect import load_detector
from guidance.evaluate import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_foreign import _write_outputs  # noqa: E402  (the same sheets and layout)

KEEP = ("tip_error", "tip_along_error", "tip_short_rate", "tip_beyond_rate", "angle_error_deg", "needle_recall",
        "false_positive_rate", "bone_distance", "bone_coverage", "surface_distance", "target_kind_agreement",
        "cartilage_thickness_error_mm")


def _images(d: Path) -> Path:
    """Where a folder keeps its frames: ``frames/`` as ``pymust_frames.py`` writes them, or ``images/``
    (``replay_data/pymust_frames``, kept apart from the replay samples, which are sequences)."""
    return d / "images" if (d / "images").is_dir() else d / "frames"


def load(dirs: list[Path]) -> list[tuple[np.ndarray, tuple[float, float], dict]]:
    """(image, spacing, truth line) of every frame that has both its image and its truth."""
    frames = []
    for d in dirs:
        for t in read_jsonl(d / "truth.jsonl"):
            img = cv2.imread(str(_images(d) / f"{t['frame']:05d}.png"), cv2.IMREAD_GRAYSCALE)
            if img is not None:
                frames.append((img, tuple(t["spacing_mm"]), t))
    return frames


def groups(truth: dict) -> list[str]:
    """The subsets a frame counts in besides "all"."""
    n = truth["needle"]
    if n is None:
        return ["no needle"]
    a = abs(n["angle_deg"])
    a = min(a, 180 - a)
    return [n["style"], "flat (< 35 deg)" if a < 35 else "steep (>= 35 deg)"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--detectors", default="auto,classical")
    ap.add_argument("--out-dir", type=Path)
    args = ap.parse_args()
    frames = load(args.dirs)
    out = {"frames": len(frames), "with_needle": sum(t["needle"] is not None for *_, t in frames)}
    for name in args.detectors.split(","):
        det = load_detector(name)
        pairs, dets, by = [], [], {}
        for img, sp, truth in frames:
            d = det.detect(img, spacing_mm=sp)
            dets.append(d)
            pair = ({"frame": truth["frame"], "needle": needle_to_dict(d.needle), "target": target_to_dict(d.target)},
                    truth)
            pairs.append(pair)
            for g in groups(truth):
                by.setdefault(g, []).append(pair)
        r = evaluate(pairs)
        out[det.name] = {"all": {k: r[k] for k in KEEP}}
        for g, pp in sorted(by.items()):
            rg = evaluate(pp)
            out[det.name][g] = {k: rg[k] for k in ("needle_recall", "false_positive_rate", "tip_error",
                                                   "angle_error_deg")}
        if args.out_dir is not None:
            _write_outputs(args.out_dir, "pymust", det.name, frames, dets, pairs)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
