"""Recording benchmark: cost per frame and CPU share at 30 fps, compression, open/seek of one hour, memory.

    python bench/bench_recording.py [--seconds 10] [--minutes 10] [--hour-size 160x120] [--quick] [--parts ...]

Prints one JSON object. What is measured, and how:

- ``live_30fps``: a Recorder fed 640x480 simulated frames with their real
  results (classical detector) at 30 fps for ``--seconds``; CPU share is the
  recorder thread's own CPU time (psutil) over wall time, per frame its CPU
  time per frame written. Drops must be 0.
- ``compression``: frame codec ratio (raw / PNG) on simulated 640x480
  frames, the two real PLUS sequences and the two real knee screenshots,
  and the whole-file ratio of the 30 fps recording (results and index included).
- ``one_hour``: a 108000-frame recording (30 fps x 3600 s) written from
  pre-encoded frames of ``--hour-size`` pixels (distinct simulated frames
  cycled; each frame record has its own seq/timestamp and a real result
  line), index every second as the recorder does. Times: open (clean,
  warm page cache), open after a crash (same file without its footer and
  last 0.5 s cut mid-record), random seek (frame + result, 200 positions),
  and decode of one 640x480 frame (what a seek costs at full size).
- ``memory_10min``: RSS while recording ``--minutes`` of 640x480 frames at full
  speed (as fast as the writer takes them, no drops), sampled every 1000 frames.
- ``replay_pacing``: wall time of a paced replay of 5 s of 640x480 frames at
  30 fps, at speed 1 and 2, against the recorded time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from guidance.contract import result_to_record
from guidance.pipeline import run_offline
from guidance.recording import Recorder, RecordingReader, RecordingWriter
from guidance.recording import format as fmt
from guidance.sources import open_source
from guidance.stages import build_stages
from guidance.types import Frame, FrameResult

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def sim_results(n: int, size=(640, 480)) -> list[FrameResult]:
    src = open_source("sim:insertion:4", realtime=False, size_px=size)
    out = []
    for r in run_offline(src, build_stages(detector="classical")):
        out.append(r)
        if len(out) >= n:
            break
    return out


def thread_cpu_s(native_id: int) -> float:
    for t in psutil.Process().threads():
        if t.id == native_id:
            return t.user_time + t.system_time
    return 0.0


def live_30fps(results: list[FrameResult], seconds: float, folder: Path) -> dict:
    path = folder / "live.usrec"
    rec = Recorder(path, {"bench": "live"}).start()
    tid = rec._thread.native_id
    n = int(seconds * 30)
    t0 = time.monotonic()
    cpu0 = thread_cpu_s(tid)
    proc_cpu0 = time.process_time()
    for i in range(n):
        r = results[i % len(results)]
        f = r.frame
        frame = Frame(f.image, i / 30.0, i, i, f.spacing_mm, f.source)
        rec.submit(FrameResult(frame, r.region, r.detection, r.track, r.trajectory, r.alerts, r.stages_ms))
        time.sleep(max(0.0, t0 + (i + 1) / 30.0 - time.monotonic()))
    cpu1 = thread_cpu_s(tid)
    wall = time.monotonic() - t0
    stats = rec.stop()
    return {"frames": n, "size_px": [640, 480], "wall_s": round(wall, 2),
            "recorder_cpu_share_of_one_core": round((cpu1 - cpu0) / wall, 3),
            "recorder_cpu_ms_per_frame": round((cpu1 - cpu0) * 1000 / max(stats["frames_written"], 1), 2),
            "write_ms_per_frame_wall": stats["write_ms_per_frame"], "frames_dropped": stats["frames_dropped"],
            "peak_queue": stats["peak_queue"], "file_mb": round(stats["bytes_written"] / 1e6, 2),
            "file_compression_ratio": stats["compression_ratio"],
            "process_cpu_s_incl_submitter": round(time.process_time() - proc_cpu0, 2)}


def codec_ratio(images: list[np.ndarray]) -> dict:
    raw = sum(im.size for im in images)
    t0 = time.perf_counter()
    enc = [fmt.pack_frame(im, seq=0, index=0, timestamp_s=0.0, spacing_mm=None) for im in images]
    dt = (time.perf_counter() - t0) * 1000 / len(images)
    t0 = time.perf_counter()
    for e in enc:
        fmt.unpack_frame(e)
    dd = (time.perf_counter() - t0) * 1000 / len(images)
    return {"frames": len(images), "size_px": [int(images[0].shape[1]), int(images[0].shape[0])],
            "ratio": round(raw / sum(len(e) for e in enc), 2), "encode_ms": round(dt, 2), "decode_ms": round(dd, 2)}


def compression(results: list[FrameResult]) -> dict:
    import cv2

    out = {"sim_640x480": codec_ratio([r.frame.image for r in results])}
    for name in ("BoneUltrasound_L14.igs.mha", "SpinePhantomFreehand.igs.mha"):
        p = SHARED / "plus" / name
        if p.is_file():
            with open_source(str(p)) as src:
                imgs = [f.image for f in iter(src.read, None)]
            out[name.split(".")[0]] = codec_ratio(imgs)
    for name in ("lumify.png", "clarius.png"):
        p = SHARED / "knee" / name
        if p.is_file():
            out[name] = codec_ratio([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)])
    return out


def one_hour(results: list[FrameResult], size, folder: Path) -> dict:
    import cv2

    path = folder / "hour.usrec"
    w, h = size
    images = [cv2.resize(r.frame.image, (w, h), interpolation=cv2.INTER_AREA) for r in results]
    pixels = [fmt.pack_frame(im, seq=0, index=0, timestamp_s=0.0, spacing_mm=None)[fmt.FRAME_HEAD.size:]
              for im in images]
    records = [result_to_record(r) for r in results]
    n = 30 * 3600
    t0 = time.perf_counter()
    writer = RecordingWriter(path, {"bench": "one hour"})
    for i in range(n):
        k = i % len(images)
        head = fmt.FRAME_HEAD.pack(i, i, i / 30.0, 0.1, 0.1, w, h, fmt.CODEC_PNG)
        writer.append_frame_payload(head + pixels[k], i / 30.0, i)
        records[k]["frame"], records[k]["t_s"] = i, round(i / 30.0, 6)
        writer.append_result_payload(fmt.pack_result(i, records[k]))
        if i % 30 == 29:
            writer._write_index()  # the recorder indexes every second
    writer.close()
    write_s = time.perf_counter() - t0
    size_gb = path.stat().st_size / 1e9

    t0 = time.perf_counter()
    rd = RecordingReader(path)
    open_s = time.perf_counter() - t0
    assert len(rd) == n and rd.lost_info.clean
    rng = np.random.default_rng(0)
    pos = rng.integers(0, n, 200)
    t0 = time.perf_counter()
    for i in pos:
        rd.frame(int(i))
        rd.record(int(i))
    seek_ms = (time.perf_counter() - t0) * 1000 / len(pos)
    rd.close()

    crashed = folder / "hour_crashed.usrec"
    per_frame = path.stat().st_size / n
    cut = path.stat().st_size - fmt.FOOTER_RECORD_SIZE - int(15 * per_frame) - 333  # no footer, ~0.5 s gone, cut mid-record
    with open(path, "rb") as src, open(crashed, "wb") as dst:
        shutil.copyfileobj(src, dst, 16 << 20)
        dst.truncate(cut)
    t0 = time.perf_counter()
    rd2 = RecordingReader(crashed)
    crash_open_s = time.perf_counter() - t0
    lost = rd2.lost_info.as_dict()
    recovered = len(rd2)
    rd2.close()
    full = fmt.pack_frame(results[0].frame.image, seq=0, index=0, timestamp_s=0.0, spacing_mm=None)
    t0 = time.perf_counter()
    for _ in range(20):
        fmt.unpack_frame(full)
    decode_full_ms = (time.perf_counter() - t0) * 1000 / 20
    return {"frames": n, "frame_size_px": [w, h], "file_gb": round(size_gb, 2), "write_s": round(write_s, 1),
            "open_s": round(open_s, 3), "seek_ms_frame_and_result": round(seek_ms, 2),
            "decode_640x480_ms": round(decode_full_ms, 2),
            "crash_open_s": round(crash_open_s, 3), "crash_recovered_frames": recovered,
            "crash_lost": lost}


def memory_10min(results: list[FrameResult], minutes: float, folder: Path) -> dict:
    path = folder / "ten.usrec"
    proc = psutil.Process()
    rec = Recorder(path, {"bench": "memory"}).start()
    n = int(minutes * 60 * 30)
    samples = []
    t0 = time.monotonic()
    for i in range(n):
        while rec.stats["queued"] > 20:
            time.sleep(0.002)
        r = results[i % len(results)]
        rec.submit(FrameResult(Frame(r.frame.image, i / 30.0, i, i, r.frame.spacing_mm), r.region, r.detection,
                               r.track, r.trajectory, r.alerts, r.stages_ms))
        if i % 1000 == 0:
            samples.append(round(proc.memory_info().rss / 1e6, 1))
    stats = rec.stop()
    samples.append(round(proc.memory_info().rss / 1e6, 1))
    return {"frames": n, "recorded_minutes_at_30fps": minutes, "wall_s": round(time.monotonic() - t0, 1),
            "rss_mb_first": samples[1] if len(samples) > 1 else samples[0], "rss_mb_max": max(samples),
            "rss_mb_last": samples[-1], "rss_mb_samples": samples, "frames_dropped": stats["frames_dropped"],
            "file_gb": round(stats["bytes_written"] / 1e9, 2)}


def replay_pacing(folder: Path) -> dict:
    """Real clock: how long a paced replay of 5 s of 30 fps takes, at speed 1 and 2."""
    from guidance.recording import write_recording
    from guidance.recording.replay import RecordingSource

    frames = [Frame(np.zeros((480, 640), np.uint8), i / 30.0, i, i) for i in range(151)]
    path = write_recording(folder / "pacing.usrec", frames, {})
    out = {}
    for speed in (1.0, 2.0):
        with RecordingSource(str(path), realtime=True, speed=speed) as src:
            src.read()
            t0 = time.monotonic()
            while src.read() is not None:
                pass
            elapsed = time.monotonic() - t0
        expected = 5.0 / speed
        out[f"speed_{speed:g}"] = {"expected_s": expected, "elapsed_s": round(elapsed, 3),
                                   "error_pct": round(100 * (elapsed - expected) / expected, 2)}
    return out


PARTS = ("live", "compression", "hour", "memory", "pacing")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--hour-size", default="160x120")
    ap.add_argument("--quick", action="store_true", help="3 s live, 1 min memory")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.minutes = 3.0, 1.0
    size = tuple(int(v) for v in args.hour_size.split("x"))
    folder = Path(tempfile.mkdtemp(prefix="bench_recording_"))
    parts = set(args.parts.split(","))
    try:
        out = {"machine": {"cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2)}}
        results = sim_results(30) if parts - {"pacing"} else []
        if "live" in parts:
            out["live_30fps"] = live_30fps(results, args.seconds, folder)
        if "compression" in parts:
            out["compression"] = compression(results)
        if "hour" in parts:
            out["one_hour"] = one_hour(results, size, folder)
            (folder / "hour.usrec").unlink()
            (folder / "hour_crashed.usrec").unlink()
        if "memory" in parts:
            out["memory_10min"] = memory_10min(results, args.minutes, folder)
        if "pacing" in parts:
            out["replay_pacing"] = replay_pacing(folder)
        out["machine"]["load_avg_1min_end"] = round(os.getloadavg()[0], 2)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
