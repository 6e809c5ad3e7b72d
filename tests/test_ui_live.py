"""The live view, driven for real (offscreen Qt): frames arrive, the overlay sits where the
result says, the picked target reaches the guidance stage, stale / no-signal guidance is hidden."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from PySide6 import QtCore  # noqa: E402

from guidance.errors import SourceDisconnected  # noqa: E402
from guidance.recording import RecordingReader  # noqa: E402
from guidance.sources import SourceBase  # noqa: E402
from guidance.types import (Detection, Frame, FrameResult, NeedleDetection, NeedleTrack,  # noqa: E402
                            TargetDetection, Trajectory)
from ui.live_view import LiveWindow  # noqa: E402
from ui.settings import Settings, ini_settings  # noqa: E402


def make_result(received_s: float | None = None, *, w: int = 640, h: int = 480, tip=(300.0, 200.0),
                alerts=(), spacing=(0.1, 0.1), state="tracking") -> FrameResult:
    """A result with every element of guidance, at known coordinates."""
    rng = np.random.default_rng(0)
    img = (rng.random((h, w)) * 100).astype(np.uint8)
    frame = Frame(img, 0.0, 0, 0, spacing, "test")
    x = np.arange(0.0, w, 4.0)
    surface = np.column_stack([x, 300 + 10 * np.sin(x / 80)])
    bone = surface + [0.0, 20.0]
    needle = NeedleDetection(tip, (100.0, 60.0), 0.9)
    traj = Trajectory((440.0, 300.0), 12.3, 123.0, 35.0, 20.0,
                      (((tip[0], tip[1]), (430.0, 310.0)), ((tip[0], tip[1]), (450.0, 290.0))))
    return FrameResult(frame, detection=Detection(needle, TargetDetection("cartilage", surface, bone, 2.0)),
                       track=NeedleTrack(state, needle if state != "lost" else None, angle_sd_deg=2.0),
                       trajectory=traj, alerts=tuple(alerts),
                       received_s=time.monotonic() if received_s is None else received_s)


@pytest.fixture
def settings(tmp_path):
    return Settings(ini_settings(tmp_path / "settings.ini"))


@pytest.fixture
def window(qtbot, settings, tmp_path):
    settings.set("record/dir", str(tmp_path / "recordings"))
    win = LiveWindow(settings, source_options={"fps": 30, "size_px": (320, 240)})
    qtbot.addWidget(win)
    win.resize(1100, 700)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


def _close(a, b, tol=1e-6):
    return np.allclose(np.asarray(a, float), np.asarray(b, float), atol=tol)


def test_overlay_items_sit_where_the_result_says(window, qtbot):
    res = make_result()
    window.show_result(res)
    ov = window.view.overlay
    vis = ov.visible_items()
    assert vis["needle"] and vis["tip"] and vis["path"] and vis["cone"] and vis["intercept"]
    assert vis["surface"] and vis["bone"] and vis["band"]
    assert _close(ov.tip.pos(), res.needle.tip_px)
    assert _close(ov.needle.points(), [res.needle.tail_px, res.needle.tip_px])
    assert _close(ov.path.points(), [res.needle.tip_px, res.trajectory.intercept_px])
    assert _close(ov.intercept.pos(), res.trajectory.intercept_px)
    drawn = ov.surface.points()  # simplified for drawing: a subset of the result's points, same ends
    src = np.asarray(res.target.surface_px)
    assert len(drawn) >= 2
    assert _close(drawn[[0, -1]], src[[0, -1]], 1e-3)
    assert np.abs(drawn[:, None, :] - src[None, :, :]).max(axis=2).min(axis=1).max() < 1e-3
    assert window.readouts.texts()["distance"] == "12.3 mm"
    assert window.readouts.texts()["state"] == "TRACKING"


def test_state_says_lost_only_for_a_needle_seen_a_moment_ago(window):
    from dataclasses import replace

    gone = replace(make_result(), track=NeedleTrack("lost", None), trajectory=None)
    window.show_result(replace(gone, alerts=("needle_lost",)))
    assert window.readouts.texts()["state"] == "LOST"
    window.show_result(replace(gone, alerts=()))  # no needle yet (or long gone): nothing was lost
    assert window.readouts.texts()["state"] == "NOT SEEN"


def test_a_needle_seen_only_a_frame_or_two_reads_unconfirmed_and_the_aim_spread_is_shown(window):
    from dataclasses import replace

    res = make_result()
    window.show_result(replace(res, track=replace(res.track, confirmed=False)))
    assert window.readouts.texts()["state"] == "UNCONFIRMED"
    window.show_result(res)
    assert window.readouts.texts()["state"] == "TRACKING"
    # the cone ends 20 px apart in x and y at 0.1 mm/px: +-1.4 mm
    assert window.readouts.texts()["miss"] == "path lands within \u00b11.4 mm"


def test_rendered_overlay_lands_on_the_tip_pixel(window, qtbot):
    """Grab the screen: the yellow tip ring is drawn around the tip's widget position."""
    res = make_result(tip=(320.0, 240.0))
    window.show_result(res)
    qtbot.waitUntil(lambda: window.view.paint_count > 0)
    img = window.view.grab().toImage()
    p = window.view.frame_to_widget(320.0, 240.0)
    dpr = img.devicePixelRatio()
    arr = np.array([[img.pixelColor(int((p.x() + dx) * dpr), int((p.y() + dy) * dpr)).getRgb()[:3]
                     for dx in range(-12, 13)] for dy in range(-12, 13)])
    yellowish = (arr[..., 0] > 180) & (arr[..., 1] > 170) & (arr[..., 2] < 120)
    assert yellowish.sum() > 10


def test_stale_guidance_is_hidden_with_a_reason(window, qtbot):
    old = make_result(received_s=time.monotonic() - 0.5)
    window.show_result(old)
    assert not window.view.overlay.shown
    assert not any(window.view.overlay.visible_items().values())
    assert "GUIDANCE HIDDEN" in window.strip.text()
    assert window.readouts.texts()["distance"] == "\u2014"
    fresh = make_result()
    window.show_result(fresh)
    assert window.view.overlay.shown and window.view.overlay.visible_items()["needle"]
    # no new frame: the freshness timer hides it on its own within a few ticks
    qtbot.waitUntil(lambda: not window.view.overlay.shown, timeout=2000)
    assert "GUIDANCE HIDDEN" in window.strip.text()


def test_alerts_are_shown_in_words(window):
    window.show_result(make_result(alerts=("near_bone",)))
    assert window.strip.kind == "alert" and "NEAR BONE" in window.strip.text()
    window.show_result(make_result())
    assert window.strip.kind == "none"


def test_several_alerts_all_fit_on_the_strip(window):
    """Three alerts at once: short forms, every one readable, none cut off at the strip's ends."""
    window.show_result(make_result(alerts=("near_bone", "off_target", "steep_needle")))
    text = window.strip.text()
    assert all(word in text for word in ("NEAR BONE", "OFF TARGET", "STEEP"))
    width = window.strip.fontMetrics().horizontalAdvance(text)
    assert width <= window.strip.contentsRect().width()


def test_layer_toggle_hides_only_that_layer_and_is_remembered(window, settings, qtbot, tmp_path):
    window.show_result(make_result())
    window.layer_actions["cone"].trigger()
    vis = window.view.overlay.visible_items()
    assert not vis["cone"] and vis["path"] and vis["needle"]
    window.close()
    settings.sync()
    again = LiveWindow(Settings(ini_settings(tmp_path / "settings.ini")))
    qtbot.addWidget(again)
    assert again.view.overlay.layers["cone"] is False
    assert again.view.overlay.layers["path"] is True
    again.close()


def test_snapshot_writes_a_png_of_the_view(window, tmp_path):
    window.show_result(make_result())
    path = window.snapshot(tmp_path / "snap.png")
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 400


def _write_video(path, n=90, w=320, h=240, fps=30):
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h), False)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        img = ((xx + 3 * i) % 64 * 3).astype(np.uint8)
        img[int(h * 0.7):int(h * 0.75)] = 230
        out.write(img)
    out.release()
    return path


def test_frames_from_a_file_source_arrive_and_are_painted(window, qtbot, tmp_path):
    video = _write_video(tmp_path / "clip.avi")
    assert window.start(str(video))
    qtbot.waitUntil(lambda: window.view.paint_count >= 10, timeout=15000)
    assert window.result is not None and window.result.frame.width_px == 320
    window.stop()
    assert window.worker is None


def test_a_looped_video_that_is_cut_off_says_so_beside_the_readouts(window, qtbot, tmp_path):
    whole = _write_video(tmp_path / "whole.avi", n=60)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # its header still says 60 frames
    assert window.start(str(cut))
    qtbot.waitUntil(lambda: window.readouts.source_note.text() != "", timeout=20000)
    text = window.readouts.source_note.text()
    assert text.startswith("cut.avi: the video ends after ") and "of the 60 frames its header declares: it was cut off or is damaged" in text
    painted = window.view.paint_count
    qtbot.waitUntil(lambda: window.view.paint_count > painted + 5, timeout=10000)  # and it goes on looping
    # a recording made meanwhile keeps the notice, and its replay shows it beside the readouts
    assert window.start_recording(tmp_path / "looped.usrec") is not None
    qtbot.waitUntil(lambda: window.recorder.stats["frames_written"] >= 3, timeout=10000)
    path = window.stop_recording(wait=True)
    window.stop()
    with RecordingReader(path) as rd:
        assert "of the 60 frames its header declares: it was cut off or is damaged" in rd.source_notice
    assert window.start(str(path))
    qtbot.waitUntil(lambda: "recorded from a source where the video ends after" in
                    window.readouts.source_note.text(), timeout=20000)
    window.stop()
    window._update_status()
    assert window.readouts.source_note.text() == ""


def test_a_bad_source_gives_a_message_not_a_crash(window):
    assert not window.start("/nonexistent/clip.avi")
    assert "clip.avi" in window.strip.text()
    assert window.worker is None


def test_clicking_the_image_sets_the_target_of_the_guidance_stage(window, qtbot, tmp_path):
    video = _write_video(tmp_path / "clip.avi")
    assert window.start(str(video))
    qtbot.waitUntil(lambda: window.view.paint_count >= 2, timeout=15000)
    from ui.processing import find_stage

    stage = find_stage(window.stages, "guidance")
    assert stage is not None
    window.act_pick.trigger()
    target = (200.0, 150.0)
    qtbot.mouseClick(window.view.viewport(), QtCore.Qt.MouseButton.LeftButton,
                     pos=window.view.frame_to_widget(*target))
    assert stage.target_point_px is not None
    assert np.hypot(*np.subtract(stage.target_point_px, target)) <= 1.0
    assert not window.act_pick.isChecked()  # one pick per press of T
    assert _close(window.view.overlay.target_point.pos(), stage.target_point_px)
    # a click without pick mode does not move the target
    qtbot.mouseClick(window.view.viewport(), QtCore.Qt.MouseButton.LeftButton,
                     pos=window.view.frame_to_widget(50.0, 50.0))
    assert np.hypot(*np.subtract(stage.target_point_px, target)) <= 1.0
    window.act_clear_target.trigger()
    assert stage.target_point_px is None


def test_pausing_the_source_hides_guidance_and_says_so(window, qtbot, tmp_path):
    video = _write_video(tmp_path / "clip.avi", n=300)
    assert window.start(str(video))
    qtbot.waitUntil(lambda: window.view.paint_count >= 3, timeout=15000)
    window.worker.pause()
    # Wait for the words, not just a hidden overlay: on a loaded machine a late frame can hide the
    # guidance ("no new frame for ...") just before the pause, and the next check then says PAUSED.
    qtbot.waitUntil(lambda: not window.view.overlay.shown and "PAUSED" in window.strip.text(), timeout=3000)
    assert window.strip.kind == "stale"
    painted = window.view.paint_count
    window.worker.resume()
    # Resuming ends the pause. On a loaded machine the frames that follow may still arrive late and
    # be called INTERMITTENT (also a "stale" strip), so wait for the pause's own words to go.
    qtbot.waitUntil(lambda: "PAUSED" not in window.strip.text() and window.view.paint_count > painted, timeout=5000)


class _CutSource(SourceBase):
    """A live source that sends a few frames, then goes silent (a cable pulled)."""

    name = "cut cable"
    is_live = True

    def __init__(self, spec="cut", *, frames=5, **_):
        super().__init__()
        self.frames = frames
        self.sent = 0

    def read(self):
        if self.sent >= self.frames:
            time.sleep(0.05)
            raise SourceDisconnected("cut cable: no signal")
        self.sent += 1
        time.sleep(1 / 30)
        return self.make_frame(np.full((120, 160), 80, np.uint8), time.monotonic(), self.sent)


def test_a_cut_source_shows_the_no_signal_banner(window, qtbot):
    from ui.worker import PipelineWorker

    window.stages = []
    window.worker = PipelineWorker(lambda: _CutSource(), [], parent=window, stall_timeout_s=0.3)
    window.worker.result_ready.connect(window._on_result_ready)
    window.worker.start()
    qtbot.waitUntil(lambda: window.result is not None, timeout=5000)
    qtbot.waitUntil(lambda: window.strip.kind == "no_signal", timeout=8000)
    assert "NO SIGNAL" in window.strip.text()
    assert not window.view.overlay.shown
    window.stop()


def test_starts_on_the_simulator_and_draws_its_guidance(window, qtbot):
    pytest.importorskip("guidance.sources.synthetic")
    assert window.start("sim:insertion:1")
    qtbot.waitUntil(lambda: window.view.paint_count >= 5, timeout=20000)
    # the detector sees the needle in the simulator's clean insertion within a few seconds
    qtbot.waitUntil(lambda: window.result is not None and window.result.needle is not None, timeout=30000)
    res = window.result
    ov = window.view.overlay
    assert _close(ov.tip.pos(), res.needle.tip_px)
    assert _close(ov.needle.points(), [res.needle.tail_px, res.needle.tip_px])
    assert np.array_equal(window.view.image_item.image, res.frame.image)  # guidance drawn on its own frame
    assert window.lab_model.text().startswith("detector ")
    qtbot.waitUntil(lambda: window.display_fps() > 0 and "fps" in window.lab_fps.text(), timeout=3000)
    window.close()
    assert window.worker is None  # closing stops the pipeline


def test_command_line_demo_runs_and_a_bad_source_is_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    bad = subprocess.run([sys.executable, "-m", "guidance", "ui", "--source", str(tmp_path / "missing.avi")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2
    assert "missing.avi" in bad.stderr and "Traceback" not in bad.stderr
    junk = tmp_path / "junk.usrec"
    junk.write_bytes(b"nothing like a recording")
    bad_play = subprocess.run([sys.executable, "-m", "guidance", "ui", "--play", str(junk)],
                              capture_output=True, text=True, env=env, timeout=120)
    assert bad_play.returncode == 2
    assert "junk.usrec" in bad_play.stderr and "Traceback" not in bad_play.stderr
    pytest.importorskip("guidance.sources.synthetic")
    ok = subprocess.run([sys.executable, "-m", "guidance", "demo", "--size", "320x240", "--quit-after", "2"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]


def test_keyboard_shortcuts_reach_their_actions(window, qtbot):
    window.show_result(make_result())
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=3000)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_T)
    assert window.act_pick.isChecked()
    qtbot.keyClick(window, QtCore.Qt.Key.Key_3, QtCore.Qt.KeyboardModifier.AltModifier)  # layer 3: the cone
    assert window.view.overlay.layers["cone"] is False
    assert not window.view.overlay.visible_items()["cone"]
    assert "F5" in window.shortcuts_text() and "Ctrl+R" in window.shortcuts_text()


def test_pixel_spacing_set_by_the_user_reaches_the_frames_and_is_remembered(window, qtbot, tmp_path, settings):
    video = _write_video(tmp_path / "clip.avi", n=300)
    assert window.start(str(video))
    qtbot.waitUntil(lambda: window.result is not None, timeout=15000)
    assert window.result.frame.spacing_mm is None
    # readouts show only fresh guidance: on a loaded machine the first frames may come too late to count
    qtbot.waitUntil(lambda: "spacing unknown" in window.readouts.scale_note.text(), timeout=15000)
    window.set_spacing((0.2, 0.25))
    qtbot.waitUntil(lambda: window.result is not None and window.result.frame.spacing_mm == (0.2, 0.25),
                    timeout=15000)
    assert window.readouts.scale_note.text() == ""
    assert "0.200" in window.readouts.spacing_note.text()  # says the distances rest on the user's spacing
    window.stop()
    # remembered for this source only: another source keeps its own spacing
    assert window.start(str(video))
    qtbot.waitUntil(lambda: window.result is not None and window.result.frame.spacing_mm == (0.2, 0.25),
                    timeout=15000)
    other = _write_video(tmp_path / "other.avi", n=300)
    assert window.start(str(other))
    assert window.spacing_mm is None and window.readouts.spacing_note.text() == ""
    window.stop()


def test_the_source_picker_follows_the_spec_and_offers_each_kind(window, tmp_path):
    kinds = [window.source_kind.itemData(i) for i in range(window.source_kind.count())]
    assert kinds == ["sim", "device", "file", "recording", "plus", "igtl"]
    window.source_kind.setCurrentIndex(kinds.index("igtl"))
    assert window.source_spec.text().startswith("igtl://")
    video = _write_video(tmp_path / "clip.avi", n=10)
    assert window.start(str(video))
    assert window.source_kind.currentData() == "file" and window.source_spec.text() == str(video)
    window.stop()


def test_zoom_to_the_imaging_region_and_back(window, qtbot):
    from dataclasses import replace

    from guidance.types import ImagingRegion

    res = replace(make_result(), region=ImagingRegion(100, 50, 300, 200))
    window.show_result(res)
    (x0, x1), (y0, y1) = window.view.vb.viewRange()
    assert x0 < 0 and x1 > 638  # whole frame
    window.act_zoom.trigger()  # Z
    assert window.act_zoom.isChecked()
    (x0, x1), (y0, y1) = window.view.vb.viewRange()
    assert 60 <= x0 <= 100 and 400 <= x1 <= 440  # the region fills the view (aspect kept: y may extend)
    assert y0 <= 50 and y1 >= 250
    window.act_zoom.trigger()
    (x0, x1), _ = window.view.vb.viewRange()
    assert x0 < 0 and x1 > 638


def test_cartilage_band_is_not_drawn_over_a_stray_bone_line(qtbot):
    from ui.overlay_items import band_path

    x = np.arange(0.0, 400.0, 2.0)
    surface = np.column_stack([x, np.full_like(x, 300.0)])
    bone = np.column_stack([x, np.full_like(x, 320.0)])
    bone[(x > 200) & (x < 260), 1] = 20.0  # the bone line jumps up to the skin over 60 px
    path = band_path(surface, bone, max_thickness_px=60.0)
    assert path is not None
    assert path.contains(QtCore.QPointF(100.0, 310.0))  # the real band
    assert path.contains(QtCore.QPointF(300.0, 310.0))
    assert not path.contains(QtCore.QPointF(230.0, 310.0))  # not where the bone line strayed
    assert not path.contains(QtCore.QPointF(230.0, 150.0))  # and never over the tissue above
    assert band_path(surface, bone + [0, -40.0], max_thickness_px=60.0) is None  # bone above the surface


def test_late_frames_hide_guidance_and_the_message_does_not_flicker(window):
    window.show_result(make_result(received_s=time.monotonic() - 0.25))  # arrived already 250 ms old
    assert not window.view.overlay.shown
    assert "behind the probe" in window.strip.text()
    window.show_result(make_result())  # the next one is on time: guidance back at once...
    assert window.view.overlay.shown and window.view.overlay.visible_items()["path"]
    # ...and the strip says guidance is intermittent rather than blinking off and on
    assert window.strip.kind == "stale" and "INTERMITTENT" in window.strip.text()
    window.show_result(make_result(alerts=("off_target",)))  # an alert still takes precedence
    assert window.strip.kind == "alert"
