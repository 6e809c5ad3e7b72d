"""Practice mode: checkpoints where the needle moves or turns, answers scored in mm,
driven through the real Qt panel with real mouse clicks."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from guidance.training.practice import PracticeParams, PracticeRun, choose_checkpoints, score_answer
from guidance.training.scripted import Script, scripted_insertion


def test_checkpoints_follow_needle_motion():
    s = scripted_insertion(Script())
    p = PracticeParams(max_checkpoints=50)
    cps = choose_checkpoints(s.records, spacing_mm=None, params=p)
    assert len(cps) >= 4
    t = np.array([c.t_s for c in cps])
    assert np.all(np.diff(t) >= p.min_gap_s - 1e-9)
    for c in cps:
        assert s.records[c.row]["needle"] is not None  # only frames where the tip was seen
    # a needle that never moves gives nothing to ask about
    still = copy.deepcopy(s.records[:60])
    for r in still:
        r["needle"] = s.records[0]["needle"]
    assert choose_checkpoints(still) == []


def test_a_turn_without_travel_is_a_checkpoint():
    s = scripted_insertion(Script(pass_angles_deg=(30.0, 38.0), turn_s=2.0, withdraw_to_px=20.0))
    cps = choose_checkpoints(s.records, params=PracticeParams(move_mm=50.0, max_checkpoints=50))
    assert any(c.reason == "turned" for c in cps)


def test_instructor_checkpoints_are_kept():
    s = scripted_insertion(Script())
    t_mark = s.records[0]["t_s"] + 5.0
    events = [{"kind": "checkpoint", "t_s": t_mark}]
    cps = choose_checkpoints(s.records, events, params=PracticeParams(max_checkpoints=3))
    inst = [c for c in cps if c.reason == "instructor"]
    assert len(inst) == 1 and inst[0].t_s == pytest.approx(5.0, abs=0.06)
    assert len(cps) == 3


def test_answers_are_scored_in_millimetres():
    s = scripted_insertion(Script(spacing_mm=0.1))
    run = PracticeRun(s.records, s.events)
    cp = run.current
    exact = score_answer(cp, cp.tip_px, cp.surface_px[10], (0.1, 0.1))
    assert exact.tip_error_mm == pytest.approx(0.0) and exact.target_error_mm == pytest.approx(0.0, abs=1e-9)
    assert exact.score == pytest.approx(100.0)
    off = run.submit((cp.tip_px[0] + 20.0, cp.tip_px[1]), (cp.surface_px[10][0], cp.surface_px[10][1] - 30.0))
    assert off.tip_error_mm == pytest.approx(2.0)
    assert off.target_error_mm == pytest.approx(3.0, abs=0.2)  # nearest point of a gently curved surface
    assert off.score == pytest.approx(100 * (1 - 2 / 5 + 1 - off.target_error_mm / 5) / 2)
    missed = run.submit(None, None)
    assert missed.score == 0.0
    res = run.result()
    assert res.worst(1)[0] is missed
    assert res.score == pytest.approx((off.score + 0.0) / 2)


def test_truth_is_the_reference_when_given():
    truth = scripted_insertion(Script()).records
    recorded = copy.deepcopy(truth)
    for r in recorded:  # a detector that is 15 px off to the right
        if r["needle"]:
            r["needle"]["tip_px"][0] += 15.0
            r["needle"]["shaft_px"][1][0] += 15.0
    run = PracticeRun(recorded, truth=truth)
    cp = run.current
    true_tip = truth[cp.row]["needle"]["tip_px"]
    ans = run.submit(tuple(true_tip), tuple(cp.surface_px[5]))
    assert ans.tip_error_mm == pytest.approx(0.0)
    assert run.reference == "truth"
    with pytest.raises(ValueError):
        PracticeRun(recorded, truth=truth[:-1])


# --- the Qt panel, with real clicks -----------------------------------------------------

def _click(qtbot, panel, xy):
    from PySide6 import QtCore
    pos = panel.view.frame_to_widget(*xy)
    qtbot.mouseClick(panel.view.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=pos)


def test_practice_panel_end_to_end(qtbot, tmp_path):
    from guidance.training.progress_db import ProgressDB
    from ui.practice import PracticePanel, ProgressPanel

    s = scripted_insertion(Script(lost_s=(3.0, 3.6)))
    run = PracticeRun(s.records, s.events, params=PracticeParams(max_checkpoints=4))
    panel = PracticePanel(run, s.image, fps=20.0, speed=40.0)
    qtbot.addWidget(panel)
    panel.resize(900, 900)
    panel.show()
    qtbot.waitExposed(panel)
    answers = []
    panel.answered.connect(answers.append)
    panel.start_button.click()
    n = len(run.checkpoints)
    assert n == 4
    with qtbot.waitSignal(panel.finished, timeout=20000) as done:
        for k in range(n):
            qtbot.waitUntil(lambda: panel.state == "ask_tip", timeout=10000)
            assert panel.row == run.checkpoints[k].row  # playback stopped at the checkpoint
            assert not panel.view.overlay.shown  # guidance hidden while the trainee answers
            cp = run.current
            if k == 1:
                panel.skip_button.click()  # "can't see it"
            else:
                _click(qtbot, panel, (cp.tip_px[0] + 10.0, cp.tip_px[1]))  # 1 mm to the right
            assert panel.state == "ask_target"
            _click(qtbot, panel, tuple(cp.surface_px[20]))
            assert panel.state == "feedback"
            assert "Tip off by" in panel.feedback.text()
            assert panel.view.overlay.shown  # then revealed for feedback
            panel.next_button.click()
    result = done.args[0]
    assert len(answers) == n
    for k, a in enumerate(answers):
        if k == 1:
            assert a.tip_error_mm is None
        else:
            assert a.tip_error_mm == pytest.approx(1.0, abs=0.25)  # click mapping within a pixel or two
        assert a.target_error_mm < 0.3
    assert result.worst(1)[0] is answers[1]
    assert panel.worst_list.isVisible() and panel.worst_list.count() == 3
    assert "Practice score" in panel.prompt.text()
    panel.worst_list.setCurrentRow(0)  # review the worst answer
    assert "Reviewing" in panel.prompt.text()

    db_path = tmp_path / "p.sqlite"
    with ProgressDB(db_path) as db:
        db.add_session("T01", 55.0, kind="performed", recorded_at="2026-01-01T10:00:00+00:00")
    panel.trainee, panel.db_path = "T01", db_path
    assert panel.save_button.isEnabled()
    panel.save_button.click()
    assert panel.saved and not panel.save_button.isEnabled()  # saved once
    with ProgressDB(db_path) as db:
        rows = db.sessions("T01")
    assert rows[-1].kind == "practice" and rows[-1].score == pytest.approx(result.score)
    assert rows[-1].metrics["checkpoints"] == n and rows[-1].metrics["missed_clicks"] == 1
    prog = ProgressPanel(db_path, "T01")
    qtbot.addWidget(prog)
    assert list(prog.series["practice"][1]) == [pytest.approx(result.score)]
    assert "2 sessions" in prog.summary.text()


def test_panel_without_checkpoints_says_so(qtbot):
    from ui.practice import PracticePanel

    s = scripted_insertion(Script(pass_angles_deg=()))
    recs = copy.deepcopy(s.records)
    for r in recs:
        r["needle"] = None
    panel = PracticePanel(PracticeRun(recs), s.image, playback=False)
    qtbot.addWidget(panel)
    panel.start_button.click()
    assert panel.state == "done" and "No checkpoints" in panel.prompt.text()


def test_practice_opens_from_the_player_data_with_truth_beside_the_file(qtbot, tmp_path):
    """A sample sequence with its truth.jsonl (../shared/CONTRACT.md) can be practised on."""
    import json

    import cv2
    from ui.practice import open_practice
    from ui.replay_data import ReplayData

    s = scripted_insertion(Script(pass_angles_deg=(30.0,)))
    folder = tmp_path / "sample"
    folder.mkdir()
    for i in range(len(s.records)):
        cv2.imwrite(str(folder / f"f{i:04d}.png"), s.image(i))
    (folder / "truth.jsonl").write_text("\n".join(json.dumps(r) for r in s.records) + "\n")
    data = ReplayData(folder)
    dlg = open_practice(None, data)
    assert dlg is not None
    qtbot.addWidget(dlg)
    run = dlg.panel.run
    assert run.reference == "truth" and len(run.checkpoints) >= 3
    dlg.panel.playback = False
    dlg.panel.start_button.click()
    assert dlg.panel.state == "ask_tip"
    cp = run.current
    dlg.panel.click_at(*cp.tip_px)
    dlg.panel.click_at(*cp.surface_px[3])
    assert run.answers[0].tip_error_mm == pytest.approx(0.0)


def test_player_opens_practice_mode(qtbot, tmp_path):
    """The replay player's Practice action (Ctrl+P) starts practice on the open recording."""
    recording = pytest.importorskip("guidance.recording")
    from guidance.training.session import record_to_result
    from ui.player import PlayerWindow
    from ui.settings import Settings, ini_settings

    s = scripted_insertion(Script(pass_angles_deg=(30.0,)))
    rec = recording.write_recording(tmp_path / "s.usrec",
                                    (record_to_result(r, s.image(i)) for i, r in enumerate(s.records)),
                                    {"fps": 20.0})
    win = PlayerWindow(Settings(ini_settings(tmp_path / "player.ini")), detector="classical")
    qtbot.addWidget(win)
    win.open(rec)
    win.act_practice.trigger()
    dlg = win.practice_dialog
    assert dlg is not None and dlg.isVisible()
    qtbot.addWidget(dlg)
    assert dlg.panel.run.reference == "recorded detections" and dlg.panel.run.checkpoints
    assert not win.playing
