"""``guidance live --source SPEC``: the live pipeline, headless, with figures once a second."""

from __future__ import annotations

import argparse
import sys
import time

from ._args import add_stage_options, positive_float, source_options, stages_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "live", help="run the live pipeline headless and print fps, latency and drops once a second",
        description="Grab frames from SPEC, run detection, tracking and guidance on the newest frame, and print "
                    "one status line a second. A source that stalls or disconnects is reopened with backoff.")
    p.add_argument("--source", required=True, metavar="SPEC",
                   help="capture device index (0), stream URL, video file, image folder, image, recording, "
                        "igtl://HOST:PORT, or sim / sim:SEED (the built-in simulator)")
    p.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--loop", action="store_true", help="loop a file source")
    p.add_argument("--stall-timeout", type=positive_float, default=1.0, metavar="S",
                   help="report no signal after S seconds without a frame (default 1)")
    add_stage_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import LivePipeline
    from ..sources import open_source
    from ..sources.opencv import quiet_opencv_warnings

    quiet_opencv_warnings()
    options = source_options(args, realtime=True, loop=args.loop)
    first = [open_source(args.source, **options)]  # a bad spec fails here, with one line

    def factory():
        return first.pop() if first else open_source(args.source, **options)

    pipeline = LivePipeline(factory, stages_from_args(args), stall_timeout_s=args.stall_timeout,
                            region=args.region)
    return watch(pipeline, prog="guidance live", source=args.source, duration_s=args.duration)


def watch(pipeline, *, prog: str, source: str, duration_s: float | None, suffix=lambda: "") -> int:
    """Run ``pipeline``, print its status once a second (plus ``suffix()``) until ``duration_s``,
    the source's end or error, or Ctrl-C; return the exit status (2, said on stderr, for a source
    that failed or never gave a frame)."""
    t0 = time.monotonic()
    end_s = t0 + duration_s if duration_s else float("inf")
    next_print_s = t0 + 1.0
    status = pipeline.status()
    with pipeline:
        try:
            while True:
                now = time.monotonic()
                time.sleep(max(0.0, min(0.1, next_print_s - now, end_s - now)))
                now = time.monotonic()
                status = pipeline.status()
                finished = now >= end_s or status.state in ("ended", "error")
                if now >= next_print_s or finished:
                    print(format_status(status, now - t0) + suffix(), flush=True)
                    next_print_s += 1.0
                if finished:
                    break
        except KeyboardInterrupt:
            pass
    why = status.message.split("; retrying in")[0]  # what was wrong while running: stopping clears it
    status = pipeline.status()
    if status.state == "error":
        print(f"{prog}: {status.message}", file=sys.stderr)
        return 2
    if status.frames_received == 0:
        # Retrying an absent device is right while running (a cable may be plugged in), but a
        # run that never saw a frame failed: say why once and let scripts see it.
        print(f"{prog}: {why or f'{source}: no frame received'}", file=sys.stderr)
        return 2
    return 0


def format_status(status, elapsed_s: float) -> str:
    latency = f"{status.latency_ms:.1f}" if status.latency_ms is not None else "-"
    line = (f"t={elapsed_s:5.1f}s state={status.state} fps={status.fps:.1f} latency_ms={latency} "
            f"received={status.frames_received} processed={status.frames_processed} "
            f"dropped={status.frames_dropped}")
    if status.frames_bad:
        line += f" bad={status.frames_bad}"
    if status.reconnects:
        line += f" retries={status.reconnects}"
    if status.stages_ms:
        line += " stages_ms=" + ",".join(f"{k}:{v:.1f}" for k, v in status.stages_ms.items())
    if status.message:
        line += f" | {status.message}"
    return line
