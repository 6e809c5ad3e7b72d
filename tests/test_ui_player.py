"""The replay player on real files (offscreen Qt): open, step, seek, speed, loop, overlay modes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from guidance.errors import GuidanceError  # noqa: E402
from ui.player import PlayerWindow  # noqa: E402
from ui.settings import Settings, ini_settings  # noqa: E402


def write_numbered_video(path, n=40, w=160, h=120, fps=20):
    """Frame i has a bright bar at a height that encodes i, so the frame shown can be read back."""
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h), False)
    for i in range(n):
        img = np.full((h, w), 20, np.uint8)
        img[i * 2:i * 2 + 2, :] = 250
        out.write(img)
    out.release()
    return path


def wait_recomputed(player, qtbot):
    """Recomputed guidance runs on a helper thread: wait for the frame on screen."""
    qtbot.waitUntil(lambda: player.results["recomputed"] is not None
                    and player.results["recomputed"].frame.index == player.data.frame(player.index).index,
                    timeout=20000)
    return player.results["recomputed"]


def shown_frame_number(player) -> int:
    """Which frame is on screen, read from the image the view holds."""
    img = player.view.image_item.image
    return int(np.argmax(img.mean(axis=1)) // 2)


@pytest.fixture
def player(qtbot, tmp_path):
    win = PlayerWindow(Settings(ini_settings(tmp_path / "player.ini")), detector="classical")
    qtbot.addWidget(win)
    win.resize(1000, 600)
    win.show()
    yield win
    win.close()


@pytest.fixture
def clip(tmp_path):
    return write_numbered_video(tmp_path / "clip.avi")


def test_open_step_and_seek_show_the_right_frame(player, clip):
    player.open(str(clip))
    assert len(player.data) == 40
    assert shown_frame_number(player) == 0
    player.act_fwd.trigger()
    player.act_fwd.trigger()
    assert player.index == 2 and shown_frame_number(player) == 2
    player.act_back.trigger()
    assert player.index == 1 and shown_frame_number(player) == 1
    player.timeline.setValue(25)  # dragging the slider seeks
    assert player.index == 25 and shown_frame_number(player) == 25
    player.seek(1000)  # clamped to the last frame
    assert player.index == 39 and shown_frame_number(player) == 39
    player.step(1)
    assert player.index == 39
    assert "frame 40 / 40" in player.position_label.text()


def test_a_plain_file_has_only_recomputed_guidance(player, clip, qtbot):
    player.open(str(clip))
    assert player.mode == "recomputed"
    player.set_mode("side")  # nothing recorded to compare with: stays recomputed
    assert player.mode == "recomputed"
    assert wait_recomputed(player, qtbot).frame.index == player.data.frame(0).index
    player.seek(20)  # a jump: the frame shows at once, its guidance when computed
    assert shown_frame_number(player) == 20
    assert wait_recomputed(player, qtbot).frame.index == player.data.frame(20).index


def test_speed_steps_between_a_quarter_and_four_times(player, clip):
    player.open(str(clip))
    for _ in range(10):
        player.act_faster.trigger()
    assert player.speed == 4.0 and player.speed_box.currentText() == "4x"
    for _ in range(10):
        player.act_slower.trigger()
    assert player.speed == 0.25


def test_play_loops_inside_the_range(player, clip, qtbot):
    player.open(str(clip))
    player.seek(10)
    player.act_loop_in.trigger()
    player.seek(14)
    player.act_loop_out.trigger()
    assert player.loop_range == (10, 14)
    player.set_speed(4.0)
    player.seek(10)
    seen = set()
    player.position_changed.connect(seen.add)
    player.play()
    qtbot.waitUntil(lambda: {10, 11, 12, 13, 14} <= seen and player.index <= 12, timeout=10000)
    assert seen <= set(range(10, 15))  # never outside the loop
    player.pause()
    assert not player.playing


def test_play_runs_to_the_end_and_stops(player, clip, qtbot):
    player.open(str(clip))
    player.set_speed(4.0)
    player.seek(30)
    player.act_play.trigger()
    qtbot.waitUntil(lambda: player.index == 39 and not player.playing, timeout=10000)
    assert shown_frame_number(player) == 39


def test_a_bad_file_is_refused_with_its_name(player, tmp_path):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(GuidanceError, match="broken.avi"):
        player.open(str(bad))


def test_real_plus_sequence_and_scanner_screenshot_open_and_step(player, shared_data, qtbot):
    mha = shared_data / "plus" / "BoneUltrasound_L14.igs.mha"
    player.open(str(mha))
    assert len(player.data) > 5
    player.seek(len(player.data) - 1)
    player.act_back.trigger()
    assert player.index == len(player.data) - 2
    assert np.array_equal(player.view.image_item.image, player.data.frame(player.index).image)
    wait_recomputed(player, qtbot)
    png = shared_data / "knee" / "clarius.png"
    player.open(str(png))
    assert len(player.data) == 1
    res = wait_recomputed(player, qtbot)
    assert res.frame.width_px == player.view.image_item.image.shape[1]
