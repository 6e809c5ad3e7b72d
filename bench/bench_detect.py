"""Detection speed on 512x512 simulated frames: model (inference + post-processing) and baseline.

    python bench/bench_detect.py [--model auto|PATH] [--frames 120] [--rounds 3]

Prints one JSON object: per detector the median / p95 milliseconds of
``detect()`` per frame after a warm-up (the model's over ``--rounds`` passes),
and for the model the split between its first onnxruntime inference and
everything else, and the share of frames whose uncertain needle was judged by
consensus (three more inferences: the second opinion and the mirror images).
Frames are rendered first, so rendering is not timed. The machine is shared:
report the load with the figures.
The CPU's vector unit is printed too: onnxruntime's blocked convolutions use
16-channel blocks with AVX-512 and 8 with AVX2 (``models/align_channels.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from guidance.detect import load_detector
from guidance.sim import SimConfig, Simulator


def frames(n: int) -> list[tuple[np.ndarray, tuple[float, float]]]:
    out = []
    for scn, seed in (("insertion", 8101), ("steep", 8102), ("no_needle", 8103)):
        sim = Simulator(SimConfig(width_px=512, height_px=512, seed=seed, scenario=scn))
        step = max(1, len(sim) // (n // 3 + 1))
        out += [(sim.render(i).image, sim.render(i).spacing_mm) for i in range(0, len(sim), step)][: n // 3]
    return out


def cpu_model() -> str:
    """The CPU's name and its widest vector unit: onnxruntime's convolution layout depends on it."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown"
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "unknown")
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    return f"{name} ({'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'no AVX2'})"


def time_detector(det, imgs, warmup: int = 10, rounds: int = 1) -> dict:
    for img, sp in imgs[:warmup]:
        det.detect(img, spacing_mm=sp)
    ts = []
    for _ in range(rounds):
        for img, sp in imgs:
            t0 = time.perf_counter()
            det.detect(img, spacing_mm=sp)
            ts.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(float(np.median(ts)), 2), "p95_ms": round(float(np.percentile(ts, 95)), 2),
            "frames": len(ts)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="auto", help="auto: the committed detector (with its second opinion)")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=3,
                    help="time every frame this many times: this VM's CPU time comes in bursts")
    args = ap.parse_args()
    imgs = frames(args.frames)
    out = {"input_px": [512, 512], "cpu_count": os.cpu_count(), "cpu": cpu_model(),
           "load_avg_1min": round(os.getloadavg()[0], 2)}
    det = load_detector(args.model)
    if hasattr(det, "maps"):
        out["model"] = time_detector(det, imgs, rounds=args.rounds)
        # the first inference alone, paired frame by frame with a whole detection, so that both meet
        # the same bursts of this VM's CPU time (a difference of two separate medians went negative)
        ts, diffs = [], []
        for _ in range(args.rounds):
            for img, sp in imgs:
                t0 = time.perf_counter()
                det.maps(img)
                t1 = time.perf_counter()
                det.detect(img, spacing_mm=sp)
                t2 = time.perf_counter()
                ts.append((t1 - t0) * 1000)
                diffs.append((t2 - t1 - (t1 - t0)) * 1000)
        out["model"]["inference_median_ms"] = round(float(np.median(ts)), 2)
        out["model"]["rest_median_ms"] = round(float(np.median(diffs)), 2)
        out["model"]["consensus_share"] = round(float(np.mean([det.asks_second_opinion(det.maps(img))
                                                                for img, _ in imgs])), 3)
        out["model"]["files"] = {p.name: p.stat().st_size for p in det.paths}
    out["classical"] = time_detector(load_detector("classical"), imgs)  # 30-40 ms: one round is plenty
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
