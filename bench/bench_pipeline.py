"""Pipeline benchmark: overhead per frame, sustained throughput, peak memory. Prints JSON.

    python bench/bench_pipeline.py [--frames N] [--seconds S]

- ``process_overhead_us``: :func:`guidance.pipeline.process` with four no-op
  stages, no threads (what every frame pays for timing and result building).
- ``noop_640x480``: the live pipeline (capture + processing threads) with
  no-op stages, frames handed over one at a time: ``ms`` is receive->result
  per frame, i.e. the pipeline's own overhead; ``fps`` its ceiling.
- ``full_640x480``: the same with the real stages (region, detect, track,
  guidance): sustained throughput when every frame is processed.
- ``free_running_noop`` / ``paced_30fps_full``: a source delivering as fast as
  it can (or at 30 fps) for ``--seconds``: processed fps, drops, latency.
- ``region_ms``: finding the imaging region on a real 1280x720 scanner screen
  (one frame, and one estimator update); the region stage does this on every
  5th frame, so its median in ``stages_ms`` is the cached case.
- ``rss_mb_peak``: peak resident memory of the whole run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import psutil

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from guidance.cli.bench import generated_images, measure, noop_stages, peak_rss_mb  # noqa: E402
from guidance.pipeline import LivePipeline, process  # noqa: E402
from guidance.region import RegionEstimator, find_imaging_region  # noqa: E402
from guidance.sources.base import SourceBase  # noqa: E402
from guidance.stages import build_stages  # noqa: E402


class CycleSource(SourceBase):
    """Images from memory, endlessly, optionally paced at ``fps``."""

    name = "memory"
    is_live = True

    def __init__(self, images, fps: float | None = None):
        super().__init__()
        self.images, self.fps, self.i = images, fps, 0
        self.t0 = None

    def read(self):
        if self.fps:
            if self.t0 is None:
                self.t0 = time.monotonic()
            due = self.t0 + self.i / self.fps
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        i = self.i
        self.i += 1
        return self.make_frame(self.images[i % len(self.images)], i / 30.0, i)


def process_overhead_us(image, n: int = 20000) -> dict:
    src = CycleSource([image])
    frame = src.read()
    stages = noop_stages()
    for _ in range(200):
        process(frame, stages)
    samples = np.empty(n)
    for k in range(n):
        t0 = time.perf_counter()
        process(frame, stages)
        samples[k] = time.perf_counter() - t0
    return {"p50": round(float(np.median(samples)) * 1e6, 2), "p99": round(float(np.percentile(samples, 99)) * 1e6, 2)}


def region_ms(n: int = 50) -> dict | None:
    import cv2

    path = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "knee", "lumify.png")
    screen = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if screen is None:
        return None
    rng = np.random.default_rng(0)
    frames = [np.clip(screen.astype(np.int16) + rng.integers(-3, 4, screen.shape), 0, 255).astype(np.uint8)
              for _ in range(4)]
    find_imaging_region(screen)
    t0 = time.perf_counter()
    for _ in range(n):
        find_imaging_region(screen)
    one = (time.perf_counter() - t0) / n * 1000
    estimator = RegionEstimator()
    estimator.update(frames[0])
    t0 = time.perf_counter()
    for k in range(n):
        estimator.update(frames[k % 4])
    update = (time.perf_counter() - t0) / n * 1000
    return {"size_px": [screen.shape[1], screen.shape[0]], "find_imaging_region": round(one, 3),
            "estimator_update": round(update, 3), "per_frame_amortized": round(update / 5, 3)}


def timed_run(images, stages, seconds: float, fps: float | None) -> dict:
    latencies = []
    pipeline = LivePipeline(CycleSource(images, fps), stages, stall_timeout_s=5.0)
    pipeline.add_consumer(lambda r: latencies.append((time.monotonic() - r.received_s) * 1000.0))
    with pipeline:
        time.sleep(0.5)  # warm-up
        start = pipeline.status()
        n0 = len(latencies)
        t0 = time.monotonic()
        time.sleep(seconds)
        end = pipeline.status()
        elapsed = time.monotonic() - t0
    lat = np.array(latencies[n0:]) if len(latencies) > n0 else np.array([np.nan])
    received = end.frames_received - start.frames_received
    processed = end.frames_processed - start.frames_processed
    return {"seconds": round(elapsed, 2), "received_fps": round(received / elapsed, 1),
            "processed_fps": round(processed / elapsed, 1),
            "dropped": end.frames_dropped - start.frames_dropped,
            "latency_ms": {"p50": round(float(np.median(lat)), 3), "p99": round(float(np.percentile(lat, 99)), 3)},
            "stages_ms": {k: round(v, 3) for k, v in end.stages_ms.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    images = generated_images((640, 480))
    report = {"machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
              "process_overhead_us": process_overhead_us(images[0])}
    report["noop_640x480"] = measure(noop_stages(), images, frames=args.frames, warmup=100)
    full = build_stages()
    report["full_640x480"] = measure(full, images, frames=max(100, args.frames // 10), warmup=20)
    report["full_640x480"]["stages"] = [s.name for s in full]
    report["free_running_noop"] = timed_run(images, noop_stages(), args.seconds, None)
    report["paced_30fps_full"] = timed_run(images, build_stages(), args.seconds, 30.0)
    report["region_ms"] = region_ms()
    report["rss_mb_now"] = round(psutil.Process().memory_info().rss / 2**20, 1)
    report["rss_mb_peak"] = round(peak_rss_mb(), 1)
    report["machine"]["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
