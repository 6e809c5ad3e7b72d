"""The live recorder: a pipeline consumer that writes on its own thread.

``submit(result)`` only appends to a bounded queue, so a slow disk never
stalls the live view. When the queue is full the newest frame is not
recorded; the count goes into the file as a ``frames_dropped`` event (never
silently) and into :attr:`Recorder.stats`. When the disk refuses a write
(full, size limit) the recorder stops with a message in :attr:`Recorder.error`,
the file keeps everything up to there, and the pipeline goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

from ..contract import result_to_record
from ..types import FrameResult
from . import format as fmt
from .writer import RecordingWriteError, RecordingWriter

log = logging.getLogger(__name__)


class Recorder:
    """Record every processed frame, what was shown on it, and events, to a ``.usrec`` file.

    Parameters
    ----------
    path : the new file (never overwritten).
    metadata : session fields (source, model, spacing, ...), added to the standard ones.
    max_queue : frames waiting to be written before new ones are dropped (about 3 s at 30 fps).
    sync_interval_s : index + fsync at least this often (what a power cut may lose).

    Use as ``pipeline.add_consumer(recorder.submit)`` between :meth:`start` and :meth:`stop`.
    """

    def __init__(self, path: str | Path, metadata: dict | None = None, *, max_queue: int = 90,
                 sync_interval_s: float = 1.0, codec: int = fmt.CODEC_PNG) -> None:
        self.path = Path(path)
        self.metadata = dict(metadata or {})
        self.max_queue = int(max_queue)
        self.sync_interval_s = float(sync_interval_s)
        self.codec = codec
        self.error: str | None = None
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._queued_frames = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self._writer: RecordingWriter | None = None
        self._accepting = False
        self._last_t_s: float | None = None
        self._submitted = self._dropped = self._not_recorded = 0
        self._encode_s = 0.0
        self._peak_queue = 0
        self._started_s = 0.0

    # --- control -------------------------------------------------------------------------------
    def start(self) -> "Recorder":
        """Create the file (InputError if it cannot be created) and start the writing thread."""
        if self._thread is not None:
            raise RuntimeError("recorder already started")
        self._writer = RecordingWriter(self.path, self.metadata, sync_interval_s=self.sync_interval_s,
                                       codec=self.codec)
        self.metadata = dict(self._writer.metadata)
        self._started_s = time.monotonic()
        self._accepting = True
        self._thread = threading.Thread(target=self._run, name="guidance-recorder", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> dict:
        """Write what is queued, the index and the footer; close. Returns :attr:`stats`."""
        with self._cond:
            self._accepting = False
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("%s: recorder still writing after %.0f s", self.path, timeout_s)
        return self.stats

    def __enter__(self) -> "Recorder":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def recording(self) -> bool:
        return self._accepting and self.error is None

    # --- input (any thread; never blocks on the disk) -------------------------------------------
    def submit(self, result: FrameResult) -> None:
        """Queue one processed frame; drops it (counted and recorded) when the queue is full."""
        with self._cond:
            if not self._accepting:
                self._not_recorded += 1
                return
            self._submitted += 1
            self._last_t_s = float(result.frame.timestamp_s)
            if self._queued_frames >= self.max_queue:
                self._dropped += 1
                if self._queue and self._queue[-1][0] == "drop":
                    self._queue[-1][1] += 1
                else:
                    self._queue.append(["drop", 1, self._last_t_s])
                return
            self._queue.append(("frame", result))
            self._queued_frames += 1
            self._peak_queue = max(self._peak_queue, self._queued_frames)
            self._cond.notify()

    def add_event(self, kind: str, data: dict | None = None, t_s: float | None = None) -> None:
        """Record a user event ("target", "injection", ...) after the frames submitted so far.

        ``t_s`` defaults to the timestamp of the last submitted frame (the recording's clock).
        Events are never dropped for a full queue (they are few and small).
        """
        wall = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        with self._cond:
            if not self._accepting:
                return
            self._queue.append(("event", str(kind), dict(data or {}), self._last_t_s if t_s is None else t_s, wall))
            self._cond.notify()

    # --- the writing thread ----------------------------------------------------------------------
    def _run(self) -> None:
        writer = self._writer
        assert writer is not None
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stop:
                        wait = writer.sync_interval_s - (time.monotonic() - writer._last_sync_s)
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    item = self._queue.popleft() if self._queue else None
                    if item is not None and item[0] == "frame":
                        self._queued_frames -= 1
                    done = item is None and self._stop
                if item is not None:
                    self._write(writer, item)
                if done:
                    writer.close()
                    return
                if writer.sync_due():
                    writer.sync()
        except RecordingWriteError as exc:
            self._fail(str(exc), writer)
        except Exception as exc:  # noqa: BLE001 - a bug here must not go unnoticed, nor stop the pipeline
            log.exception("recorder failed")
            self._fail(f"{self.path}: recording stopped ({type(exc).__name__}: {exc})", writer)

    def _write(self, writer: RecordingWriter, item) -> None:
        kind = item[0]
        if kind == "frame":
            result: FrameResult = item[1]
            t0 = time.perf_counter()
            writer.write_frame(result.frame, result_to_record(result))
            self._encode_s += time.perf_counter() - t0
        elif kind == "event":
            _, name, data, t_s, wall = item
            writer.write_event(name, data, t_s=t_s, wall_time=wall)
        elif kind == "drop":
            writer.note_dropped(item[1], t_s=item[2])

    def _fail(self, message: str, writer: RecordingWriter) -> None:
        log.error("%s", message)
        with self._cond:
            self.error = message
            self._accepting = False
            self._not_recorded += self._queued_frames
            self._queue.clear()
            self._queued_frames = 0
        writer.abandon()

    # --- figures -----------------------------------------------------------------------------
    @property
    def stats(self) -> dict:
        """Frames written, dropped (queue full), not recorded (after a stop or error), bytes, timings."""
        w = self._writer
        written = w.frames if w else 0
        elapsed = (time.monotonic() - self._started_s) if self._started_s else 0.0
        state = "error" if self.error else "recording" if self._accepting else "stopped" if w else "not started"
        return {"state": state, "path": str(self.path), "frames_written": written,
                "frames_dropped": self._dropped, "frames_not_recorded": self._not_recorded,
                "events": w.events if w else 0, "queued": self._queued_frames, "peak_queue": self._peak_queue,
                "bytes_written": w.bytes_written if w else 0,
                "compression_ratio": round(w.raw_bytes / max(w.bytes_written, 1), 3) if w and written else None,
                "write_ms_per_frame": round(self._encode_s * 1000.0 / written, 3) if written else None,
                "elapsed_s": round(elapsed, 3), "error": self.error}
