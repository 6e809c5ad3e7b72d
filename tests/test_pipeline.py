"""The live pipeline: newest frame first, survives stalls, failures and garbage; stops cleanly.

Sources here are small test-local ones (real threads, real frames, no mocks of
the pipeline). Waiting uses events and generous deadlines, never timings.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from guidance.errors import FrameFormatError, InputError, SourceDisconnected
from guidance.pipeline import PROCESSING_ERROR_ALERT, LivePipeline, process, run_offline
from guidance.sources.base import SourceBase


def wait_until(predicate, timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("guidance-")]


class CountingSource(SourceBase):
    """Frames 0..n-1 (or endless), optionally spaced by ``interval_s``; hooks for stalls and failures."""

    def __init__(self, n: int | None = None, interval_s: float = 0.0, live: bool = True, name: str = "test source"):
        super().__init__()
        self.n, self.interval_s, self.is_live, self.name = n, interval_s, live, name
        self.emitted = 0
        self.opened = 0
        self.closed = 0
        self.gate = threading.Event()
        self.gate.set()
        self.fail_at: int | None = None
        self.fail_with: Exception = SourceDisconnected("test source: cable pulled")
        self.garbage_every: int | None = None

    def open(self) -> None:
        self.opened += 1

    def close(self) -> None:
        self.closed += 1

    def read(self):
        if self.n is not None and self.emitted >= self.n:
            return None
        if self.interval_s:
            time.sleep(self.interval_s)
        self.gate.wait()  # cleared by a test: the source stalls
        if self.fail_at is not None and self.emitted == self.fail_at:
            self.fail_at = None
            raise self.fail_with
        i = self.emitted
        self.emitted += 1
        if self.garbage_every and i % self.garbage_every == 1:
            return self.make_frame(np.zeros((3, 4, 2), np.uint8), i / 30, i)  # raises FrameFormatError
        return self.make_frame(np.full((48, 64), i % 256, np.uint8), i / 30, i)


class Record:
    """Consumer that keeps every result it is given."""

    def __init__(self):
        self.results = []

    def __call__(self, result):
        self.results.append(result)


class SleepStage:
    def __init__(self, seconds: float, name: str = "slow", source: CountingSource | None = None):
        self.name, self.seconds, self.source = name, seconds, source
        self.lag_frames: list[int] = []

    def __call__(self, result):
        if self.source is not None:  # how far behind the newest frame is the one being processed?
            self.lag_frames.append(self.source.emitted - 1 - result.frame.index)
        time.sleep(self.seconds)
        return result


class TagStage:
    def __init__(self, name: str, alert: str):
        self.name, self.alert = name, alert

    def __call__(self, result):
        return replace(result, alerts=result.alerts + (self.alert,))


def test_process_runs_stages_in_order_and_times_each():
    source = CountingSource(1)
    frame = source.read()
    result = process(frame, [TagStage("a", "first"), TagStage("b", "second")])
    assert result.alerts == ("first", "second")
    assert set(result.stages_ms) == {"a", "b"} and all(v >= 0 for v in result.stages_ms.values())
    assert result.frame is frame


def test_run_offline_gives_every_frame_in_order_without_dropping():
    results = list(run_offline(CountingSource(50, live=False), [SleepStage(0.001)]))
    assert [r.frame.index for r in results] == list(range(50))


def test_slow_stage_drops_stale_frames_and_latency_does_not_build_up():
    source = CountingSource(n=150, interval_s=0.002, live=False)
    slow = SleepStage(0.03, source=source)
    record = Record()
    pipeline = LivePipeline(source, [slow], stall_timeout_s=5.0)
    pipeline.add_consumer(record)  # before start: no result is missed
    with pipeline:
        wait_until(lambda: pipeline.status().state == "ended", what="end of input")
    status = pipeline.status()
    assert status.frames_received == 150
    assert status.frames_dropped > 0
    assert status.frames_processed == len(record.results) < status.frames_received
    assert status.frames_processed + status.frames_dropped == status.frames_received
    seqs = [r.frame.seq for r in record.results]
    assert seqs == sorted(seqs)  # never goes back in time
    # A queue would fall further behind with every frame (tens of frames here);
    # the newest-frame policy stays within a frame or two of the source.
    assert max(slow.lag_frames) <= 5, slow.lag_frames
    assert record.results[-1].frame.index == 149  # the last frame is not lost


def test_stalled_source_reports_no_signal_then_recovers():
    source = CountingSource(interval_s=0.005)
    with LivePipeline(source, [], stall_timeout_s=0.2) as pipeline:
        wait_until(lambda: pipeline.status().frames_processed >= 5, what="first frames")
        source.gate.clear()  # the scanner freezes
        wait_until(lambda: pipeline.status().state == "no_signal", what="no_signal")
        status = pipeline.status()
        assert "no frame" in status.message and "test source" in status.message
        before = status.frames_processed
        source.gate.set()  # frames come back
        wait_until(lambda: pipeline.status().state == "running" and pipeline.status().frames_processed > before + 5,
                   what="recovery")
    assert pipeline_threads() == []


def test_disconnecting_source_is_reopened_with_backoff_and_resumes():
    made = []

    def factory():
        src = CountingSource(interval_s=0.002)
        if not made:
            src.fail_at = 10  # the first connection drops after 10 frames
        made.append(src)
        return src

    with LivePipeline(factory, [], stall_timeout_s=5.0, initial_backoff_s=0.01, max_backoff_s=0.05) as pipeline:
        wait_until(lambda: len(made) >= 2 and made[1].emitted >= 10, what="reconnection")
        status = pipeline.status()
    assert status.reconnects >= 1
    assert made[0].closed >= 1  # the failed source was closed before a new one was opened
    assert status.frames_processed > 10
    assert pipeline_threads() == []


@pytest.mark.parametrize("error", [RuntimeError("bug in a reader"), SourceDisconnected("gone"), OSError("EIO")])
def test_a_source_that_raises_never_kills_the_pipeline(error):
    source = CountingSource(interval_s=0.002)
    source.fail_at = 3
    source.fail_with = error
    with LivePipeline(source, [], initial_backoff_s=0.01, max_backoff_s=0.05) as pipeline:
        wait_until(lambda: pipeline.status().state == "no_signal" or pipeline.status().reconnects > 0,
                   what="failure noticed")
        wait_until(lambda: pipeline.status().frames_processed > 10 and pipeline.status().state == "running",
                   what="resumed")
    assert source.opened >= 2


def test_source_that_cannot_be_opened_is_retried_until_it_can():
    attempts = []

    def factory():
        attempts.append(1)
        if len(attempts) < 3:
            raise SourceDisconnected("capture device 0: cannot open")
        return CountingSource(interval_s=0.002)

    with LivePipeline(factory, [], initial_backoff_s=0.01, max_backoff_s=0.02) as pipeline:
        wait_until(lambda: pipeline.status().frames_processed > 3, what="frames after retries")
    assert len(attempts) >= 3


def test_garbage_frames_are_skipped_and_counted():
    source = CountingSource(n=40, interval_s=0.001, live=False)
    source.garbage_every = 2
    record = Record()
    pipeline = LivePipeline(source, [])
    pipeline.add_consumer(record)  # before start: no result is missed
    with pipeline:
        wait_until(lambda: pipeline.status().state == "ended", what="end")
    status = pipeline.status()
    assert status.frames_bad == 20
    assert record.results and all(r.frame.index % 2 == 0 for r in record.results)


def test_bad_file_is_an_error_state_not_endless_retries():
    class BadFile(CountingSource):
        def open(self):
            raise InputError("scan.avi: cannot open as a video")

    with LivePipeline(BadFile(live=False), [], initial_backoff_s=0.01) as pipeline:
        wait_until(lambda: pipeline.status().state == "error", what="error state")
        assert "scan.avi" in pipeline.status().message


def test_failing_stage_keeps_the_frames_coming():
    class Flaky:
        name = "detect"

        def __init__(self):
            self.calls = 0

        def __call__(self, result):
            self.calls += 1
            if self.calls <= 3:
                raise ValueError("model blew up")
            return result

    record = Record()
    source = CountingSource(interval_s=0.003)
    pipeline = LivePipeline(source, [Flaky()])
    pipeline.add_consumer(record)  # before start: no result is missed
    with pipeline:
        wait_until(lambda: len(record.results) > 8, what="results")
        status = pipeline.status()
        assert status.state == "running" and status.message == ""  # cleared once frames process again
        assert status.stage_errors == 3
    assert PROCESSING_ERROR_ALERT in record.results[0].alerts
    assert PROCESSING_ERROR_ALERT not in record.results[-1].alerts


def test_stop_leaves_no_thread_and_closes_the_source():
    source = CountingSource(interval_s=0.001)
    pipeline = LivePipeline(source, [SleepStage(0.005)])
    pipeline.start()
    wait_until(lambda: pipeline.status().frames_processed > 2, what="running")
    assert pipeline_threads()
    assert pipeline.stop() is True
    assert pipeline_threads() == []
    assert source.closed >= 1
    assert pipeline.status().state == "stopped"


def test_stop_while_the_source_is_stalled():
    source = CountingSource()
    source.gate.clear()
    pipeline = LivePipeline(source, [], stall_timeout_s=0.05).start()
    wait_until(lambda: pipeline.status().state == "no_signal", what="no_signal")
    source.gate.set()  # a real driver returns from read within its timeout
    assert pipeline.stop()
    assert pipeline_threads() == []


def test_stuck_read_is_abandoned_and_a_fresh_source_opened():
    made = []

    def factory():
        src = CountingSource(interval_s=0.002)
        if not made:
            src.fail_at = None
            src.gate.clear()  # the first source hangs in read forever
        made.append(src)
        return src

    with LivePipeline(factory, [], stall_timeout_s=0.1) as pipeline:
        wait_until(lambda: len(made) >= 2 and pipeline.status().frames_processed > 5, what="fresh source")
        assert pipeline.status().state == "running"
        made[0].gate.set()  # the stuck read finally returns: its frame is not used
    assert pipeline_threads() == []
    assert made[0].closed >= 1


def test_pause_stops_reading_and_resume_continues():
    source = CountingSource(interval_s=0.002)
    with LivePipeline(source, [], stall_timeout_s=0.05) as pipeline:
        wait_until(lambda: source.emitted > 3, what="frames")
        pipeline.pause()
        time.sleep(0.05)
        emitted = source.emitted
        time.sleep(0.2)
        assert source.emitted <= emitted + 1
        assert pipeline.status().paused and pipeline.status().state != "no_signal"
        pipeline.resume()
        wait_until(lambda: source.emitted > emitted + 5, what="resumed")


def test_set_stages_and_consumers_take_effect_between_frames():
    source = CountingSource(interval_s=0.002)
    record = Record()
    pipeline = LivePipeline(source, [TagStage("a", "one")])
    pipeline.add_consumer(record)  # before start: no result is missed
    with pipeline:
        wait_until(lambda: len(record.results) > 2, what="results")
        pipeline.set_stages([TagStage("b", "two")])
        wait_until(lambda: record.results[-1].alerts == ("two",), what="new stages")
        pipeline.remove_consumer(record)
        n = len(record.results)
        wait_until(lambda: pipeline.status().frames_processed > n + 5, what="more frames")
        assert len(record.results) <= n + 1
        assert pipeline.latest() is not None and pipeline.latest().alerts == ("two",)


def test_status_figures_while_running():
    source = CountingSource(interval_s=0.005)
    with LivePipeline(source, [SleepStage(0.001, name="work")]) as pipeline:
        wait_until(lambda: pipeline.status().frames_processed > 20, what="frames")
        status = pipeline.status()
    assert status.fps > 0 and status.latency_ms is not None and status.latency_ms >= 0
    assert "work" in status.stages_ms
    assert status.last_frame_age_s is not None
    assert status.source == "test source"


def test_garbage_frame_object_is_refused_with_a_reason():
    source = CountingSource(1)
    with pytest.raises(FrameFormatError, match="test source"):
        source.make_frame(np.zeros((2, 2), np.uint8), 0.0, 0)


def test_paced_folder_with_a_corrupt_file_stops_with_its_name(tmp_path):
    import cv2

    from guidance.sources import open_source

    for i in range(4):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((32, 32), 40 * i, np.uint8))
    (tmp_path / "f2.png").write_bytes(b"corrupt")
    record = Record()
    pipeline = LivePipeline(lambda: open_source(str(tmp_path), realtime=True, fps=100), [],
                            initial_backoff_s=0.01)
    pipeline.add_consumer(record)
    with pipeline:
        wait_until(lambda: pipeline.status().state == "error", what="error state")
    assert "f2.png" in pipeline.status().message
    assert [r.frame.index for r in record.results][-1] == 1  # the frames before it were shown
    assert pipeline_threads() == []


def test_real_http_stream_that_goes_away_and_comes_back(tmp_path):
    """A stream URL through cv2.VideoCapture: each connection ends, the server goes down, then up again."""
    import functools
    import http.server

    import cv2

    from guidance.sources.opencv import CaptureSource

    writer = cv2.VideoWriter(str(tmp_path / "feed.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    url = f"http://127.0.0.1:{port}/feed.avi"
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    pipeline = LivePipeline(lambda: CaptureSource(url, timeout_s=2.0), [], stall_timeout_s=0.5,
                            initial_backoff_s=0.02, max_backoff_s=0.1)
    try:
        with pipeline:
            wait_until(lambda: pipeline.status().frames_received >= 15, what="frames across a reconnect")
            assert pipeline.status().reconnects >= 1
            server.shutdown()  # the server goes away: nothing to reconnect to
            server.server_close()
            wait_until(lambda: pipeline.status().state == "no_signal", what="no_signal")
            assert "feed.avi" in pipeline.status().message
            received = pipeline.status().frames_received
            server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
            serving = threading.Thread(target=server.serve_forever, daemon=True)
            serving.start()
            wait_until(lambda: pipeline.status().frames_received >= received + 5, what="frames after the server returns")
    finally:
        server.shutdown()
        server.server_close()
    assert pipeline_threads() == []


def test_a_stage_that_always_fails_is_reported_while_frames_keep_coming():
    class Broken:
        name = "detect"

        def __call__(self, result):
            raise RuntimeError("model file vanished")

    record = Record()
    pipeline = LivePipeline(CountingSource(interval_s=0.003), [Broken()])
    pipeline.add_consumer(record)
    with pipeline:
        wait_until(lambda: len(record.results) > 5, what="results")
        status = pipeline.status()
    assert status.state == "running"
    assert "processing failed" in status.message and "model file vanished" in status.message
    assert all(PROCESSING_ERROR_ALERT in r.alerts and r.detection is None for r in record.results)


def test_a_bound_method_consumer_can_be_removed():
    class Viewer:
        def __init__(self):
            self.seen = 0

        def on_result(self, result):
            self.seen += 1

    viewer = Viewer()
    source = CountingSource(interval_s=0.002)
    with LivePipeline(source, []) as pipeline:
        pipeline.add_consumer(viewer.on_result)
        wait_until(lambda: viewer.seen > 2, what="results")
        pipeline.remove_consumer(viewer.on_result)  # a new bound-method object, equal to the first
        seen = viewer.seen
        wait_until(lambda: pipeline.status().frames_processed > seen + 10, what="more frames")
        assert viewer.seen <= seen + 1
