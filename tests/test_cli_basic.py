"""The ``guidance`` command as a user runs it: real processes, real files."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from guidance.cli import main
from guidance.recording import RecordingReader

COMMANDS = ["detect", "live", "bench"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "guidance", *args], capture_output=True, text=True, timeout=timeout)


def write_clip(path, frames: int, seed: int = 0):
    """An MJPG video of noise frames, 128x96 at 20 fps, written by OpenCV."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (128, 96))
    rng = np.random.default_rng(seed)
    for _ in range(frames):
        writer.write(cv2.cvtColor(rng.integers(0, 120, (96, 128), dtype=np.uint8), cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


@pytest.fixture
def clip(tmp_path):
    return write_clip(tmp_path / "clip.avi", 6)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: guidance " + command in capsys.readouterr().out


def test_detect_writes_one_contract_line_per_frame(clip, tmp_path):
    out = tmp_path / "out.jsonl"
    assert main(["detect", str(clip), "--out", str(out), "--spacing", "0.1", "--model", "classical"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [rec["frame"] for rec in lines] == list(range(6))
    assert np.allclose(np.diff([rec["t_s"] for rec in lines]), 0.05, atol=1e-3)
    for rec in lines:
        assert {"frame", "t_s", "needle", "target", "trajectory", "ms"} <= set(rec)
        assert rec["spacing_mm"] == [0.1, 0.1]
        assert "total" in rec["ms"]
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_a_video_cut_off_is_detected_and_recorded_as_far_as_it_goes_and_said_to_be_short(tmp_path, capsys):
    path = write_clip(tmp_path / "long.avi", 40, seed=1)
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])  # a copy interrupted half way: its header still says 40 frames
    for video, notice in ((path, False), (cut, True)):
        out = tmp_path / f"{video.stem}.jsonl"
        assert main(["detect", str(video), "--out", str(out), "--model", "classical"]) == 0
        n = len(out.read_text().splitlines())
        err = capsys.readouterr().err
        if notice:
            assert 0 < n < 40
            cut_frames = n
            assert err.strip() == (f"guidance detect: {video}: the video ends after {n} of the 40 frames its "
                                   "header declares: it was cut off or is damaged")
        else:
            assert n == 40 and err == ""
    # the live pipeline's end says it too
    assert main(["live", "--source", str(cut), "--duration", "20", "--model", "classical"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "state=ended" in last and last.endswith("end of input; the video ends after "
                                                   f"{cut_frames} of the 40 frames its header declares: it was cut off or is damaged")
    # and so does a recording of it, after keeping every frame there was
    rec = tmp_path / "cut.usrec"
    assert main(["record", "--source", str(cut), "--out", str(rec), "--model", "classical", "--quiet"]) == 0
    assert capsys.readouterr().err.strip() == (f"guidance record: {cut}: the video ends after {cut_frames} of the 40 "
                                               "frames its header declares: it was cut off or is damaged")
    with RecordingReader(rec) as rd:
        assert len(rd) == cut_frames
        assert rd.source_notice == (f"the video ends after {cut_frames} of the 40 frames its header declares: "
                                    "it was cut off or is damaged")
    # kept in the file: whoever looks at or replays the recording later is told too
    assert main(["info", str(rec)]) == 0
    assert json.loads(capsys.readouterr().out)["source_notice"].startswith(f"the video ends after {cut_frames} ")
    assert main(["replay", str(rec), "--out", str(tmp_path / "replayed.jsonl")]) == 0
    assert capsys.readouterr().err.strip() == (
        f"guidance replay: {rec}: recorded from a source where the video ends after {cut_frames} of the 40 "
        "frames its header declares: it was cut off or is damaged")
    # a whole video's recording says nothing of the kind
    whole = tmp_path / "whole.usrec"
    assert main(["record", "--source", str(path), "--out", str(whole), "--model", "classical", "--quiet"]) == 0
    stats = json.loads(capsys.readouterr().out)
    # every frame the video gave is either recorded or counted as skipped by the live view (stale)
    assert stats["source_frames"] == 40
    assert stats["frames_written"] + stats["frames_skipped_live"] == 40
    with RecordingReader(whole) as rd:
        assert rd.source_notice == "" and rd.info()["source_notice"] is None


def test_detect_out_to_a_folder_is_one_line_before_any_work(clip, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    proc = run_cli("detect", str(clip), "--out", str(folder), "--model", "classical")
    assert proc.returncode == 2  # was a traceback after processing the whole input
    assert proc.stderr.strip().splitlines() == [f"guidance detect: {folder}: is a folder; give a file name"]
    assert list(folder.iterdir()) == [] and not (tmp_path / "results.partial").exists()


def test_detect_to_stdout_with_region_override(clip):
    proc = run_cli("detect", str(clip), "--region", "10,20,60,50", "--no-track", "--model", "classical")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 6
    assert all(rec["region_px"] == [10, 20, 60, 50] for rec in lines)
    assert all("tracking" not in rec for rec in lines)


@pytest.mark.parametrize("make_bad,expected", [
    (lambda d: d / "missing.mp4", "missing.mp4"),
    (lambda d: (d / "broken.mp4").write_bytes(b"junk" * 50) and d / "broken.mp4", "broken.mp4"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "no image files"),
    (lambda d: (d / "x.png").write_bytes(b"not a png") and d / "x.png", "x.png"),
    # a PNG's signature and a broken header: OpenCV logs its own lines unless held back
    (lambda d: (d / "y.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2) and d / "y.png", "y.png"),
    (lambda d: (d / "cut.png").write_bytes(cv2.imencode(".png", np.eye(64, dtype=np.uint8) * 200)[1].tobytes()[:150])
     and d / "cut.png", "cut.png"),
])
def test_detect_bad_input_is_one_line_and_status_2(tmp_path, make_bad, expected):
    bad = make_bad(tmp_path)
    out = tmp_path / "result.jsonl"
    proc = run_cli("detect", str(bad), "--out", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()  # no half-written result file


def test_bad_file_in_the_middle_of_a_folder(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((32, 32), 50 * i, np.uint8))
    (tmp_path / "img1.png").write_bytes(b"corrupt")
    proc = run_cli("detect", str(tmp_path), "--model", "classical")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "img1.png" in proc.stderr


@pytest.mark.parametrize("args", [
    ["detect", "x.avi", "--spacing", "abc"],
    ["detect", "x.avi", "--spacing", "-0.1"],
    ["detect", "x.avi", "--region", "1,2,3"],
    ["detect", "x.avi", "--target", "nowhere"],
    ["bench", "--size", "640by480"],
    ["live"],
])
def test_bad_arguments_are_one_line_and_status_2(args):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) <= 2  # argparse: usage line + the error line
    assert "error" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("value", ["-1,2", "-0.1", "-.5"])
def test_a_negative_spacing_gets_our_own_message_naming_it(value, capsys):
    # argparse alone takes "-1,2" for an option and says only "expected one argument"
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", "x.avi", "--spacing", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"spacing '{value}'" in err and "positive millimetres" in err


def test_bad_model_path_is_one_line(clip, tmp_path):
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not onnx")
    proc = run_cli("detect", str(clip), "--model", str(bogus))
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "model.onnx" in proc.stderr


def test_live_prints_status_lines_and_ends_with_the_file(clip):
    proc = run_cli("live", "--source", str(clip), "--duration", "3", "--model", "classical")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines and all("fps=" in line and "latency_ms=" in line and "dropped=" in line for line in lines)
    assert "state=ended" in lines[-1]
    assert "received=6" in lines[-1]


def test_live_with_a_missing_device_reports_no_signal_and_stops_on_time():
    proc = run_cli("live", "--source", "97", "--duration", "1.5", "--model", "classical")
    assert "state=no_signal" in proc.stdout and "capture device 97" in proc.stdout
    # never a frame: the run failed, said once on stderr
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "capture device 97" in proc.stderr


def test_live_on_a_corrupt_file_says_so_once(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"")
    proc = run_cli("live", "--source", str(bad), "--duration", "3", "--model", "classical")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"guidance live: {bad}: cannot open as a video "
                                                "(corrupt, empty or unsupported codec)"]


def test_bench_prints_the_contract_json():
    proc = run_cli("bench", "--noop", "--frames", "40", "--warmup", "5", "--size", "320x240")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["frames"] == 40 and report["fps"] > 0
    assert set(report["ms"]) >= {"p50", "p95", "p99"}
    assert report["ms"]["p50"] <= report["ms"]["p95"] <= report["ms"]["p99"]
    assert set(report["stages_ms"]) == {"region", "detect", "track", "guidance"}
    assert report["rss_mb"] > 0 and report["size_px"] == [320, 240]


def test_bench_on_an_input_file(clip):
    proc = run_cli("bench", "--input", str(clip), "--frames", "10", "--warmup", "2", "--model", "classical")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["frames"] == 10 and "detect" in report["stages_ms"] and report["size_px"] == [128, 96]


def test_detect_reads_the_spacing_from_the_depth_ruler(shared_data, tmp_path):
    out = tmp_path / "lumify.jsonl"
    assert main(["detect", str(shared_data / "knee" / "lumify.png"), "--spacing", "ruler",
                 "--model", "classical", "--out", str(out)]) == 0
    record = json.loads(out.read_text().splitlines()[0])
    assert record["region_px"] == [392, 146, 488, 428]
    assert record["spacing_mm"] == pytest.approx([30 / 427, 30 / 427], rel=0.01)
