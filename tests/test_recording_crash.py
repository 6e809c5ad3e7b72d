"""Crash safety with real processes: kill -9 mid-recording, and a disk that fills up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from guidance.cli import main
from guidance.recording import RecordingReader

FPS = 30.0

# A recorder in a child process: frame i has pixels seeded by i and timestamp i / 30 s; it
# prints i once frame i has been submitted, so the parent knows what should be on disk.
RECORD_CHILD = r"""
import sys, time, numpy as np
from guidance.recording import Recorder
from guidance.types import Frame, FrameResult
rec = Recorder(sys.argv[1], {"source": "crash test"}).start()
t0 = time.monotonic()
for i in range(100000):
    img = np.random.default_rng(i).integers(0, 200, (120, 160), dtype=np.uint8)
    rec.submit(FrameResult(Frame(img, i / 30.0, i, i, (0.1, 0.1), "child")))
    print(i, flush=True)
    time.sleep(max(0.0, t0 + (i + 1) / 30.0 - time.monotonic()))
"""


def _image(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 200, (120, 160), dtype=np.uint8)


def test_kill_9_mid_recording_loses_at_most_the_last_second(tmp_path):
    path = tmp_path / "killed.usrec"
    child = subprocess.Popen([sys.executable, "-c", RECORD_CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        last = -1
        deadline = time.monotonic() + 60
        while last < 75 and time.monotonic() < deadline:  # 2.5 s of frames at 30 fps
            line = child.stdout.readline()
            if not line:
                break
            last = int(line)
        assert last >= 75, "the recording child did not run"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
        child.stdout.close()

    before = path.read_bytes()
    with RecordingReader(path) as rd:
        assert not rd.lost_info.clean and "cut off" in rd.lost_info.message
        n = len(rd)
        # Everything submitted up to one second before the kill is on disk.
        assert n >= last + 1 - FPS, f"only {n} frames of {last + 1} submitted survived"
        assert rd.timestamps_s[-1] >= last / FPS - 1.0
        for i in list(range(0, n, 7)) + [n - 1]:
            f = rd.frame(i)
            assert f.index == i and np.array_equal(f.image, _image(i))
    assert path.read_bytes() == before  # reading never alters the file

    assert main(["recording", "repair", str(path)]) == 0
    with RecordingReader(path) as rd:
        assert rd.lost_info.clean and len(rd) == n
    assert (tmp_path / "killed.usrec.orig").read_bytes() == before


def test_kill_9_of_the_record_command_leaves_a_readable_file(tmp_path):
    path = tmp_path / "cli.usrec"
    child = subprocess.Popen([sys.executable, "-m", "guidance", "record", "--source", "sim:insertion:3",
                              "--out", str(path), "--quiet", "--model", "classical", "--no-track"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.25)
            if path.exists() and path.stat().st_size > 300_000:
                break
        assert child.poll() is None, child.stderr.read().decode()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
        child.stderr.close()
    with RecordingReader(path) as rd:
        assert len(rd) > 0 and not rd.lost_info.clean
        assert rd.metadata["source"] == "sim:insertion:3"
        assert rd.record(len(rd) - 1)["frame"] == rd.frame(len(rd) - 1).index


# A writer killed by SIGKILL right after its N-th write to the file (N = argv[2]): every boundary
# between two writes is a place a real kill can land.
KILL_AT_WRITE_CHILD = r"""
import os, signal, sys, numpy as np
from guidance.recording import RecordingWriter
from guidance.types import Frame
writes = 0
original = RecordingWriter._write
def write_then_maybe_die(self, data):
    global writes
    original(self, data)
    writes += 1
    if writes == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
RecordingWriter._write = write_then_maybe_die
w = RecordingWriter(sys.argv[1], {"source": "kill at a write"}, sync_interval_s=0.0)
for i in range(50):
    img = np.random.default_rng(i).integers(0, 200, (60, 80), dtype=np.uint8)
    w.write_frame(Frame(img, i / 30.0, i, i, (0.1, 0.1), "child"), {"frame": i, "needle": None, "target": None})
"""


@pytest.mark.parametrize("kill_after_writes", [5, 6])
def test_a_kill_between_any_two_writes_never_leaves_a_frame_without_the_result_shown_on_it(tmp_path, kill_after_writes):
    path = tmp_path / "killed.usrec"
    done = subprocess.run([sys.executable, "-c", KILL_AT_WRITE_CHILD, str(path), str(kill_after_writes)], timeout=60)
    assert done.returncode == -signal.SIGKILL
    with RecordingReader(path) as rd:
        assert len(rd) >= 2 and not rd.lost_info.clean
        assert [(rd.record(i) or {}).get("frame") for i in range(len(rd))] == list(range(len(rd)))


# A live pipeline on the simulator recording until the recorder reports an error, then 1.5 s more
# (the pipeline must go on); SEED is the simulator's seed.
RECORD_UNTIL_ERROR = r"""
import json, sys, time
from guidance.pipeline import LivePipeline
from guidance.recording import Recorder, RecordingReader
from guidance.sources import open_source
from guidance.stages import build_stages
rec = Recorder(sys.argv[1], {"source": "disk full test"}).start()
pipe = LivePipeline(lambda: open_source("sim:insertion:SEED", realtime=True, fps=30, size_px=(160, 128)),
                    build_stages(detector="classical", track=False))
pipe.add_consumer(rec.submit)
pipe.start()
deadline = time.monotonic() + 60
while rec.error is None and time.monotonic() < deadline:
    time.sleep(0.05)
at_error = pipe.status().frames_processed
time.sleep(1.5)
status = pipe.status()
"""

DISK_FULL_CHILD = r"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
""" + RECORD_UNTIL_ERROR.replace("SEED", "7") + r"""
out = {"error": rec.error, "stats": rec.stats, "at_error": at_error, "after": status.frames_processed,
       "state": status.state}
pipe.stop()
out["stop_stats"] = rec.stop()
print(json.dumps(out))
"""


def test_disk_full_stops_the_recording_with_a_message_while_the_pipeline_goes_on(tmp_path):
    path = tmp_path / "full.usrec"
    limit = 200_000
    proc = subprocess.run([sys.executable, "-c", DISK_FULL_CHILD, str(path), str(limit)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"] and "file size limit reached" in out["error"] and "recording stopped" in out["error"]
    assert str(path) in out["error"]
    assert out["stats"]["state"] == "error" and out["stop_stats"]["error"] == out["error"]
    assert out["state"] == "running" and out["after"] > out["at_error"], "the live pipeline must go on"
    assert out["stop_stats"]["frames_not_recorded"] > 0  # counted, not silently lost
    assert path.stat().st_size <= limit
    with RecordingReader(path) as rd:
        assert len(rd) == out["stats"]["frames_written"] > 0
        assert rd.lost_info.lost_bytes == 0  # cut back to the last whole record
        rd.frame(len(rd) - 1)
        rd.record(len(rd) - 1)


DISK_FULL_TMPFS_CHILD = RECORD_UNTIL_ERROR.replace("SEED", "8") + r"""
after = status.frames_processed
pipe.stop()
stats = rec.stop()
with RecordingReader(sys.argv[1]) as rd:
    rd.frame(len(rd) - 1)
    read = {"frames": len(rd), "lost_bytes": rd.lost_info.lost_bytes}
print(json.dumps({"error": rec.error, "at_error": at_error, "after": after, "stats": stats, "read": read}))
"""


def test_a_really_full_disk_stops_the_recording_and_keeps_the_file_readable(tmp_path):
    """ENOSPC from a 300 kB tmpfs, mounted in a private mount namespace (skipped where not permitted)."""
    import shutil as sh

    mnt = tmp_path / "small_disk"
    mnt.mkdir()
    unshare = sh.which("unshare")
    if unshare is None:
        pytest.skip("unshare not available")
    probe = subprocess.run([unshare, "-m", "--", "mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mnt)],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root or user namespaces)")
    script = (f"mount -t tmpfs -o size=300k tmpfs '{mnt}' && "
              f"exec '{sys.executable}' -c \"$CHILD\" '{mnt}/full.usrec'")
    proc = subprocess.run([unshare, "-m", "--", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CHILD": DISK_FULL_TMPFS_CHILD})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "disk full" in out["error"] and "recording stopped" in out["error"]
    assert out["after"] > out["at_error"], "the live pipeline must go on"
    assert out["read"]["frames"] == out["stats"]["frames_written"] > 0
    assert out["read"]["lost_bytes"] == 0
