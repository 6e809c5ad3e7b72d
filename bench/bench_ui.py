"""Live view speed: display frame rate, GUI-thread time per frame, frame arrival -> on screen.

    python bench/bench_ui.py [--seconds 8] [--fps 60] [--full]

Two ways to feed the window, both through the real LivePipeline and worker:

- ``overlay`` (default): simulator frames replayed at ``--fps`` with guidance
  from the simulator's truth (and a 2-degree cone) attached by a lookup stage, so the figures measure
  the UI (worker hand-over, drawing the image and every overlay item, paint)
  and not the detector.
- ``--full`` adds a run on the live simulator with the real stages (what
  ``guidance demo`` shows): the display rate then follows the detector.

Display frame rate counts repaints that put a new frame on screen. Latency
is from the pipeline receiving the frame (``result.received_s``) to the end
of the paint that showed it. Runs offscreen (software raster, like a desktop
without OpenGL). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from guidance.sources import SourceBase, open_source  # noqa: E402


class ReplaySource(SourceBase):
    """Frames from a list, paced at ``fps``, forever (a live source)."""

    is_live = True

    def __init__(self, frames, fps: float) -> None:
        super().__init__()
        self.frames, self.fps = frames, float(fps)
        self.name = f"replay@{fps:g}"
        self._i = 0
        self._next = None

    def read(self):
        now = time.monotonic()
        self._next = now if self._next is None else self._next + 1.0 / self.fps
        if self._next > now:
            time.sleep(self._next - now)
        else:
            self._next = now  # behind: do not burst to catch up
        src = self.frames[self._i % len(self.frames)]
        self._i += 1
        return self.make_frame(src.image, time.monotonic(), self._i, src.spacing_mm)


class LookupStage:
    """Attaches guidance computed beforehand (by frame content order) to each frame."""

    name = "lookup"

    def __init__(self, results) -> None:
        self.results = results

    def __call__(self, result):
        pre = self.results[(result.frame.index - 1) % len(self.results)]
        return replace(result, region=pre.region, detection=pre.detection, track=pre.track,
                       trajectory=pre.trajectory, alerts=pre.alerts)


def precompute(size_px, n: int):
    """``n`` simulator frames with full guidance drawn from the simulator's ground truth.

    Truth rather than the detector so that every frame carries the whole
    overlay (needle, path, cone, surfaces) at every size: this bench measures
    drawing, not detection.
    """
    from guidance.trajectory import compute_trajectory
    from guidance.types import NeedleTrack

    from ui.replay_data import record_to_result

    src = open_source("sim:insertion:1", realtime=False, size_px=size_px, fps=30)
    results = []
    with src:
        while len(results) < n:
            frame = src.read()
            if frame is None:
                break
            r = record_to_result(src.last_truth, frame)
            traj = compute_trajectory(r.needle, r.target, frame.spacing_mm, angle_sd_deg=2.0)
            results.append(replace(r, trajectory=traj,
                                   track=NeedleTrack("tracking", r.needle, angle_sd_deg=2.0) if r.needle else None))
    with_traj = sum(r.trajectory is not None for r in results)
    return results, with_traj


def _pct(values, q):
    return round(float(np.percentile(values, q)), 2) if len(values) else None


def measure(win, app, seconds: float, warmup_s: float = 2.0) -> dict:
    end_warm = time.monotonic() + warmup_s
    while time.monotonic() < end_warm:
        app.processEvents()
        time.sleep(0.001)
    win.view.paint_ms.clear()
    win.view.latency_ms.clear()
    win.update_ms.clear()
    p0 = win.view.paint_count
    seen0 = win.worker.results_seen
    status0 = win.worker.status()
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        app.processEvents(); time.sleep(0.0005)  # noqa: E702 - an event loop that also lets us stop
    dt = time.monotonic() - t0
    status = win.worker.status()
    gui = [u + p for u, p in zip(win.update_ms, win.view.paint_ms)]
    return {
        "display_fps": round((win.view.paint_count - p0) / dt, 1),
        "pipeline_fps": round((win.worker.results_seen - seen0) / dt, 1),
        "frames_dropped_by_pipeline": status.frames_dropped - status0.frames_dropped,
        "gui_ms_per_frame": {"p50": _pct(gui, 50), "p95": _pct(gui, 95)},
        "update_ms": {"p50": _pct(win.update_ms, 50), "p95": _pct(win.update_ms, 95)},
        "paint_ms": {"p50": _pct(win.view.paint_ms, 50), "p95": _pct(win.view.paint_ms, 95)},
        "arrival_to_screen_ms": {"p50": _pct(win.view.latency_ms, 50), "p95": _pct(win.view.latency_ms, 95)},
        "overlay_shown_share": None,
    }


def run_case(app, size_px, fps: float, seconds: float, results=None, window_px=(1280, 800)) -> dict:
    import tempfile

    from ui.live_view import LiveWindow
    from ui.settings import Settings, ini_settings
    from ui.worker import PipelineWorker

    settings = Settings(ini_settings(Path(tempfile.mkdtemp()) / "bench.ini"))
    win = LiveWindow(settings, source_options={"fps": fps, "size_px": size_px})
    win.resize(*window_px)
    win.show()
    shown = []
    win.view.painted.connect(lambda _t: shown.append(win.view.overlay.shown and win.view.overlay.visible_items()["needle"]))
    if results is None:  # the real thing: live simulator, real stages
        win.start("sim:insertion:1")
    else:
        frames = [r.frame for r in results]
        win.stages = [LookupStage(results)]
        win.worker = PipelineWorker(lambda: ReplaySource(frames, fps), win.stages, parent=win)
        win.worker.result_ready.connect(win._on_result_ready)
        win.worker.start()
    out = measure(win, app, seconds)
    out["overlay_shown_share"] = round(float(np.mean(shown)), 2) if shown else 0.0
    win.close()
    app.processEvents()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Live view speed")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--fps", type=float, default=60.0, help="source frame rate (default 60)")
    ap.add_argument("--full", action="store_true", help="also run the live simulator with the real detector")
    args = ap.parse_args(argv)
    from ui.app import ensure_app

    app = ensure_app()
    report = {"source_fps": args.fps, "seconds": args.seconds, "platform": os.environ["QT_QPA_PLATFORM"],
              "cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2), "cases": {}}
    for size in ((640, 480), (1024, 768)):
        results, with_traj = precompute(size, 90)
        key = f"{size[0]}x{size[1]}"
        case = run_case(app, size, args.fps, args.seconds, results)
        case["precomputed_frames_with_trajectory"] = f"{with_traj}/{len(results)}"
        report["cases"][key] = case
        if args.full:
            report["cases"][key + "_full_pipeline_30fps"] = run_case(app, size, 30.0, args.seconds)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
