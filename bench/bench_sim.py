"""Simulator speed: live source at 512x512 on one core, training samples on 2 cores.

    python bench/bench_sim.py [--seconds 5] [--workers 2]

Prints one JSON object:
- ``live``: frames/s of ``SyntheticSource("sim", realtime=False)`` at 512x512
  (target >= 30), with the per-frame ms percentiles, sequence set-up ms
  (paid once per scenario loop) excluded from the frame figures but reported.
- ``training``: labelled ``make_sample`` frames/s at 256x256 with N worker
  processes (target >= 20 on 2 cores), and single-process ms per sample.
OpenCV is limited to one thread per process so the figures are per core.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time

import numpy as np


def _one_thread():
    import cv2
    cv2.setNumThreads(1)


def bench_live(seconds: float) -> dict:
    from guidance.sim import SimConfig, Simulator

    t0 = time.perf_counter()
    sim = Simulator(SimConfig(width_px=512, height_px=512, fps=30, seed=1, scenario="insertion"))
    setup_ms = (time.perf_counter() - t0) * 1000
    from guidance.sources.synthetic import SyntheticSource
    src = SyntheticSource("sim:insertion:1", realtime=False, size_px=(512, 512), fps=30)
    src.open()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        fr = src.read()
        if fr is None:
            src.open()
            continue
        times.append((time.perf_counter() - t) * 1000)
    ms = np.array(times[5:])
    return {"size": "512x512", "frames": len(ms), "fps": round(1000 / ms.mean(), 1),
            "ms": {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2),
                   "p99": round(float(np.percentile(ms, 99)), 2)},
            "sequence_setup_ms": round(setup_ms, 1), "frames_per_sequence": len(sim)}


def _samples(args):
    start, n = args
    _one_thread()
    from guidance.sim.training import make_sample
    for s in range(start, start + n):
        make_sample(s, (256, 256))
    return n


def bench_training(seconds: float, workers: int) -> dict:
    from guidance.sim.training import make_sample

    make_sample(0)
    t = time.perf_counter()
    n1 = 0
    while time.perf_counter() - t < seconds / 2:
        make_sample(1000 + n1)
        n1 += 1
    single_ms = (time.perf_counter() - t) * 1000 / n1
    chunk = max(4, int(seconds / 2 * 1000 / single_ms / 4))
    jobs = [(10_000 + k * chunk, chunk) for k in range(workers * 4)]
    with mp.get_context("fork").Pool(workers, initializer=_one_thread) as pool:
        t = time.perf_counter()
        done = sum(pool.map(_samples, jobs))
        dt = time.perf_counter() - t
    return {"size": "256x256", "workers": workers, "samples": done, "samples_per_s": round(done / dt, 1),
            "single_process_ms_per_sample": round(single_ms, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    _one_thread()
    out = {"live": bench_live(a.seconds), "training": bench_training(a.seconds, a.workers),
           "load_avg_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
