"""The session report: self-contained HTML, the right numbers, no patient data, real Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from guidance.cli import main
from guidance.training.report import build_report
from guidance.training.scripted import Script, scripted_insertion
from guidance.training.session import Session

PHI = {"patient_name": "DOE^JANE", "PatientID": "MRN-448812", "patient_birth_date": "1961-04-12",
       "operator": "Dr Who", "source": "/data/clinic/Jane_Doe_left_knee.mp4", "notes": "Jane called back",
       "institution": "St Elsewhere Hospital"}
PHI_STRINGS = ("DOE", "JANE", "Jane", "448812", "1961", "Dr Who", "Elsewhere", "clinic")


def _session(**script) -> Session:
    s = scripted_insertion(Script(**script))
    meta = {**s.metadata, **PHI, "detector": "classical", "fps": 20.0}
    return Session(s.records, s.events, meta, s.image, "0123456789ab")


def _write_jsonl(path: Path, records) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_report_is_self_contained_and_shows_the_metrics():
    html = build_report(_session(lost_s=(3.0, 3.6)), trainee="T01")
    # nothing fetched from elsewhere: no external scripts, styles or images
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:|//|file:)""", html)
    assert "<script" not in html
    assert html.count("data:image/png;base64,") == 4  # tip path + three key frames
    assert html.count("<svg") >= 2  # distance over time, visibility timeline
    row = re.search(r"<td>Redirections</td><td class='v'>(\d+)</td>", html)
    assert row and row.group(1) == "2"
    assert "Not a cleared medical device" in html
    for label in ("First sight of the tip", "Closest approach", "Injection"):
        assert label in html


def _text_only(html: str) -> str:
    """The page without its base64 images (random letters there could spell anything)."""
    return re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", html)


def test_report_contains_no_patient_data():
    html = _text_only(build_report(_session(), trainee="T01"))
    for s in PHI_STRINGS:
        assert s not in html, s
    assert "0123456789ab" in html  # the session is named by a content fingerprint instead


def test_report_command_stores_progress_and_prints_no_phi(tmp_path, capsys):
    s = scripted_insertion(Script())
    rec = _write_jsonl(tmp_path / "Jane_Doe_1961.jsonl", s.records)
    db = tmp_path / "p.sqlite"
    out = tmp_path / "r.html"
    assert main(["report", str(rec), "--out", str(out), "--trainee", "T01", "--db", str(db), "--json"]) == 0
    cap = capsys.readouterr()
    metrics = json.loads(cap.out)
    assert metrics["redirections"] == 2 and metrics["reached_target"] is True
    html = _text_only(out.read_text())
    assert "no frames in this session file" in html  # JSON Lines carry no images
    assert main(["progress", "T01", "--db", str(db)]) == 0
    cap2 = capsys.readouterr()
    assert "T01" in cap2.out and f"{metrics['score']:.1f}" in cap2.out
    for text in (html, cap.out, cap.err, cap2.out, cap2.err, json.dumps(metrics)):
        assert "Jane" not in text and "1961" not in text


def test_report_command_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "x.jsonl"
    bad.write_text("{not json\n")
    assert main(["report", str(bad), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x.jsonl" in err[0]
    assert main(["report", str(tmp_path / "missing.usrec"), "--out", str(tmp_path / "r.html")]) == 2
    assert main(["report", str(tmp_path / "x.jsonl"), "--out", str(tmp_path / "r.html"),
                 "--trainee", "John Smith"]) == 2


def test_report_with_knee_trend(tmp_path):
    from guidance.training.progress_db import ProgressDB
    with ProgressDB(tmp_path / "p.sqlite") as db:
        db.add_measurement("K-7", "2026-01-01", 2.4)
        db.add_measurement("K-7", "2026-03-01", 2.1)
        html = build_report(_session(), trend=db.measurements("K-7"))
    assert "Cartilage thickness, knee K-7" in html and "2026-03-01: 2.10 mm" in html


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(build_report(_session(lost_s=(3.0, 3.6)), trainee="T01"))
    # GUIDANCE_DOCS_SCREENSHOTS=1 keeps the screenshot as docs/report_screenshot.png (committed)
    docs = Path(__file__).resolve().parents[1] / "docs"
    shot = docs / "report_screenshot.png" if os.environ.get("GUIDANCE_DOCS_SCREENSHOTS") == "1" else tmp_path / "shot.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", f"--screenshot={shot}",
           "--window-size=1280,2000", page.as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (2000, 1280)
    # the distance chart's line (Okabe-Ito blue #0072B2) and the key frames (grey ultrasound) are painted
    blue = np.all(np.abs(img.astype(int) - (178, 114, 0)) < 30, axis=2).sum()
    assert blue > 500
    grey = (np.ptp(img, axis=2) < 6) & (img[..., 0] > 15) & (img[..., 0] < 120)
    assert grey.sum() > 20000


def test_report_on_a_video_runs_the_pipeline(tmp_path, capsys):
    """A file that is not a recording is scored on the guidance the pipeline computes now."""
    s = scripted_insertion(Script(pass_angles_deg=(), size_px=(240, 200), entry_px=(20.0, 15.0),
                                  advance_px_s=200.0))
    path = tmp_path / "Jane_Doe_knee.avi"
    h, w = s.image(0).shape
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20, (w, h))
    for i in range(0, len(s.records), 2):
        vw.write(cv2.cvtColor(s.image(i), cv2.COLOR_GRAY2BGR))
    vw.release()
    out = tmp_path / "r.html"
    assert main(["report", str(path), "--out", str(out), "--spacing", "0.1", "--detector", "classical",
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["frames"] == (len(s.records) + 1) // 2 and metrics["units"] == "mm"
    html = out.read_text()
    assert html.count("data:image/png;base64,") >= 2
    assert "Jane" not in _text_only(html)


def _write_usrec(path: Path, s, metadata: dict) -> Path:
    """A real project recording of a scripted session (frames + the guidance shown + events)."""
    recording = pytest.importorskip("guidance.recording")
    from guidance.training.session import record_to_result

    results = (record_to_result(r, s.image(i)) for i, r in enumerate(s.records))
    events = [{"kind": "injection", "data": {}, "t_s": s.events[0]["t_s"]},
              {"kind": "checkpoint", "data": {}, "t_s": None, "frame": 90}]
    return recording.write_recording(path, results, metadata, events=events)


def test_report_from_a_real_recording(tmp_path, capsys):
    s = scripted_insertion(Script(lost_s=(3.0, 3.6)))
    rec = _write_usrec(tmp_path / "Jane_Doe_1961.usrec", s, {**PHI, "detector": "classical", "fps": 20.0})
    out = tmp_path / "r.html"
    db = tmp_path / "p.sqlite"
    assert main(["report", str(rec), "--out", str(out), "--trainee", "T01", "--db", str(db), "--json"]) == 0
    cap = capsys.readouterr()
    m = json.loads(cap.out)
    assert (m["redirections"], m["tip_lost_episodes"]) == (2, 1)
    assert m["tip_to_target_at_injection_mm"] == pytest.approx(0.0, abs=0.3)  # the recorded event is used
    html = _text_only(out.read_text())
    assert html.count("no frames") == 0 and out.read_text().count("data:image/png;base64,") == 4
    assert "classical" in html  # whitelisted technical metadata does show
    for text in (html, cap.out, cap.err):
        for phi in PHI_STRINGS:
            assert phi not in text, phi


def test_practice_on_a_real_recording_in_the_player_data(qtbot, tmp_path):
    from ui.practice import open_practice
    from ui.replay_data import ReplayData

    s = scripted_insertion(Script())
    rec = _write_usrec(tmp_path / "s.usrec", s, {"fps": 20.0})
    dlg = open_practice(None, ReplayData(rec))
    qtbot.addWidget(dlg)
    run = dlg.panel.run
    assert run.reference == "recorded detections"
    # the instructor's checkpoint (an event after frame 90, no t_s) is one of the stops
    assert any(c.reason == "instructor" and c.row == 90 for c in run.checkpoints)
