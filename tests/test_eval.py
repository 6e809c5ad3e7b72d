"""`guidance eval` on predictions and truth with known differences."""

from __future__ import annotations

import json

import pytest

from guidance.cli import main
from guidance.evaluate import evaluate, evaluate_paths


def needle(tail, tip):
    import math
    return {"tip_px": list(tip), "shaft_px": [list(tail), list(tip)],
            "angle_deg": math.degrees(math.atan2(tip[1] - tail[1], tip[0] - tail[0])), "confidence": 1.0}


def target(y_bone, y_top=None, x0=0, x1=100, thick=None):
    bone = [[x, y_bone] for x in range(x0, x1 + 1, 2)]
    surf = [[x, y_top] for x in range(x0, x1 + 1, 2)] if y_top is not None else bone
    return {"kind": "cartilage" if y_top is not None else "bone", "surface_px": surf, "bone_px": bone,
            "cartilage_thickness_mm": thick}


def rec(i, n=None, t=None, spacing=None):
    r = {"frame": i, "t_s": i / 30, "needle": n, "target": t, "trajectory": None}
    if spacing is not None:
        r["spacing_mm"] = spacing
    return r


def make_pair():
    """4 needle frames (one missed), 2 needle-free frames (one false positive)."""
    truth = [rec(0, needle((0, 0), (30, 40)), target(80.0, 70.0, thick=2.0), [0.1, 0.1]),
             rec(1, needle((0, 0), (30, 40)), target(80.0), [0.1, 0.1]),
             rec(2, needle((0, 0), (30, 40)), None, [0.1, 0.1]),
             rec(3, needle((0, 0), (30, 40)), None, [0.1, 0.1]),
             rec(4, None, None, [0.1, 0.1]),
             rec(5, None, None, [0.1, 0.1])]
    pred = [rec(0, needle((0, 0), (33, 44)), target(82.0, 70.0, thick=2.5)),  # tip off by 5 px = 0.5 mm
            rec(1, needle((0, 0), (30, 40)), target(80.0, x0=0, x1=50)),      # exact tip, half the bone
            rec(2, needle((0, 0), (-40, 30)), None),                          # 90 degrees off
            rec(3, None, None),                                               # missed
            rec(4, needle((5, 5), (20, 20)), None),                           # false positive
            rec(5, None, None)]
    return pred, truth


def test_evaluate_known_differences():
    pred, truth = make_pair()
    r = evaluate(zip(pred, truth))
    assert r["unit"] == "mm"
    assert r["needle_recall"] == pytest.approx(0.75)
    assert r["false_positive_rate"] == pytest.approx(0.5)
    assert r["tip_error"]["n"] == 3
    assert r["tip_error"]["median"] == pytest.approx(0.5)  # errors 0.5, 0, 7.07 mm
    assert r["angle_error_deg"]["median"] == pytest.approx(0.2, abs=0.3)
    assert r["angle_error_deg"]["p95"] > 80
    # bone: frame 0 off by 2 px = 0.2 mm everywhere, frame 1 exact over the half it covers
    assert r["bone_distance"]["mean"] == pytest.approx(0.1)
    assert r["bone_coverage"] == pytest.approx((1.0 + 51 / 101) / 2, abs=0.01)
    assert r["cartilage_thickness_error_mm"]["median"] == pytest.approx(0.5)
    assert r["target_kind_agreement"] == pytest.approx(1.0)


def test_tip_error_along_the_shaft_says_short_or_beyond():
    # A tip drawn short of the real one reads as more distance to go than there is: the sign matters.
    truth = [rec(i, needle((0, 0), (100, 0)), None, [0.1, 0.1]) for i in range(3)]
    pred = [rec(0, needle((0, 0), (80, 0))),    # 2 mm short
            rec(1, needle((0, 0), (100, 3))),   # on the tip's depth, 0.3 mm beside it
            rec(2, needle((0, 0), (115, 0)))]   # 1.5 mm beyond
    r = evaluate(zip(pred, truth))
    assert r["tip_along_error"]["median"] == pytest.approx(0.0, abs=1e-9)
    assert r["tip_along_error"]["p5"] < -1.5 and r["tip_along_error"]["p95"] > 1.0
    assert r["tip_short_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert r["tip_beyond_rate"] == pytest.approx(1 / 3, abs=1e-3)
    # the same without a spacing: pixels, and no millimetre threshold to count against
    r_px = evaluate(zip(pred, [rec(i, needle((0, 0), (100, 0))) for i in range(3)]))
    assert r_px["unit"] == "px" and r_px["tip_along_error"]["p5"] < -15
    assert r_px["tip_short_rate"] is None


def test_recall_on_shafts_of_2mm_leaves_out_slivers():
    # shafts of 5 mm (found), 1.5 mm (missed) and 3 mm (missed) at 0.1 mm/px
    truth = [rec(0, needle((0, 0), (30, 40)), spacing=[0.1, 0.1]),
             rec(1, needle((500, 0), (491, 12)), spacing=[0.1, 0.1]),
             rec(2, needle((0, 0), (18, 24)), spacing=[0.1, 0.1])]
    pred = [rec(0, needle((0, 0), (30, 40))), rec(1), rec(2)]
    r = evaluate(zip(pred, truth))
    assert r["needle_recall"] == pytest.approx(1 / 3, abs=1e-4)
    assert r["needle_frames_shaft_2mm"] == 2
    assert r["needle_recall_shaft_2mm"] == pytest.approx(0.5)
    # without a spacing the length in mm is unknown: no such figure
    r = evaluate(zip(pred, [dict(t, spacing_mm=None) for t in truth]))
    assert r["needle_recall_shaft_2mm"] is None


def test_without_spacing_lengths_are_pixels_unless_given():
    truth = [rec(0, needle((0, 0), (30, 40)))]
    pred = [rec(0, needle((0, 0), (33, 44)))]
    r = evaluate(zip(pred, truth))
    assert r["unit"] == "px" and r["tip_error"]["median"] == pytest.approx(5.0)
    r = evaluate(zip(pred, truth), spacing_mm=(0.2, 0.2))
    assert r["unit"] == "mm" and r["tip_error"]["median"] == pytest.approx(1.0)


def write_jsonl(path, recs):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_cli_on_files_and_folders(tmp_path, capsys):
    pred, truth = make_pair()
    write_jsonl(tmp_path / "pred.jsonl", pred)
    write_jsonl(tmp_path / "truth.jsonl", truth)
    assert main(["eval", str(tmp_path / "pred.jsonl"), str(tmp_path / "truth.jsonl"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["needle_recall"] == pytest.approx(0.75)

    # folders: TRUTH/seqA/truth.jsonl <-> PRED/seqA.jsonl, TRUTH/seqB/truth.jsonl <-> PRED/seqB/pred.jsonl
    write_jsonl(tmp_path / "T" / "seqA" / "truth.jsonl", truth)
    write_jsonl(tmp_path / "T" / "seqB" / "truth.jsonl", truth)
    write_jsonl(tmp_path / "P" / "seqA.jsonl", pred)
    write_jsonl(tmp_path / "P" / "seqB" / "pred.jsonl", pred)
    r = evaluate_paths(tmp_path / "P", tmp_path / "T", progress=False)
    assert r["sequences"] == 2 and r["frames"] == 12
    assert r["false_positive_rate"] == pytest.approx(0.5)
    assert main(["eval", str(tmp_path / "P"), str(tmp_path / "T")]) == 0
    text = capsys.readouterr().out
    assert "needle recall           75.0%" in text


def test_cli_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope.jsonl"), str(tmp_path / "truth.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "truth.jsonl" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "truth.jsonl").write_text('{"frame": 0}\nnot json\n')
    (tmp_path / "pred.jsonl").write_text('{"frame": 0}\n')
    assert main(["eval", str(tmp_path / "pred.jsonl"), str(tmp_path / "truth.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "truth.jsonl:2" in err and "Traceback" not in err
    write_jsonl(tmp_path / "T" / "s" / "truth.jsonl", [rec(0)])
    (tmp_path / "P").mkdir()
    assert main(["eval", str(tmp_path / "P"), str(tmp_path / "T")]) == 2
    assert "no prediction" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "pred.jsonl"), str(tmp_path / "truth.jsonl"), "--spacing", "x"]) == 2


def test_an_empty_or_mismatched_prediction_file_is_refused_not_scored_as_a_quiet_run(tmp_path, capsys):
    pred, truth = make_pair()
    write_jsonl(tmp_path / "truth.jsonl", truth)
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["eval", str(tmp_path / "empty.jsonl"), str(tmp_path / "truth.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "empty.jsonl: holds no predictions" in err and len(err.strip().splitlines()) == 1
    write_jsonl(tmp_path / "other.jsonl", [rec(100 + i) for i in range(3)])
    assert main(["eval", str(tmp_path / "other.jsonl"), str(tmp_path / "truth.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "other.jsonl: none of its frame numbers (frames 100-102)" in err and "frames 0-5" in err
    # a file that covers some of the frames is scored, its missing frames counted as such
    write_jsonl(tmp_path / "part.jsonl", pred[:2])
    assert evaluate_paths(tmp_path / "part.jsonl", tmp_path / "truth.jsonl", progress=False)["frames_without_prediction"] == 4
