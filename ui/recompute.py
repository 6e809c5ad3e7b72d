"""Guidance recomputed with the current model for the player, off the GUI thread.

The player asks for frame ``i``; a helper thread runs the stages on it and
wakes the GUI (one byte on a socket pair, as :mod:`ui.worker` does). Only the
newest request counts: asking for another frame while one is computing drops
the older request. A tracker needs history, so after a jump the helper first
runs the few frames before the one asked for.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable

from PySide6 import QtCore

from guidance.types import Frame, FrameResult

WARMUP_FRAMES = 8  # frames run through a fresh tracker before the one asked for, after a jump


class Recomputer(QtCore.QObject):
    """Runs ``make_stages()`` over ``frame_at(i)`` on its own thread.

    Signals
    -------
    ready()
        A result is waiting: fetch it with :meth:`take` (GUI thread).
    """

    ready = QtCore.Signal()

    def __init__(self, make_stages: Callable[[], list], frame_at: Callable[[int], Frame], parent=None) -> None:
        super().__init__(parent)
        self._make_stages = make_stages
        self._frame_at = frame_at
        self._cond = threading.Condition()
        self._pending: int | None = None
        self._done: tuple[int, FrameResult | None, str] | None = None
        self._reset = True
        self._closed = False
        self.stages: list = []
        self._next_index: int | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._notifier = QtCore.QSocketNotifier(self._wake_r.fileno(), QtCore.QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._on_wake)
        self._thread = threading.Thread(target=self._run, name="player-recompute", daemon=True)
        self._thread.start()

    def request(self, index: int) -> None:
        """Compute frame ``index`` (replacing any request not yet started)."""
        with self._cond:
            self._pending = int(index)
            self._cond.notify()

    def reset(self) -> None:
        """New stages from the next request on (the model, spacing or file changed)."""
        with self._cond:
            self._reset = True

    def take(self) -> tuple[int, FrameResult | None, str] | None:
        """``(index, result, error)`` of the newest finished request, or None."""
        with self._cond:
            done, self._done = self._done, None
        return done

    def close(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout_s)
        self._notifier.setEnabled(False)
        self._wake_w.close()
        self._wake_r.close()

    # -- the helper thread ----------------------------------------------------
    def _run(self) -> None:
        from guidance.pipeline import process

        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                index, self._pending = self._pending, None
                reset, self._reset = self._reset, False
            try:
                if reset or self._next_index != index:
                    self.stages = self._make_stages()
                    for i in range(max(0, index - WARMUP_FRAMES), index):
                        process(self._frame_at(i), self.stages)
                result, error = process(self._frame_at(index), self.stages), ""
                self._next_index = index + 1
            except Exception as exc:  # a model that fails must not take the player down
                result, error = None, f"{type(exc).__name__}: {exc}"
                self._next_index = None
            with self._cond:
                self._done = (index, result, error)
            try:
                self._wake_w.send(b"\x01")
            except OSError:
                pass

    def _on_wake(self, *_args) -> None:
        try:
            while self._wake_r.recv(64):
                pass
        except OSError:
            pass
        self.ready.emit()
