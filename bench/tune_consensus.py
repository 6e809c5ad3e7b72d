"""Choose the consensus rule for a pair of networks on the tuning scenes, by replaying cached maps.

    python bench/tune_consensus.py [--models DIR] [--stride 4] [--styles specular,coherent]
                                   [--rules 0.7-0.95:0.845,0.7-0.93:0.84:0.78,...]

The rule (``ModelDetector.consensus_band``, ``consensus_min_confidence``)
decides which needles are judged on the four views' average and how sure that
average must be. After every fine-tune of either network it has to be chosen
again. Running the detector once per candidate rule costs minutes each; here
every frame of the tuning scenes (``eval_sim.wide_sequences``, seeds 6200-6249,
never used to train) is rendered once, both the committed network's maps and
the four views' consensus are cached, and each rule (band:minimum, or
band:minimum:long-shaft minimum) is replayed through
``ModelDetector.from_maps`` with the cached consensus: the same code path as
``detect``, in seconds per rule. ``--styles`` renders the needles of the same
scenes in other echo styles as well (``SimConfig.needle_style``), scored apart.

Prints one line per rule and style: needle recall, false positives (over the
needle-free frames), tip error median / p95 (mm), angle error median (deg),
and the share of frames the consensus ran on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from eval_sim import wide_sequences

from guidance.contract import needle_to_dict
from guidance.detect.model import ModelDetector
from guidance.evaluate import evaluate
from guidance.sim import SimConfig, Simulator

MODELS = Path(__file__).resolve().parents[1] / "models"


def cache_frames(det: ModelDetector, styles: list[str], stride: int) -> dict[str, list]:
    """Per style: (image, maps float16, consensus float16, spacing, truth) of every ``stride``-th frame."""
    out: dict[str, list] = {s: [] for s in styles}
    seqs = wide_sequences()
    for k, (scn, seed, w, h, depth) in enumerate(seqs):
        for style in styles:
            if style != "specular" and scn == "no_needle":
                continue  # the same needle-free frames as the specular run
            sim = Simulator(SimConfig(width_px=w, height_px=h, seed=seed, scenario=scn, depth_mm=depth,
                                      needle_style=style))
            for i in range(0, len(sim), stride):
                sf = sim.render(i)
                probs = det.maps(sf.image)
                cons = det.needle_consensus(sf.image, probs)
                out[style].append((sf.image, probs.astype(np.float16), cons.astype(np.float16),
                                   tuple(sf.spacing_mm), sf.truth))
        print(f"[{k + 1}/{len(seqs)}] {scn} {seed}", file=sys.stderr, flush=True)
    return out


def replay(det: ModelDetector, frames: list, band: tuple[float, float], min_conf: float,
           long_min_conf: float | None = None) -> dict:
    """The figures of ``det`` with this consensus rule (and long-shaft rule, when given) on cached frames."""
    det.consensus_band, det.consensus_min_confidence = band, min_conf
    if long_min_conf is not None:
        det.long_needle_min_confidence = long_min_conf
    pairs, asked = [], 0
    for image, probs, cons, spacing, truth in frames:
        p = probs.astype(np.float32)
        asked += det.asks_second_opinion(p)
        det.needle_consensus = lambda crop, probs_, c=cons: c.astype(np.float32)  # noqa: E731
        d = det.from_maps(image, p, (0, 0), spacing)
        pairs.append(({"frame": truth["frame"], "needle": needle_to_dict(d.needle), "target": None}, truth))
    del det.needle_consensus
    r = evaluate(pairs)
    return {"recall": r["needle_recall"], "fp": r["false_positive_rate"],
            "tip": (r["tip_error"]["median"], r["tip_error"]["p95"]) if r.get("tip_error") else None,
            "angle": r["angle_error_deg"]["median"] if r.get("angle_error_deg") else None,
            "consensus_share": round(asked / max(len(frames), 1), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=MODELS,
                    help="folder with needle_target.onnx and needle_target_wide.onnx (default: the committed ones)")
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--styles", default="specular,coherent")
    ap.add_argument("--rules", default="0.7-0.93:0.84,0.7-0.95:0.845,0.7-0.95:0.84,0.7-0.95:0.85,0.7-0.97:0.845,"
                                       "0.7-0.97:0.85,0.7-0.99:0.85,0.7-0.99:0.86")
    args = ap.parse_args()
    det = ModelDetector(args.models / "needle_target.onnx", second_opinion=args.models / "needle_target_wide.onnx")
    frames = cache_frames(det, args.styles.split(","), args.stride)
    long_default = det.long_needle_min_confidence
    for rule in args.rules.split(","):
        band_s, min_s, *long_s = rule.split(":")
        band = tuple(float(v) for v in band_s.split("-"))
        long_min = float(long_s[0]) if long_s else long_default
        for style, fr in frames.items():
            print(f"band {band[0]}-{band[1]} min {float(min_s)} long {long_min} {style:9s} "
                  f"{replay(det, fr, band, float(min_s), long_min)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
