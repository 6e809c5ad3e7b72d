"""Recording format, reader, recovery and repair on real files in tmp_path."""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np
import pytest

from guidance.cli import main
from guidance.contract import result_to_record
from guidance.errors import InputError
from guidance.pipeline import run_offline
from guidance.recording import (CorruptRecordingError, Recorder, RecordingReader, repair_recording,
                                write_recording)
from guidance.recording import format as fmt
from guidance.sources import open_source
from guidance.stages import build_stages
from guidance.types import Frame, FrameResult


def _frames(n: int, size=(48, 64), spacing=(0.1, 0.12), t0: float = 100.0, seed: int = 0) -> list[Frame]:
    """Frames whose pixels cover the extremes a codec could get wrong (0, 255, noise, flat)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = rng.integers(0, 256, size, dtype=np.uint8)
        if i % 4 == 1:
            img[:] = 0
        elif i % 4 == 2:
            img[:] = 255
        elif i % 4 == 3:
            img[::2] = 7
        out.append(Frame(img, t0 + i / 30.0, 1000 + i, i, spacing if i % 5 else None, "test"))
    return out


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_round_trip_is_bit_exact_with_results_events_and_metadata(tmp_path):
    stages = build_stages(detector="classical")
    results = list(run_offline(open_source("sim:insertion:5", realtime=False, size_px=(160, 128)), stages))[:12]
    path = tmp_path / "s.usrec"
    with Recorder(path, {"source": "sim:insertion:5", "note": "ü"}) as rec:
        for i, r in enumerate(results):
            rec.submit(r)
            if i == 4:
                rec.add_event("target", {"target_point_px": [10.0, 20.0]})
        rec.add_event("injection")
    assert rec.error is None and rec.stats["frames_written"] == len(results)

    with RecordingReader(path) as rd:
        assert len(rd) == len(results)
        assert rd.lost_info.clean and rd.lost_info.lost_bytes == 0
        for i, r in enumerate(results):
            f = rd.frame(i)
            assert np.array_equal(f.image, r.frame.image) and f.image.dtype == np.uint8
            assert (f.timestamp_s, f.index, f.seq, f.spacing_mm) == (r.frame.timestamp_s, r.frame.index,
                                                                    r.frame.seq, r.frame.spacing_mm)
            assert rd.record(i) == json.loads(json.dumps(result_to_record(r)))
        assert rd.timestamps_s == [r.frame.timestamp_s for r in results]
        assert [(e["kind"], e["frame"]) for e in rd.events] == [("target", 4), ("injection", len(results) - 1)]
        assert rd.events[0]["data"] == {"target_point_px": [10.0, 20.0]}
        assert rd.metadata["note"] == "ü" and rd.metadata["format_version"] == fmt.FORMAT_VERSION
        assert {"uuid", "start_time", "software_version"} <= set(rd.metadata)


def test_codec_edge_cases_and_frames_without_results(tmp_path):
    frames = _frames(9, size=(9, 13))  # odd, tiny sizes
    path = write_recording(tmp_path / "f.usrec", frames, {"source": "unit"})
    with RecordingReader(path) as rd:
        for i, f in enumerate(frames):
            g = rd.frame(i)
            assert np.array_equal(g.image, f.image)
            assert g.spacing_mm == f.spacing_mm
            assert rd.record(i) is None
        assert rd.frame(-1).index == frames[-1].index
        with pytest.raises(IndexError):
            rd.frame(len(frames))


def test_existing_file_is_never_overwritten(tmp_path):
    path = write_recording(tmp_path / "a.usrec", _frames(2), {})
    before = _sha(path)
    with pytest.raises(InputError, match="already exists"):
        Recorder(path, {}).start()
    assert _sha(path) == before


def test_queue_overflow_drops_frames_and_says_so_in_the_file(tmp_path):
    frames = _frames(40, size=(480, 640))
    rec = Recorder(tmp_path / "d.usrec", {}, max_queue=1).start()
    for f in frames:  # far faster than PNG encoding of 640x480: the queue overflows
        rec.submit(FrameResult(f))
    stats = rec.stop()
    assert stats["frames_dropped"] > 0
    assert stats["frames_written"] + stats["frames_dropped"] == len(frames)
    with RecordingReader(rec.path) as rd:
        assert len(rd) == stats["frames_written"]
        assert rd.lost_info.frames_dropped == stats["frames_dropped"]
        assert "dropped" in rd.lost_info.message
        assert sum(e["data"]["count"] for e in rd.events if e["kind"] == "frames_dropped") == stats["frames_dropped"]
        seqs = [rd.frame(i).seq for i in range(len(rd))]
        assert seqs == sorted(seqs) and seqs[0] == 0  # order kept; the first frame always fits


@pytest.fixture
def closed_recording(tmp_path):
    frames = _frames(30, size=(64, 80))
    path = write_recording(tmp_path / "c.usrec", frames, {"source": "unit"},
                           events=[{"kind": "injection", "data": {}}])
    return path, frames


@pytest.mark.parametrize("keep", [0.97, 0.6, 0.25])
def test_truncated_recording_opens_with_what_is_left_and_says_what_was_lost(closed_recording, tmp_path, keep):
    path, frames = closed_recording
    cut = tmp_path / "cut.usrec"
    data = path.read_bytes()
    cut.write_bytes(data[:int(len(data) * keep)])
    before = _sha(cut)
    with RecordingReader(cut) as rd:
        assert not rd.lost_info.clean
        assert "cut off" in rd.lost_info.message
        n = len(rd)
        assert 0 < n < len(frames) + 1
        assert all(np.array_equal(rd.frame(i).image, frames[i].image) for i in range(n))
        # Everything before the cut is recovered: at most the record that was cut is lost.
        end_of_last = int(rd._entries["frame_offset"][-1])
        assert len(cut.read_bytes()) - end_of_last < 2 * (fmt.RECORD_HEADER_SIZE + 64 * 80 + 200)
    assert _sha(cut) == before, "reading must never alter a recording"


def test_bit_flip_in_a_frame_is_reported_for_that_frame_and_repair_keeps_the_rest(closed_recording):
    path, frames = closed_recording
    with RecordingReader(path) as rd:
        off = int(rd._entries["frame_offset"][12])
    data = bytearray(path.read_bytes())
    data[off + fmt.RECORD_HEADER_SIZE + fmt.FRAME_HEAD.size + 30] ^= 0x40
    path.write_bytes(bytes(data))
    with RecordingReader(path) as rd:
        assert len(rd) == len(frames)
        with pytest.raises(CorruptRecordingError, match=rf"{path.name}: frame 12 is damaged"):
            rd.frame(12)
        assert np.array_equal(rd.frame(13).image, frames[13].image)
        assert rd.verify()["damaged_frames"] == [12]
    summary = repair_recording(path)
    assert os.path.exists(summary["original_kept_as"])
    with RecordingReader(path) as rd:
        assert rd.lost_info.clean and len(rd) == len(frames) - 1
        kept = [f for i, f in enumerate(frames) if i != 12]
        assert all(np.array_equal(rd.frame(i).image, f.image) for i, f in enumerate(kept))
        assert [e["kind"] for e in rd.events] == ["injection"]


def test_damaged_index_is_rebuilt_by_scanning(closed_recording):
    path, frames = closed_recording
    data = bytearray(path.read_bytes())
    pos = data.rfind(fmt.INDEX)
    data[pos + fmt.RECORD_HEADER_SIZE + 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with RecordingReader(path) as rd:
        assert len(rd) == len(frames)
        assert "index was damaged" in rd.lost_info.message
        assert np.array_equal(rd.frame(29).image, frames[29].image)


def test_repair_of_a_cut_file_gives_a_clean_file_and_keeps_the_original(closed_recording, tmp_path):
    path, frames = closed_recording
    data = path.read_bytes()
    cut = tmp_path / "crash.usrec"
    cut.write_bytes(data[: len(data) // 2])
    with RecordingReader(cut) as rd:
        n, meta = len(rd), rd.metadata
    out = tmp_path / "fixed.usrec"
    summary = repair_recording(cut, out)
    assert summary["frames"] == n and cut.read_bytes() == data[: len(data) // 2]
    with RecordingReader(out) as rd:
        assert rd.lost_info.clean and len(rd) == n and rd.metadata == meta
        assert all(np.array_equal(rd.frame(i).image, frames[i].image) for i in range(n))


@pytest.mark.parametrize("content,message", [
    (b"", "too short"), (b"hello, not a recording at all", "not a recording"),
    (fmt.file_header() + b"\0" * 40, "metadata record is missing or corrupt")])
def test_bad_files_give_one_clear_line_naming_the_file(tmp_path, capsys, content, message):
    path = tmp_path / "bad.usrec"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        RecordingReader(path)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_file_cut_inside_its_metadata_is_not_sent_to_repair(tmp_path, capsys):
    path = tmp_path / "cut.usrec"
    path.write_bytes(fmt.file_header() + b"\0" * 40)
    assert main(["recording", "repair", str(path)]) == 2
    err = capsys.readouterr().err
    assert "cannot be read or repaired" in err and "try" not in err  # it said: try 'guidance recording repair'


def test_newer_format_version_is_refused_clearly(tmp_path):
    path = tmp_path / "v9.usrec"
    head = bytearray(fmt.file_header())
    head[8] = 9
    head[12:16] = fmt.zlib.crc32(bytes(head[:12])).to_bytes(4, "little")
    path.write_bytes(bytes(head))
    with pytest.raises(InputError, match="version 9 is newer"):
        RecordingReader(path)


def test_missing_recording_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such recording"):
        RecordingReader(tmp_path / "nope.usrec")


def test_cli_info_replay_export_repair_import(tmp_path, capsys, replay_sequence):
    sample = replay_sequence("insertion")
    rec = tmp_path / "ins.usrec"
    assert main(["recording", "import", str(sample.folder), str(rec), "--process", "--model", "classical"]) == 0
    capsys.readouterr()
    assert main(["info", str(rec)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == len(sample.truth) and info["fps"] == pytest.approx(sample.fps)
    assert info["spacing_mm"] == pytest.approx(list(sample.spacing_mm)) and info["closed_cleanly"]
    assert info["compression_ratio"] > 1.5

    out = tmp_path / "lines.jsonl"
    assert main(["replay", str(rec), "--out", str(out)]) == 0
    lines = [json.loads(s) for s in out.read_text().splitlines()]
    with RecordingReader(rec) as rd:
        assert lines == [rd.record(i) for i in range(len(rd))]
    assert main(["replay", str(rec), "--recompute", "--check", "--model", "classical",
                 "--out", str(tmp_path / "re.jsonl")]) == 0
    capsys.readouterr()
    far = len(lines)  # a position past the end printed nothing, with exit 0
    assert main(["replay", str(rec), "--start", str(far), "--out", str(tmp_path / "far.jsonl")]) == 2
    assert main(["replay", str(rec), "--start", "3", "--stop", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "ins.usrec" in err[0]
    assert f"--start {far}: the recording has positions 0 to {far - 1}" in err[0]
    assert "--stop 3 must be after --start 3" in err[1] and not (tmp_path / "far.jsonl").exists()

    mp4 = tmp_path / "ins.mp4"
    assert main(["export", str(rec), "--mp4", str(mp4)]) == 0
    import cv2
    cap = cv2.VideoCapture(str(mp4))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = cap.read()
    cap.release()
    assert ok and count == len(sample.truth)
    assert first.shape[:2] == (sample.meta["size_px"][1], sample.meta["size_px"][0])
    # The overlay is burnt in: colour where the grey frame has none.
    assert np.abs(first.astype(int) - first.mean(axis=2, keepdims=True)).max() > 40

    plus = tmp_path / "ins.seq.nrrd"
    assert main(["export", str(rec), "--plus", str(plus)]) == 0
    with open_source(str(plus)) as src:
        first_plus = src.read()
        assert np.array_equal(first_plus.image, RecordingReader(rec).frame(0).image)

    assert main(["recording", "repair", str(rec), "--out", str(tmp_path / "r.usrec")]) == 0
    assert main(["export", str(rec)]) == 2  # nothing asked for: one clear line


def test_record_command_into_a_folder_then_info(tmp_path, capsys):
    folder = tmp_path / "sessions"
    folder.mkdir()
    assert main(["record", "--source", "sim:insertion:9", "--out", str(folder), "--frames", "8", "--quiet",
                 "--model", "classical", "--spacing", "0.1"]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    files = list(folder.glob("session_*.usrec"))
    assert len(files) == 1 and stats["error"] is None and stats["frames_written"] >= 8
    with RecordingReader(files[0]) as rd:
        assert rd.lost_info.clean and len(rd) == stats["frames_written"]
        assert rd.metadata["source"] == "sim:insertion:9" and rd.metadata["detector"] == "classical"
        assert rd.metadata["stages"] == ["region", "detect", "track", "guidance"]
        assert rd.frame(0).spacing_mm == (0.1, 0.1)
    assert main(["info", str(files[0])]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["region_px"] is not None and info["frames_dropped"] == 0


def test_record_command_creates_a_new_folder_named_without_a_suffix(tmp_path, capsys):
    folder = tmp_path / "knee_session"
    assert main(["record", "--source", "sim:insertion:9", "--out", str(folder), "--frames", "3", "--quiet",
                 "--model", "classical"]) == 0
    assert len(list(folder.glob("session_*.usrec"))) == 1


def test_record_command_refuses_bad_sources_and_paths_without_creating_files(tmp_path, capsys):
    assert main(["record", "--source", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "a.usrec")]) == 2
    assert main(["record", "--source", "sim", "--out", str(tmp_path / "a.txt")]) == 2
    assert main(["record", "--source", "sim", "--out", str(tmp_path / "no" / "a.usrec")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "missing.mp4" in err[0] and ".usrec" in err[1] and "no such folder" in err[2]
    assert list(tmp_path.iterdir()) == []
    # a source that opens but never gives a frame: no header-only file that looks like a session
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert main(["record", "--source", str(empty), "--out", str(tmp_path / "b.usrec"), "--quiet"]) == 2
    assert main(["record", "--source", "97", "--out", str(tmp_path / "c.usrec"), "--duration", "1", "--quiet"]) == 2
    assert not list(tmp_path.glob("*.usrec*"))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "empty.mp4: cannot open" in err[0] and "capture device 97" in err[1]
    assert all("nothing recorded" in line for line in err)


def test_a_folder_with_one_recording_opens_as_that_recording(tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    write_recording(folder / "one.usrec", _frames(3), {})
    with open_source(str(folder)) as src:
        assert src.read().index == 1000
    write_recording(folder / "two.usrec", _frames(3), {})
    with pytest.raises(InputError, match="holds 2 recordings"):
        RecordingReader(folder)


def test_any_damage_gives_a_clear_error_or_what_can_be_recovered(tmp_path_factory):
    """Random cuts and byte flips: never a crash, never a wrong frame, never a changed file."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    folder = tmp_path_factory.mktemp("fuzz")
    frames = _frames(6, size=(12, 16))
    results = [FrameResult(f) for f in frames]
    good = write_recording(folder / "good.usrec", results, {"source": "fuzz"},
                           events=[{"kind": "injection"}]).read_bytes()
    by_seq = {f.seq: f for f in frames}

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(cut=st.integers(0, len(good)), flips=st.lists(st.tuples(st.integers(0, len(good) - 1),
                                                                   st.integers(1, 255)), max_size=3))
    def check(cut, flips):
        data = bytearray(good[:cut])
        for pos, mask in flips:
            if pos < len(data):
                data[pos] ^= mask
        path = folder / "damaged.usrec"
        path.write_bytes(bytes(data))
        try:
            rd = RecordingReader(path)
        except InputError as exc:
            assert str(path) in str(exc)
            return
        with rd:
            assert len(rd) <= len(frames)
            for i in range(len(rd)):
                try:
                    f = rd.frame(i)
                except CorruptRecordingError as exc:
                    assert f"frame {i}" in str(exc)
                    continue
                assert np.array_equal(f.image, by_seq[f.seq].image)  # intact, or refused: never wrong
                try:
                    rd.record(i)
                except CorruptRecordingError:
                    pass
            rd.events
            rd.info()
        assert path.read_bytes() == bytes(data)
        fixed = folder / "fixed.usrec"
        fixed.unlink(missing_ok=True)
        repair_recording(path, fixed)
        with RecordingReader(fixed) as rd:
            assert rd.lost_info.clean
            assert all(np.array_equal(rd.frame(i).image, by_seq[rd.frame(i).seq].image) for i in range(len(rd)))

    check()


def test_exported_video_lasts_as_long_as_the_session(tmp_path):
    """A live session keeps only the frames it processed: here source frame 0, then 10 to 20 (30 fps)."""
    import cv2

    indices = [0, *range(10, 21)]
    frames = [Frame(np.full((64, 80), 40 + k, np.uint8), i / 30.0, i, k, (0.1, 0.1), "t")
              for k, i in enumerate(indices)]
    rec = write_recording(tmp_path / "s.usrec", frames, {"source": "t"})
    mp4 = tmp_path / "s.mp4"
    assert main(["export", str(rec), "--mp4", str(mp4), "--no-overlay"]) == 0
    cap = cv2.VideoCapture(str(mp4))
    fps, count = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    # 12 frames over the 20/30 s session: 16.5 fps, not the 30 fps of most gaps (a video 1.8x too fast)
    assert count == 12 and fps == pytest.approx(11 / (20 / 30), rel=0.02)


def test_export_to_a_folder_is_one_line_and_a_cut_recording_is_exported_with_a_warning(tmp_path, capsys):
    frames = [Frame(np.full((64, 80), 40 + i, np.uint8), i / 30.0, i, i, (0.1, 0.1), "t") for i in range(20)]
    rec = write_recording(tmp_path / "s.usrec", frames, {"source": "t"})
    folder = tmp_path / "videos"
    folder.mkdir()
    assert main(["export", str(rec), "--mp4", str(folder), "--no-overlay"]) == 2  # was a traceback
    assert "videos: is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.usrec", "videos"]  # no .partial left

    cut = tmp_path / "cut.usrec"
    cut.write_bytes(rec.read_bytes()[: rec.stat().st_size * 2 // 3])
    assert main(["export", str(cut), "--mp4", str(tmp_path / "cut.mp4"), "--no-overlay"]) == 0
    err = capsys.readouterr().err
    assert "cut.usrec: not closed properly" in err and "frames recovered" in err


def test_a_recording_cut_off_before_its_first_frame_is_refused_and_a_cut_one_detected_with_a_warning(tmp_path, capsys):
    frames = [Frame(np.full((64, 80), 40 + i, np.uint8), i / 30.0, i, i, (0.1, 0.1), "t") for i in range(5)]
    rec = write_recording(tmp_path / "s.usrec", frames, {"source": "t"})
    with RecordingReader(rec) as rd:
        first_frame_at = int(rd._entries["frame_offset"][0])
    cut = tmp_path / "cut.usrec"
    cut.write_bytes(rec.read_bytes()[: first_frame_at + 100])  # the metadata and part of frame 0
    out = tmp_path / "lines.jsonl"
    assert main(["replay", str(cut), "--out", str(out)]) == 2  # was status 0 and an empty output
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cut.usrec: the recording has no frames to replay" in err[0]
    assert "cut off" in err[0] and "0 frames recovered" in err[0]
    assert not out.exists()
    assert main(["detect", str(cut), "--model", "classical", "--out", str(out)]) == 2  # was 0 lines, status 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cut.usrec: the recording holds no frames" in err[0] and not out.exists()

    # cut after three frames: detect runs on what is there and says what is missing
    half = tmp_path / "half.usrec"
    with RecordingReader(rec) as rd:
        half.write_bytes(rec.read_bytes()[: int(rd._entries["frame_offset"][3]) + 100])
    assert main(["detect", str(half), "--model", "classical", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "half.usrec: not closed properly" in err[0] and "3 frames recovered" in err[0]
