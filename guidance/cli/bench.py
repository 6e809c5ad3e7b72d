"""``guidance bench``: measure the live pipeline and print one JSON object (CONTRACT.md).

Frames come from the built-in simulator (or plain generated speckle when the
simulator is absent) or from ``--input``, are held in memory, and are fed to a
:class:`~guidance.pipeline.LivePipeline` one at a time as soon as the previous
one is processed, so the figures are the pipeline's own: throughput without
drops, and per-frame time from receiving a frame to its result.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time

import numpy as np

from ..sources.base import SourceBase
from ..types import Frame, FrameResult
from ._args import add_stage_options, positive_int, size_arg, stages_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="measure pipeline speed and memory; prints one JSON object",
        description="Measure the live pipeline after a warm-up on generated frames (or --input) and print "
                    '{"frames", "fps", "ms": {"p50", "p95", "p99"}, "stages_ms", "rss_mb", ...} as JSON.')
    p.add_argument("--input", metavar="INPUT", help="take frames from this file or folder instead of generating them")
    p.add_argument("--frames", type=positive_int, default=300, metavar="N", help="frames measured (default 300)")
    p.add_argument("--warmup", type=int, default=30, metavar="N", help="frames run before measuring (default 30)")
    p.add_argument("--size", type=size_arg, metavar="WxH",
                   help="frame size (default 640x480 for generated frames; --input frames are resized to it)")
    p.add_argument("--noop", action="store_true", help="no-op stages: measure the pipeline's own overhead")
    add_stage_options(p)
    p.set_defaults(func=run)


class NoopStage:
    """A stage that does nothing: for measuring the pipeline itself."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, result: FrameResult) -> FrameResult:
        return result


def noop_stages() -> list[NoopStage]:
    return [NoopStage(n) for n in ("region", "detect", "track", "guidance")]


class _LockstepSource(SourceBase):
    """Cycles through images in memory; each read waits until the previous frame was processed."""

    def __init__(self, images: list[np.ndarray], count: int, lockstep: bool = True, spacing_mm=None) -> None:
        super().__init__()
        self.name = "bench frames"
        self.spacing_mm = spacing_mm
        self._images, self._count, self._lockstep = images, count, lockstep
        self._i = 0
        self.ready = threading.Event()
        self.ready.set()

    def read(self) -> Frame | None:
        if self._i >= self._count:
            return None
        if self._lockstep:
            while not self.ready.wait(0.5):
                pass
            self.ready.clear()
        i = self._i
        self._i += 1
        return self.make_frame(self._images[i % len(self._images)], i / 30.0, i)


def generated_images(size_px: tuple[int, int], n: int = 32, seed: int = 0) -> list[np.ndarray]:
    """``n`` frames of ``size_px`` (width, height): the simulator's when it is installed, else speckle."""
    try:
        from ..sources import open_source

        source = open_source("sim", realtime=False, size_px=size_px, seed=seed)
        images = []
        with source:
            while len(images) < n:
                frame = source.read()
                if frame is None:
                    break
                images.append(frame.image)
        if images:
            return images
    except Exception:  # noqa: BLE001 - the simulator is optional here
        pass
    rng = np.random.default_rng(seed)
    w, h = size_px
    return [np.clip(rng.rayleigh(40.0, (h, w)), 0, 255).astype(np.uint8) for _ in range(n)]


def input_images(spec: str, n: int, size_px: tuple[int, int] | None) -> tuple[list[np.ndarray], object]:
    import cv2

    from ..sources import open_source

    images, spacing = [], None
    with open_source(spec, realtime=False, loop=False) as source:
        while len(images) < n:
            frame = source.read()
            if frame is None:
                break
            image = frame.image if size_px is None else cv2.resize(frame.image, size_px, interpolation=cv2.INTER_AREA)
            images.append(image)
            spacing = frame.spacing_mm
    if not images:
        from ..errors import InputError

        raise InputError(f"{spec}: no frames to measure")
    return images, spacing


def measure(stages, images: list[np.ndarray], frames: int = 300, warmup: int = 30, spacing_mm=None) -> dict:
    """Run ``frames + warmup`` frames through a LivePipeline in lockstep; figures over the last ``frames``."""
    from ..pipeline import LivePipeline

    total = frames + warmup
    source = _LockstepSource(images, total, spacing_mm=spacing_mm)
    records: list[tuple[float, float, dict]] = []
    done = threading.Event()

    def consume(result: FrameResult) -> None:
        now = time.monotonic()
        records.append((now, (now - result.received_s) * 1000.0, result.stages_ms))
        source.ready.set()
        if len(records) >= total:
            done.set()

    pipeline = LivePipeline(source, stages, stall_timeout_s=30.0)
    pipeline.add_consumer(consume)
    with pipeline:
        done.wait(timeout=max(60.0, total * 2.0))
    status = pipeline.status()
    measured = records[warmup:]
    if len(measured) < 2:
        raise RuntimeError(f"only {len(records)} frames were processed ({status.state}: {status.message})")
    span_s = measured[-1][0] - records[warmup - 1][0] if warmup > 0 else measured[-1][0] - measured[0][0]
    latency = np.array([m[1] for m in measured])
    stage_names = list(measured[-1][2])
    stages_ms = {name: round(float(np.median([m[2].get(name, np.nan) for m in measured])), 4) for name in stage_names}
    overhead = latency - np.array([sum(m[2].values()) for m in measured])
    h, w = images[0].shape
    return {
        "frames": len(measured),
        "fps": round(len(measured) / span_s if warmup > 0 else (len(measured) - 1) / span_s, 1),
        "ms": {q: round(float(np.percentile(latency, p)), 3) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))},
        "stages_ms": stages_ms,
        "overhead_ms": {"p50": round(float(np.median(overhead)), 4), "p99": round(float(np.percentile(overhead, 99)), 4)},
        "rss_mb": round(peak_rss_mb(), 1),
        "size_px": [int(w), int(h)],
        "dropped": status.frames_dropped,
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20


def run(args: argparse.Namespace) -> int:
    if args.input:
        images, spacing = input_images(args.input, min(args.frames + args.warmup, 256), args.size)
    else:
        images, spacing = generated_images(args.size or (640, 480)), None
    if isinstance(args.spacing, tuple):
        spacing = args.spacing
    stages = noop_stages() if args.noop else stages_from_args(args)
    report = measure(stages, images, frames=args.frames, warmup=max(0, args.warmup), spacing_mm=spacing)
    report["stages"] = [s.name for s in stages]
    report["input"] = args.input or "generated"
    print(json.dumps(report))
    return 0
