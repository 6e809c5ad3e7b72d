"""The bridge between the pipeline's threads and the GUI thread.

The pipeline calls our consumer on its processing thread after every frame.
The consumer only keeps the newest result and, when the GUI has not yet been
told, posts one queued signal. However slowly the GUI draws, at most one
notification waits in its event queue and it always draws the newest frame:
results coalesce, they never queue up.
"""

from __future__ import annotations

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
        self.pipeline.add_consumer(self._on_result)

    # Called on the pipeline's processing thread: quick, never touches widgets.
    def _on_result(self, result: FrameResult) -> None:
        with self._lock:
            self._latest = result
            self.results_seen += 1
            if self._notified:
                return
            self._notified = True
        self.result_ready.emit()  # queued to the GUI thread (the receiver lives there)

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

    def status(self):
        return self.pipeline.status()

    def pause(self) -> None:
        self.pipeline.pause()

    def resume(self) -> None:
        self.pipeline.resume()

    def set_stages(self, stages) -> None:
        self.pipeline.set_stages(list(stages))
