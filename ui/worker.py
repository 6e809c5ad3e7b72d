"""The bridge between the pipeline's threads and the GUI thread.

The pipeline calls our consumer on its processing thread after every frame.
The consumer only keeps the newest result and, when the GUI has not yet been
told, wakes it once. However slowly the GUI draws, at most one wake-up waits
and it always draws the newest frame: results coalesce, they never queue up.

The wake-up is one byte written to a socket pair that a ``QSocketNotifier``
watches in the GUI thread, not a Qt signal emitted from the pipeline's
thread: PySide6 6.8+ corrupts reference counts when Python threads emit
signals (PYSIDE-3124; seen here as "deallocating None" crashes), and a socket
write touches no Python or Qt object.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable, Sequence

from PySide6 import QtCore

from guidance.types import FrameResult


class PipelineWorker(QtCore.QObject):
    """Owns a :class:`guidance.pipeline.LivePipeline` and hands its newest result to the GUI.

    Parameters
    ----------
    source_factory : callable
        Zero-argument function returning a new (unopened) frame source; the
        pipeline calls it again to reopen a source that failed.
    stages : sequence of stages
        Processing stages (see ``guidance.stages.build_stages``).

    Signals
    -------
    result_ready()
        A new result is waiting; fetch it with :meth:`take_latest` (GUI thread).
    """

    result_ready = QtCore.Signal()

    def __init__(self, source_factory: Callable, stages: Sequence = (), parent=None, **pipeline_options) -> None:
        super().__init__(parent)
        from guidance.pipeline import LivePipeline

        self.pipeline = LivePipeline(source_factory, list(stages), **pipeline_options)
        self._lock = threading.Lock()
        self._latest: FrameResult | None = None
        self._notified = False
        self.results_seen = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._notifier = QtCore.QSocketNotifier(self._wake_r.fileno(), QtCore.QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._on_wake)
        self.pipeline.add_consumer(self._on_result)

    # Called on the pipeline's processing thread: quick, never touches widgets.
    def _on_result(self, result: FrameResult) -> None:
        with self._lock:
            self._latest = result
            self.results_seen += 1
            if self._notified:
                return
            self._notified = True
        try:
            self._wake_w.send(b"\x01")
        except OSError:  # closed while stopping, or (never) full: the GUI is told anyway or gone
            pass

    def _on_wake(self, *_args) -> None:  # GUI thread
        try:
            while self._wake_r.recv(64):
                pass
        except OSError:  # BlockingIOError: drained
            pass
        self.result_ready.emit()

    def take_latest(self) -> FrameResult | None:
        """The newest result not yet taken, or None (GUI thread)."""
        with self._lock:
            result, self._latest = self._latest, None
            self._notified = False
        return result

    def add_consumer(self, fn) -> None:
        self.pipeline.add_consumer(fn)

    def remove_consumer(self, fn) -> None:
        self.pipeline.remove_consumer(fn)

    def start(self) -> None:
        self.pipeline.start()

    def stop(self, timeout_s: float = 3.0) -> None:
        self.pipeline.remove_consumer(self._on_result)
        self.pipeline.stop(timeout_s=timeout_s)
        self._notifier.setEnabled(False)
        self._wake_w.close()
        self._wake_r.close()

    def status(self):
        return self.pipeline.status()

    @property
    def source_notice(self) -> str:
        """What the source found missing (a video cut off), "" if nothing (any thread)."""
        return self.pipeline.source_notice

    def pause(self) -> None:
        self.pipeline.pause()

    def resume(self) -> None:
        self.pipeline.resume()

    def set_stages(self, stages) -> None:
        self.pipeline.set_stages(list(stages))
