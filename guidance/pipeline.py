"""Running stages over frames: offline (every frame) and live (newest frame, never dying).

:func:`process` runs the stages on one frame and times each one.
:func:`run_offline` runs them over every frame of a source, in order, as fast
as it goes (``guidance detect``, replay, evaluation).

:class:`LivePipeline` is for a scanner feed. A capture thread reads the source
and leaves each frame in a one-frame slot; a processing thread always takes
the newest frame, so a frame that arrives while the previous is still being
processed replaces the waiting one (counted as dropped) and latency cannot
build up. When the source stalls, fails or disconnects the pipeline reports
``no_signal``, reopens it with backoff and resumes when frames come back;
neither a failing source nor a failing stage stops it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from .errors import FrameFormatError, GuidanceError, SourceDisconnected
from .sources.base import FrameSource
from .stages import Stage
from .types import Frame, FrameResult, ImagingRegion

log = logging.getLogger(__name__)

Consumer = Callable[[FrameResult], None]

PROCESSING_ERROR_ALERT = "processing_error"
"""Alert on a result whose stages failed: the frame is shown, without guidance."""


def process(frame: Frame, stages: Sequence[Stage], region: ImagingRegion | None = None,
            received_s: float | None = None) -> FrameResult:
    """Run ``stages`` in order on one frame.

    Parameters
    ----------
    frame : Frame
    stages : sequence of Stage
        Each maps a FrameResult to a new FrameResult.
    region : ImagingRegion, optional
        Initial imaging region (stages may replace it).
    received_s : float, optional
        ``time.monotonic()`` when the frame was received; now when omitted.

    Returns
    -------
    FrameResult
        With ``stages_ms[stage.name]`` the wall time of each stage in milliseconds.
    """
    stages_ms: dict[str, float] = {}
    result = FrameResult(frame=frame, region=region, stages_ms=stages_ms,
                         received_s=time.monotonic() if received_s is None else received_s)
    clock = time.perf_counter
    for stage in stages:
        t0 = clock()
        result = stage(result)
        stages_ms[stage.name] = (clock() - t0) * 1000.0
    if result.stages_ms is not stages_ms:  # a stage built its result from scratch
        result = replace(result, stages_ms=stages_ms)
    return result


def run_offline(source: FrameSource, stages: Sequence[Stage]) -> Iterator[FrameResult]:
    """Yield the processed result of every frame of ``source``, in order.

    No frame is dropped and nothing is paced. The source is opened and closed
    here. Errors (a bad file, a failing stage) propagate to the caller.
    """
    with source:
        while True:
            frame = source.read()
            if frame is None:
                return
            yield process(frame, stages, received_s=time.monotonic())


@dataclass(frozen=True)
class PipelineStatus:
    """A snapshot of the live pipeline for the UI and the ``live`` command.

    ``fps`` counts processed frames over the last second; ``latency_ms`` is
    the median time from receiving a frame to its result over the last
    second; ``stages_ms`` the median time of each stage.
    """

    state: str
    """One of "starting", "running", "no_signal", "ended", "stopped", "error".

    "no_signal": no frame for ``stall_timeout_s`` or the source failed; it is
    being retried. "error": the source cannot be used (a bad file): reading
    has stopped, ``message`` says why. A failing stage does not change the
    state: it is counted in ``stage_errors`` and said in ``message``.
    """
    message: str = ""
    frames_received: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    fps: float = 0.0
    latency_ms: float | None = None
    stages_ms: dict[str, float] = field(default_factory=dict)
    last_frame_age_s: float | None = None
    frames_bad: int = 0
    """Frames the source delivered in a form that is not an image (skipped)."""
    stage_errors: int = 0
    reconnects: int = 0
    paused: bool = False
    source: str = ""


class _Worker:
    """One capture thread's own source and generation (an abandoned one exits quietly)."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.source: FrameSource | None = None
        self.thread: threading.Thread | None = None
        self.reading_since: float | None = None


class LivePipeline:
    """Capture and process a live source on two threads, newest frame first.

    Parameters
    ----------
    source : FrameSource or callable
        A source, or a zero-argument factory returning a new (unopened) one;
        a factory lets the pipeline replace a source stuck in ``read``.
    stages : sequence of Stage
    stall_timeout_s : float
        No frame for this long: state ``no_signal``. Still none after twice
        as long: the source is reopened (needs a factory if ``read`` is stuck).
    max_backoff_s : float
        Longest wait between attempts to reopen a failing source.
    region : ImagingRegion, optional
        Initial imaging region given to every frame's result.
    """

    _POLL_S = 0.05
    _MAX_BAD_FRAMES_IN_A_ROW = 50

    def __init__(self, source: FrameSource | Callable[[], FrameSource], stages: Iterable[Stage] = (), *,
                 stall_timeout_s: float = 1.0, max_backoff_s: float = 4.0, initial_backoff_s: float = 0.25,
                 region: ImagingRegion | None = None) -> None:
        if hasattr(source, "read"):
            self._factory: Callable[[], FrameSource] | None = None
            self._instance: FrameSource | None = source  # type: ignore[assignment]
        elif callable(source):
            self._factory, self._instance = source, None
        else:
            raise TypeError("source must be a FrameSource or a zero-argument factory returning one")
        self._stages: tuple[Stage, ...] = tuple(stages)
        self.stall_timeout_s = float(stall_timeout_s)
        self.max_backoff_s = float(max_backoff_s)
        self.initial_backoff_s = float(initial_backoff_s)
        self.region = region

        self._cond = threading.Condition()
        self._slot: tuple[Frame, float] | None = None
        self._stop = threading.Event()
        self._running = threading.Event()  # cleared while paused
        self._running.set()
        self._consumers: tuple[Consumer, ...] = ()
        self._latest: FrameResult | None = None
        self._workers: list[_Worker] = []
        self._generation = 0
        self._processor: threading.Thread | None = None
        self._capture_done = False
        self._fatal_message: str | None = None  # the source cannot be used: stays in "error"
        self._last_source: FrameSource | None = None  # the source opened last (what it found missing)

        self._state = "starting"
        self._message = ""
        self._source_name = ""
        self._received = self._processed = self._dropped = self._bad = 0
        self._stage_errors = self._reconnects = 0
        self._started_s = 0.0
        self._last_received_s: float | None = None
        self._stall_ref_s = 0.0  # last frame, start or resume: what a stall is measured from
        self._history: deque[tuple[float, float, dict[str, float]]] = deque(maxlen=4096)

    # --- control -------------------------------------------------------------------------------
    def start(self) -> "LivePipeline":
        if self._processor is not None:
            raise RuntimeError("pipeline already started")
        self._started_s = self._stall_ref_s = time.monotonic()
        self._spawn_capture()
        self._processor = threading.Thread(target=self._process_loop, name="guidance-process", daemon=True)
        self._processor.start()
        return self

    def stop(self, timeout_s: float = 3.0) -> bool:
        """Stop both threads and close the source. True when every thread has ended."""
        self._stop.set()
        self._running.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        # The processor first: once it has ended, no new capture thread can be spawned.
        if self._processor is not None:
            self._processor.join(timeout_s)
        threads = [w.thread for w in self._workers if w.thread] + ([self._processor] if self._processor else [])
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            log.warning("pipeline threads still running after stop: %s (stuck in a source read)", alive)
        with self._cond:
            if self._state not in ("ended", "error"):
                self._state, self._message = "stopped", ""
        return not alive

    def __enter__(self) -> "LivePipeline":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def pause(self) -> None:
        """Stop reading the source (the last result stays available)."""
        self._running.clear()

    def resume(self) -> None:
        with self._cond:
            self._stall_ref_s = time.monotonic()
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def set_stages(self, stages: Iterable[Stage]) -> None:
        """Use these stages from the next frame on."""
        self._stages = tuple(stages)

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self._stages

    def add_consumer(self, fn: Consumer) -> None:
        """Call ``fn(result)`` on the processing thread after each frame. It must be quick (enqueue)."""
        with self._cond:
            self._consumers = self._consumers + (fn,)

    def remove_consumer(self, fn: Consumer) -> None:
        with self._cond:
            # ==, not "is": each access to obj.method makes a new bound-method object.
            self._consumers = tuple(c for c in self._consumers if c != fn)

    def latest(self) -> FrameResult | None:
        return self._latest

    # --- status --------------------------------------------------------------------------------
    @property
    def source_notice(self) -> str:
        """What the source found missing (a video shorter than its header says, found at its end
        or, looping, at its first end); "" if nothing."""
        source = self._last_source
        return source.notice if source is not None else ""

    def status(self) -> PipelineStatus:
        now = time.monotonic()
        with self._cond:
            history = list(self._history)
            state, message = self._state, self._message
            last = self._last_received_s
            counts = (self._received, self._processed, self._dropped, self._bad, self._stage_errors,
                      self._reconnects)
        recent = [h for h in history if h[0] >= now - 1.0]
        if len(recent) == len(history) == self._history.maxlen and recent:
            fps = len(recent) / max(now - recent[0][0], 1e-6)
        else:
            fps = float(len(recent))
        latency = float(np.median([h[1] for h in recent])) if recent else None
        stage_times: dict[str, list[float]] = {}
        for _, _, per_stage in recent:
            for name, ms in per_stage.items():
                stage_times.setdefault(name, []).append(ms)
        stages_ms = {name: float(np.median(v)) for name, v in stage_times.items()}
        age = (now - last) if last is not None else (now - self._started_s if self._started_s else None)
        return PipelineStatus(state=state, message=message, frames_received=counts[0], frames_processed=counts[1],
                              frames_dropped=counts[2], fps=fps, latency_ms=latency, stages_ms=stages_ms,
                              last_frame_age_s=age, frames_bad=counts[3], stage_errors=counts[4],
                              reconnects=counts[5], paused=self.paused, source=self._source_name)

    def _set_state(self, state: str, message: str = "") -> None:
        with self._cond:
            if self._state in ("stopped",):
                return
            self._state, self._message = state, message

    # --- capture -------------------------------------------------------------------------------
    def _spawn_capture(self) -> None:
        self._generation += 1
        worker = _Worker(self._generation)
        worker.thread = threading.Thread(target=self._capture_loop, args=(worker,),
                                         name=f"guidance-capture-{worker.generation}", daemon=True)
        self._workers = [w for w in self._workers if w.thread and w.thread.is_alive()] + [worker]
        worker.thread.start()

    def _current(self, worker: _Worker) -> bool:
        return worker.generation == self._generation and not self._stop.is_set()

    def _new_source(self) -> FrameSource:
        if self._factory is not None:
            return self._factory()
        assert self._instance is not None
        return self._instance

    def _capture_loop(self, worker: _Worker) -> None:
        backoff = self.initial_backoff_s
        bad_in_a_row = 0
        try:
            while self._current(worker):
                if not self._running.is_set():
                    self._running.wait(0.1)
                    continue
                if worker.source is None:
                    try:
                        source = self._new_source()
                        self._source_name = getattr(source, "name", "") or self._source_name
                        worker.source = self._last_source = source
                        source.open()
                    except Exception as exc:  # noqa: BLE001 - never die with the source
                        failed_source = worker.source
                        self._close(worker)
                        if self._fatal(exc, failed_source):
                            return
                        backoff = self._wait_backoff(worker, self._named(exc, "cannot open"), backoff)
                        continue
                worker.reading_since = time.monotonic()
                try:
                    frame = worker.source.read()
                except FrameFormatError as exc:
                    worker.reading_since = None
                    with self._cond:
                        self._bad += 1
                    bad_in_a_row += 1
                    log.debug("skipped a bad frame: %s", exc)
                    if bad_in_a_row < self._MAX_BAD_FRAMES_IN_A_ROW:
                        continue
                    bad_in_a_row = 0
                    self._close(worker)
                    backoff = self._wait_backoff(worker, f"{self._source_name}: only unusable frames ({exc})", backoff)
                    continue
                except Exception as exc:  # noqa: BLE001 - SourceDisconnected, or a bug in a reader
                    worker.reading_since = None
                    failed_source = worker.source
                    self._close(worker)
                    if self._fatal(exc, failed_source):
                        return
                    backoff = self._wait_backoff(worker, self._named(exc, "read failed"), backoff)
                    continue
                worker.reading_since = None
                if not self._current(worker):
                    return
                if frame is None:
                    # The end of the input (a live source that is lost raises SourceDisconnected
                    # instead): the processing thread finishes the last frame and reports "ended",
                    # with what the source found missing (a video shorter than its header says).
                    return
                bad_in_a_row = 0
                backoff = self.initial_backoff_s
                received_s = time.monotonic()
                with self._cond:
                    if self._slot is not None:
                        self._dropped += 1
                    self._slot = (frame, received_s)
                    self._received += 1
                    self._last_received_s = self._stall_ref_s = received_s
                    self._cond.notify()
                # Let the processing thread take the GIL: a source that never blocks (frames in
                # memory, a fast file) would otherwise starve it while filling the slot in vain.
                time.sleep(0)
        finally:
            self._close(worker)
            if worker.generation == self._generation:
                with self._cond:
                    self._capture_done = True
                    self._cond.notify_all()

    def _fatal(self, exc: Exception, source) -> bool:
        """A bad file or setting will not get better by retrying: report it and end.

        A lost device or stream (:class:`SourceDisconnected`) and anything
        unexpected are retried with backoff instead.
        """
        if isinstance(exc, GuidanceError) and not isinstance(exc, SourceDisconnected):
            # The state and message carry it to the user (status line, UI banner); logging it at
            # error level as well printed it twice on a terminal, the file's name doubled.
            log.info("source cannot be used: %s", self._named(exc, "cannot be used"))
            with self._cond:
                self._fatal_message = str(exc)
            self._set_state("error", str(exc))
            return True
        return False

    def _named(self, exc: Exception, what: str) -> str:
        """The error's one line, naming the source (our errors already do; others get it added)."""
        reason, name = _reason(exc), self._source_name or "source"
        return reason if name in reason else f"{name}: {what} ({reason})"

    def _wait_backoff(self, worker: _Worker, why: str, backoff: float) -> float:
        with self._cond:
            self._reconnects += 1
        self._set_state("no_signal", f"{why}; retrying in {backoff:.2g} s")
        log.info("source problem: %s; retrying in %.2g s", why, backoff)
        self._stop.wait(backoff)
        return min(backoff * 2.0, self.max_backoff_s)

    def _close(self, worker: _Worker) -> None:
        source, worker.source = worker.source, None
        if source is not None:
            try:
                source.close()
            except Exception as exc:  # noqa: BLE001
                log.debug("closing %s failed: %s", getattr(source, "name", "source"), exc)

    # --- processing ----------------------------------------------------------------------------
    def _process_loop(self) -> None:
        clock = time.monotonic
        while True:
            with self._cond:
                while self._slot is None and not self._stop.is_set() and not self._capture_done:
                    self._cond.wait(self._POLL_S)
                    if self._slot is None:
                        self._check_stall(clock())
                if self._stop.is_set():
                    return
                if self._slot is None:  # capture finished and everything is processed
                    if self._fatal_message is not None:
                        self._state, self._message = "error", self._fatal_message
                    else:
                        notice = self.source_notice
                        self._state, self._message = "ended", f"{self._source_name}: end of input" + (
                            f"; {notice}" if notice else "")
                    return
                frame, received_s = self._slot
                self._slot = None
                consumers = self._consumers
            stages = self._stages
            try:
                result = process(frame, stages, self.region, received_s)
                failed = None
            except Exception as exc:  # noqa: BLE001 - a failing stage must not stop the live view
                failed = exc
                result = FrameResult(frame=frame, region=self.region, received_s=received_s,
                                     alerts=(PROCESSING_ERROR_ALERT,))
            done = clock()
            with self._cond:
                self._processed += 1
                self._history.append((done, (done - received_s) * 1000.0, result.stages_ms))
                if failed is not None:
                    self._stage_errors += 1
                if self._fatal_message is None and self._state != "stopped":
                    if failed is not None:  # frames still flow: shown without guidance, said in the message
                        self._state = "running"
                        self._message = f"processing failed: {_reason(failed)}; frame shown without guidance"
                    elif self._state != "running" or self._message:
                        self._state, self._message = "running", ""
            if failed is not None and _worth_logging(self._stage_errors):
                log.error("stage failed on frame %d (%d failures so far)", frame.seq, self._stage_errors,
                          exc_info=failed)
            self._latest = result
            for fn in consumers:
                try:
                    fn(result)
                except Exception:  # noqa: BLE001 - a broken consumer must not stop the others
                    log.exception("pipeline consumer %r failed", fn)

    def _check_stall(self, now: float) -> None:
        """Called with the lock held while no frame is waiting."""
        if self._stop.is_set() or not self._running.is_set() or self._fatal_message is not None:
            return
        waited = now - self._stall_ref_s
        if waited < self.stall_timeout_s:
            return
        if self._state != "no_signal" or self._message.startswith("no frame"):
            self._state = "no_signal"
            self._message = f"no frame for {waited:.1f} s from {self._source_name or 'source'}; waiting"
        # A read stuck for long: abandon that capture thread and open a fresh source.
        worker = self._workers[-1] if self._workers else None
        if (worker is not None and self._factory is not None and worker.reading_since is not None
                and now - worker.reading_since > 2 * self.stall_timeout_s):
            self._reconnects += 1
            self._message = f"no frame for {waited:.1f} s from {self._source_name or 'source'}; reopening"
            worker.reading_since = None
            self._spawn_capture()


def _worth_logging(count: int) -> bool:
    """1, 2, ..., 10, 20, ..., 100, 200, ...: a failure on every frame must not flood the log."""
    return count > 0 and count % (10 ** max(0, len(str(count)) - 1)) == 0


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
