"""Replaying recordings: navigation, pacing, and reproducing the recorded guidance exactly."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from guidance.cli import main
from guidance.contract import result_to_record
from guidance.pipeline import LivePipeline, run_offline
from guidance.recording import Recorder, RecordingReader, write_recording
from guidance.recording.golden import guidance_of
from guidance.recording.replay import RecordingSource
from guidance.sources import open_source
from guidance.stages import build_stages
from guidance.types import Frame


def _numbered(n: int, dt_s: float = 0.05) -> list[Frame]:
    """Frame i shows the value i everywhere, so what was read is plain to see."""
    return [Frame(np.full((16, 16), i, np.uint8), 10.0 + i * dt_s, 500 + i, i, (0.2, 0.2), "t") for i in range(n)]


@pytest.fixture
def numbered(tmp_path):
    return write_recording(tmp_path / "n.usrec", _numbered(20), {})


def _values(src: RecordingSource, k: int) -> list[int | None]:
    out = []
    for _ in range(k):
        f = src.read()
        out.append(None if f is None else int(f.image[0, 0]))
    return out


def test_frames_come_out_in_order_with_their_recorded_index_time_and_spacing(numbered):
    src = open_source(str(numbered))
    assert isinstance(src, RecordingSource)
    with src:
        frames = [src.read() for _ in range(20)]
        assert src.read() is None
    assert [f.index for f in frames] == list(range(500, 520))
    assert [f.timestamp_s for f in frames] == pytest.approx([10.0 + i * 0.05 for i in range(20)])
    assert all(f.spacing_mm == (0.2, 0.2) for f in frames)
    assert [f.seq for f in frames] == list(range(20))


def test_seek_and_step(numbered):
    with RecordingSource(str(numbered)) as src:
        assert _values(src, 2) == [0, 1]
        src.seek(10)
        assert src.position == 10 and _values(src, 1) == [10]
        src.step(-1)
        assert _values(src, 1) == [9]
        src.step(0)
        assert _values(src, 1) == [9]
        src.step(3)
        assert _values(src, 2) == [12, 13]
        src.seek(-5)
        assert _values(src, 1) == [0]
        src.seek(99)
        assert _values(src, 2) == [19, None]
        src.seek_time(10.0 + 7 * 0.05 - 0.01)
        assert _values(src, 1) == [7]


def test_range_and_loop(numbered):
    with RecordingSource(str(numbered), start=3, stop=6, loop=True) as src:
        assert _values(src, 7) == [3, 4, 5, 3, 4, 5, 3]
    with RecordingSource(str(numbered), start=17) as src:
        assert _values(src, 4) == [17, 18, 19, None]


def test_pacing_follows_recorded_timestamps_and_speed(tmp_path):
    """With an injected clock: each frame is due at its recorded time (/ speed) after the first."""
    ts = np.cumsum([0, 0.033, 0.034, 0.2, 0.033, 0.5, 0.033])  # uneven, with pauses
    frames = [Frame(np.zeros((8, 8), np.uint8), 3.0 + t, i, i) for i, t in enumerate(ts)]
    path = write_recording(tmp_path / "p.usrec", frames, {})
    for speed in (1.0, 2.5):
        now = [0.0]
        delivered = []

        def sleep(s):
            now[0] += s

        with RecordingSource(str(path), realtime=True, speed=speed, clock=lambda: now[0], sleep=sleep) as src:
            while src.read() is not None:
                delivered.append(now[0])
                now[0] += 0.004  # processing time between reads does not accumulate
        assert delivered == pytest.approx(list(ts / speed), abs=1e-9)


def test_realtime_replay_takes_the_recorded_time(tmp_path):
    """Real clock: 1.5 s of recording replays in 1.5 s (within 5%)."""
    frames = [Frame(np.zeros((8, 8), np.uint8), i / 20.0, i, i) for i in range(31)]
    path = write_recording(tmp_path / "r.usrec", frames, {})
    with RecordingSource(str(path), realtime=True) as src:
        src.read()
        t0 = time.monotonic()
        while src.read() is not None:
            pass
        elapsed = time.monotonic() - t0
    assert elapsed == pytest.approx(1.5, rel=0.05)


def test_live_recording_replays_to_the_same_guidance(tmp_path):
    """Record a live session (pipeline dropping frames as it must), replay with the same detector."""
    path = tmp_path / "live.usrec"
    stages = build_stages(detector="classical")
    rec = Recorder(path, {"source": "sim"}).start()
    pipe = LivePipeline(lambda: open_source("sim:insertion:11", realtime=True, fps=30, size_px=(192, 160)), stages)
    pipe.add_consumer(rec.submit)
    with pipe:
        deadline = time.monotonic() + 60
        while rec.stats["frames_written"] < 25 and time.monotonic() < deadline:
            time.sleep(0.05)
    rec.stop()
    with RecordingReader(path) as rd:
        recorded = [rd.record(i) for i in range(len(rd))]
    assert len(recorded) >= 25
    assert any(r["needle"] for r in recorded) and any(r["trajectory"] for r in recorded)

    replayed = [result_to_record(r) for r in run_offline(open_source(str(path)), build_stages(detector="classical"))]
    assert [guidance_of(r) for r in replayed] == [guidance_of(r) for r in recorded]


def test_detect_reads_a_recording_like_any_input(tmp_path, capsys, replay_sequence):
    sample = replay_sequence("steep")
    rec = sample.to_recording(tmp_path / "steep.usrec")
    assert main(["detect", str(rec), "--model", "classical"]) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert [ln["frame"] for ln in lines] == [t["frame"] for t in sample.truth]
    assert [ln["t_s"] for ln in lines] == pytest.approx([t["t_s"] for t in sample.truth], abs=1e-6)
    assert lines[0]["spacing_mm"] == pytest.approx(list(sample.spacing_mm))


def test_replay_sequence_fixture_gives_frames_truth_and_a_recording_of_them(tmp_path, replay_sequence):
    sample = replay_sequence("insertion")
    frames = list(sample.frames())
    assert len(frames) == len(sample.truth) == sample.meta["frames"]
    assert frames[0].spacing_mm == pytest.approx(sample.spacing_mm)
    rec = sample.to_recording(tmp_path / "x.usrec")
    with RecordingReader(rec) as rd:
        assert all(np.array_equal(rd.frame(i).image, f.image) for i, f in enumerate(frames))
        assert rd.timestamps_s == pytest.approx([f.timestamp_s for f in frames])
