"""Record from the live view, find the file, open it in the player: marks, step, seek, side by side."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
recorder_mod = pytest.importorskip("guidance.recording.recorder")
reader_mod = pytest.importorskip("guidance.recording.reader")
pytest.importorskip("guidance.sources.synthetic")

from ui.live_view import LiveWindow  # noqa: E402
from ui.settings import Settings, ini_settings  # noqa: E402


@pytest.fixture
def window(qtbot, tmp_path):
    settings = Settings(ini_settings(tmp_path / "settings.ini"))
    settings.set("record/dir", str(tmp_path / "recordings"))
    win = LiveWindow(settings, source_options={"fps": 30, "size_px": (320, 240)})
    qtbot.addWidget(win)
    win.resize(1000, 650)
    win.show()
    yield win
    win.close()


def test_record_a_session_then_replay_it(window, qtbot, tmp_path):
    assert window.start("sim:insertion:2")
    qtbot.waitUntil(lambda: window.view.paint_count >= 3, timeout=20000)
    window.act_record.trigger()  # Ctrl+R
    assert window.recorder is not None and window.act_record.isChecked()
    window._update_record_label()
    assert "REC 00:0" in window.lab_record.text() and "GB free" in window.lab_record.text()
    first_seen = window.worker.results_seen
    qtbot.waitUntil(lambda: window.worker.results_seen - first_seen >= 20, timeout=30000)
    window.act_injection.trigger()  # "I": mark the injection
    seen = window.worker.results_seen
    qtbot.waitUntil(lambda: window.worker.results_seen - seen >= 10, timeout=30000)
    path = window.stop_recording(wait=True)
    assert not window.act_record.isChecked()
    # find the recording where the settings say recordings go
    found = list((tmp_path / "recordings").glob("*.usrec"))
    assert found == [path]
    reader = reader_mod.RecordingReader(path)
    assert len(reader) >= 25
    assert any(e["kind"] == "injection" for e in reader.events)
    assert reader.metadata.get("source") == "sim:insertion:2"
    qtbot.waitUntil(lambda: path.name in window.lab_record.text(), timeout=5000)

    player = window.open_player(str(path))
    qtbot.addWidget(player)
    assert player.data.has_recorded_guidance and len(player.data) == len(reader)
    inj = [m.index for m in player.data.marks if m.kind == "injection"]
    assert inj and 0 < inj[0] < len(reader)
    assert any(m.index == inj[0] for m in player.timeline.marks)  # drawn on the timeline
    player.seek(0)
    player.act_next_mark.trigger()  # PgDown: jump to the next event
    assert player.index == min(m.index for m in player.data.marks if m.index > 0)
    player.seek(inj[0])
    player.act_fwd.trigger()
    assert player.index == inj[0] + 1
    shown = player.view.image_item.image
    assert np.array_equal(shown, reader.frame(inj[0] + 1).image)  # the recorded frame, bit-exact
    # the overlay as recorded is the record of that frame
    rec = reader.record(player.index)
    res = player.results["recorded"]
    if rec.get("needle"):
        assert np.allclose(player.view.overlay.tip.pos(), rec["needle"]["tip_px"])
    else:
        assert res.needle is None and not player.view.overlay.visible_items()["tip"]
    # side by side: recorded on the left, recomputed with the current model on the right
    player.set_mode("side")
    assert player.view_b.isVisible()
    qtbot.waitUntil(lambda: player.results["recomputed"] is not None, timeout=20000)
    assert player.results["recorded"] is not None
    assert player.results["recomputed"].frame.index == reader.frame(player.index).index
    assert np.array_equal(player.view_b.image_item.image, shown)
    player.close()


def test_closing_the_window_while_recording_leaves_a_complete_file(window, qtbot, tmp_path):
    assert window.start("sim:insertion:1")
    qtbot.waitUntil(lambda: window.result is not None, timeout=20000)
    path = window.start_recording(tmp_path / "closed.usrec")
    recorder = window.recorder
    qtbot.waitUntil(lambda: recorder.stats["frames_written"] >= 10, timeout=30000)
    window.close()  # no Stop, no Record toggle: just the window's close button
    assert window.worker is None and window.recorder is None
    stats = recorder.stats
    reader = reader_mod.RecordingReader(path)
    assert len(reader) == stats["frames_written"] >= 10  # every frame handed over is in the file
    assert reader.lost_info.clean and reader.lost_info.lost_bytes == 0  # closed properly, nothing to repair
