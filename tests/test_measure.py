"""Follow-up cartilage thickness: geometry, the detector on real files, storage and trend."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from guidance.cli import main
from guidance.training.measure import measure_input, measure_targets, thickness_along_surface
from guidance.types import TargetDetection

CARTILAGE_PX = 30  # drawn band thickness (vertical), 3.0 mm at 0.1 mm/px


def _target(bone_y, offset_px, xs=np.arange(0.0, 400.0, 4.0)):
    bone = np.stack([xs, bone_y(xs)], axis=1)
    return TargetDetection("cartilage", bone - [0.0, offset_px], bone)


def test_flat_cartilage_thickness_is_the_gap():
    t = _target(lambda x: 300.0 + 0 * x, 30.0)
    pts, th = thickness_along_surface(t, (0.1, 0.1))
    assert len(th) == len(pts) > 50
    assert np.allclose(th, 3.0)
    # anisotropic pixels: only the vertical spacing matters for a vertical gap
    _, th2 = thickness_along_surface(t, (0.1, 0.05))
    assert np.allclose(th2, 1.5)


def test_sloped_cartilage_is_measured_perpendicular_to_the_bone():
    t = _target(lambda x: 300.0 + 0.5 * x, 30.0)
    _, th = thickness_along_surface(t, (0.1, 0.1))
    expected = 30.0 * np.cos(np.arctan(0.5)) * 0.1  # less than the 3.0 mm vertical gap
    inner = th[5:-5]
    assert np.allclose(inner, expected, atol=1e-6)


def test_bone_only_targets_measure_nothing():
    t = _target(lambda x: 300.0 + 0 * x, 0.0)
    bone_only = TargetDetection("bone", t.bone_px, t.bone_px)
    m = measure_targets([bone_only, None], (0.1, 0.1))
    assert m.median_mm is None and m.frames_used == 2 and m.frames_with_cartilage == 0
    assert "nothing measured" in m.summary()


def test_profile_along_the_surface_pools_frames():
    thin = _target(lambda x: 300.0 + 0 * x, 20.0)
    thick = _target(lambda x: 300.0 + 0 * x, 30.0)
    m = measure_targets([thin, thick, thick], (0.1, 0.1))
    assert m.median_mm == pytest.approx(3.0)
    assert m.frames_with_cartilage == 3
    assert m.position_mm[0] == 0.0 and m.position_mm[-1] == pytest.approx(39.6, abs=1.0)
    assert np.allclose(m.profile_mm, 3.0)


def _knee_image() -> np.ndarray:
    """Speckle, a curved bright bone with its shadow and a dark cartilage band above it."""
    rng = np.random.default_rng(0)
    h, w = 400, 480
    img = rng.gamma(2.0, 20.0, (h, w)).astype(np.float32)
    bone = 300 + 30 * ((np.arange(w) - 240) / 240.0) ** 2
    yy = np.arange(h)[:, None]
    img[yy > bone + 4] *= 0.15
    img[(yy > bone - CARTILAGE_PX) & (yy < bone - 2)] *= 0.25
    img[np.abs(yy - bone) < 3] = 230
    img[np.abs(yy - (bone - CARTILAGE_PX - 1)) < 1.5] = 150
    return cv2.GaussianBlur(img.clip(0, 255).astype(np.uint8), (3, 3), 0)


def test_measure_an_image_with_the_detector(tmp_path):
    path = tmp_path / "knee.png"
    cv2.imwrite(str(path), _knee_image())
    m = measure_input(path, spacing_mm=(0.1, 0.1), detector="classical")
    assert m.frames_used == 1 and m.frames_with_cartilage == 1
    assert m.median_mm == pytest.approx(CARTILAGE_PX * 0.1, abs=1.0)
    assert len(m.profile_mm) > 20


def test_measure_samples_a_video(tmp_path):
    path = tmp_path / "knee.avi"
    img = _knee_image()
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (img.shape[1], img.shape[0]))
    for _ in range(12):
        vw.write(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    vw.release()
    m = measure_input(path, spacing_mm=(0.1, 0.1), detector="classical", max_frames=4)
    assert m.frames_used == 4 and m.frames_with_cartilage == 4
    assert m.median_mm == pytest.approx(CARTILAGE_PX * 0.1, abs=1.0)


def test_measure_command_stores_a_trend_for_the_report(tmp_path, capsys):
    img_path = tmp_path / "Jane_Doe_1961.png"  # a careless file name must not leak
    cv2.imwrite(str(img_path), _knee_image())
    db = tmp_path / "p.sqlite"
    for day, sp in (("2026-01-10", "0.1"), ("2026-04-10", "0.09")):
        assert main(["measure", str(img_path), "--spacing", sp, "--knee", "K-12", "--date", day,
                     "--db", str(db), "--detector", "classical", "--json"]) == 0
    cap = capsys.readouterr()
    assert "Jane" not in cap.out + cap.err and "1961" not in cap.out + cap.err
    lines = [json.loads(x) for x in cap.out.splitlines()]
    assert [x["date"] for x in lines] == ["2026-01-10", "2026-04-10"]
    assert lines[1]["median_thickness_mm"] == pytest.approx(lines[0]["median_thickness_mm"] * 0.9, rel=0.02)
    from guidance.training.progress_db import ProgressDB
    with ProgressDB(db) as d:
        rows = d.measurements("K-12")
    assert all("Jane" not in r.source_name for r in rows)
    assert [r.median_thickness_mm for r in rows] == \
        [pytest.approx(x["median_thickness_mm"], abs=1e-3) for x in lines]
    # the session report shows the knee's trend
    from guidance.training.scripted import Script, scripted_insertion
    rec = tmp_path / "s.jsonl"
    rec.write_text("\n".join(json.dumps(r) for r in scripted_insertion(Script()).records))
    out = tmp_path / "r.html"
    assert main(["report", str(rec), "--out", str(out), "--knee", "K-12", "--db", str(db)]) == 0
    assert "Cartilage thickness, knee K-12" in out.read_text()


def test_measure_errors_are_one_line(tmp_path, capsys):
    img_path = tmp_path / "knee.png"
    cv2.imwrite(str(img_path), _knee_image())
    assert main(["measure", str(img_path), "--detector", "classical"]) == 2  # no spacing anywhere
    assert main(["measure", str(img_path), "--spacing", "0.1", "--knee", "K1", "--date", "10/01/2026",
                 "--db", str(tmp_path / "p.sqlite")]) == 2
    assert main(["measure", str(tmp_path / "nope.png"), "--spacing", "0.1"]) == 2
    assert main(["measure", "0", "--spacing", "0.1"]) == 2  # a live device is not a follow-up image
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4
    assert "knee.png" in err[0] and "--spacing" in err[0] and "spacing unknown" in err[0]
    assert "YYYY-MM-DD" in err[1]


def test_measure_real_knee_screenshots(shared_data):
    # spacings from the scanners' depth rulers (../shared/README.md)
    found = []
    for name, sp in (("clarius.png", 0.085), ("lumify.png", 0.070)):
        m = measure_input(shared_data / "knee" / name, spacing_mm=(sp, sp))
        if m.median_mm is not None:
            # femoral trochlear cartilage of an adult: a few millimetres
            assert 1.0 < m.median_mm < 4.5, (name, m.median_mm)
            found.append(name)
    assert found, "the target detector found cartilage on neither real knee screenshot"


def test_measure_reads_the_depth_ruler_when_asked(shared_data, capsys):
    # ../shared/README.md: Lumify 0 and 3 cm ticks 427 px apart (0.070 mm/px)
    assert main(["measure", str(shared_data / "knee" / "lumify.png"), "--spacing", "ruler", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["spacing_mm"][0] == pytest.approx(30.0 / 427, rel=0.03)
    assert out["source"].startswith("input ")  # a fingerprint, never the file name
