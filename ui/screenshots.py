"""Save screenshots of the live view and the player for the docs.

    QT_QPA_PLATFORM=offscreen python -m ui.screenshots [--out docs]

Runs the live view on the simulator until guidance is on screen, saves
``screenshot_live.png``; then opens the player on a short recording of the
same session and saves ``screenshot_player.png``. ``tests/test_ui_screenshots.py``
runs this (into ``docs/`` with ``GUIDANCE_DOCS_SCREENSHOTS=1``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _wait(app, cond, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        app.processEvents()
        if cond():
            return True
        time.sleep(0.01)
    return False


def live_screenshot(out: Path, *, spec: str = "sim:insertion:2", size=(640, 480), settle_s: float = 6.0,
                    record_to: Path | None = None, window_size=(1280, 760)):
    """Run the live view on ``spec``; save a grab once a trajectory is shown. Returns (window, recording)."""
    from .app import ensure_app
    from .live_view import LiveWindow
    from .settings import Settings, ini_settings

    app = ensure_app()
    tmp = Path(tempfile.mkdtemp(prefix="guidance-shots-"))
    settings = Settings(ini_settings(tmp / "settings.ini"))
    win = LiveWindow(settings, source_options={"fps": 30, "size_px": size})
    win.resize(*window_size)
    win.show()
    win.start(spec)
    recording = None
    if record_to is not None:
        _wait(app, lambda: win.result is not None, 10)
        recording = win.start_recording(record_to)
    # Wait for a frame that carries the whole picture: needle, target, path, all fresh.
    t0 = time.monotonic()
    def good(r):  # mid-insertion, needle tracked, a few mm to go: the moment that matters
        return (r is not None and r.trajectory is not None and r.track is not None and r.track.state == "tracking"
                and r.trajectory.distance_mm is not None and 4.0 < r.trajectory.distance_mm < 15.0)

    if not _wait(app, lambda: time.monotonic() - t0 > settle_s and good(win.result) and win.view.overlay.shown, 90):
        raise SystemExit("no fresh, tracked frame with guidance in 90 s (machine too loaded?): screenshot not saved")
    tr = win.result.trajectory if win.result is not None else None
    if tr is not None:  # a picked target a little beside the path, as a physician would aim
        win.set_target_point((tr.intercept_px[0] - 0.04 * size[0], tr.intercept_px[1]))
        n = win.view.paint_count
        def ready():
            return (win.view.paint_count > n + 3 and win.view.overlay.shown and good(win.result)
                    and win.result.trajectory.target_point_px is not None)

        # a calm moment (no message above the image) if one comes soon, else any fresh tracked frame
        if not _wait(app, lambda: ready() and win.strip.kind == "none", 8):
            _wait(app, ready, 20)
        # grab at once, while that fresh frame is the one on screen
    win.grab().save(str(out))
    if record_to is not None:
        _wait(app, lambda: False, 1.0)
        win.mark_injection()
        _wait(app, lambda: False, 1.0)
        win.stop_recording(wait=True)
    return win, recording


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from .app import apply_style, ensure_app
    from .player import PlayerWindow
    from .settings import Settings, ini_settings

    app = ensure_app()
    apply_style(app)  # as the app looks, also when a test made the QApplication
    with tempfile.TemporaryDirectory(prefix="guidance-shots-") as tmpd:
        tmp = Path(tmpd)
        win, recording = live_screenshot(out / "screenshot_live.png", record_to=tmp / "session.usrec")
        win.close()
        player = PlayerWindow(Settings(ini_settings(tmp / "player.ini")))
        player.resize(1400, 700)
        player.show()
        player.open(str(recording))
        player.set_mode("side" if player.data.has_recorded_guidance else "recomputed")
        guided = [i for i in range(len(player.data))
                  if (player.data.record(i) or {}).get("trajectory") and (player.data.record(i) or {}).get("tracking") == "tracking"]
        player.seek(guided[len(guided) // 2] if guided else len(player.data) // 2)
        _wait(app, lambda: player.results["recomputed"] is not None, 30)
        _wait(app, lambda: False, 0.3)
        player.grab().save(str(out / "screenshot_player.png"))
        player.close()
    print(f"saved {out / 'screenshot_live.png'} and {out / 'screenshot_player.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
