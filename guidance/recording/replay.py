"""Replaying a recording as a frame source: paced or as fast as possible, seek, step, loop.

``RecordingSource`` is what ``open_source("session.usrec", ...)`` returns, so
a recording replays through every command that reads a source (``guidance
detect``, ``live``, the player). Frames come out bit-exact with their
recorded index, timestamp and spacing, so the same stages give the same
detections as were shown live.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from ..errors import InputError
from ..sources.base import SourceBase
from ..types import Frame
from .reader import RecordingReader


def recording_notice(reader: RecordingReader) -> str:
    """One line on what is missing from a recording or was missing from its source; "" if nothing."""
    parts = [reader.lost_info.message]
    if reader.source_notice:
        parts.append(f"recorded from a source where {reader.source_notice}")
    return "; ".join(p for p in parts if p)


class RecordingSource(SourceBase):
    """Frames of a ``.usrec`` recording.

    Parameters
    ----------
    spec : path of the recording.
    realtime : pace frames by their recorded timestamps (divided by ``speed``);
        False delivers them as fast as they are read.
    speed : replay speed factor (2.0 is twice as fast) when ``realtime``.
    loop : start again at ``start`` after ``stop``.
    start, stop : replay positions ``start .. stop-1`` (``stop`` None: to the end).
    spacing_mm : (sx, sy) overriding the recorded pixel spacing.
    """

    def __init__(self, spec: str, *, realtime: bool = False, speed: float = 1.0, loop: bool = False,
                 start: int = 0, stop: int | None = None, spacing_mm=None, clock=time.monotonic,
                 sleep=time.sleep, **_ignored) -> None:
        super().__init__()
        if not (speed > 0 and np.isfinite(speed)):
            raise InputError(f"{spec}: replay speed {speed!r} must be a positive number")
        self.path = str(spec)
        self.name = str(spec)
        self.realtime = bool(realtime)
        self.speed = float(speed)
        self.loop = bool(loop)
        self._range = (int(start), None if stop is None else int(stop))
        if spacing_mm is not None:
            sp = (spacing_mm, spacing_mm) if np.isscalar(spacing_mm) else spacing_mm
            self.spacing_mm = (float(sp[0]), float(sp[1]))
        self._override_spacing = spacing_mm is not None
        self._clock, self._sleep = clock, sleep
        self._reader: RecordingReader | None = None
        self._lock = threading.RLock()
        self._position = 0
        self._current: int | None = None
        self._anchor: tuple[float, float] | None = None  # (wall clock, recorded time) pacing starts from
        self.start = self.stop = 0

    # --- the FrameSource protocol ------------------------------------------------------------
    @property
    def is_live(self) -> bool:
        return self.realtime

    @property
    def reader(self) -> RecordingReader:
        if self._reader is None:
            self.open()
        return self._reader  # type: ignore[return-value]

    @property
    def nominal_fps(self) -> float | None:
        ts = np.asarray(self.reader.timestamps_s)
        dt = np.diff(ts)
        dt = dt[dt > 0]
        return float(1.0 / np.median(dt)) * (self.speed if self.realtime else 1.0) if len(dt) else None

    @property
    def frame_size_px(self) -> tuple[int, int] | None:
        if not len(self.reader):
            return None
        f = self.reader.frame(0)
        return (f.width_px, f.height_px)

    def open(self) -> None:
        with self._lock:
            if self._reader is not None:
                return
            reader = RecordingReader(self.path)
            n = len(reader)
            if not n:  # cut off before its first frame: nothing to read, and not a silent empty run
                reader.close()
                damage = f" ({reader.lost_info.message})" if reader.lost_info.message else ""
                raise InputError(f"{self.path}: the recording holds no frames{damage}")
            start, stop = self._range
            stop = n if stop is None else stop
            start = min(max(start, 0), n)
            stop = min(max(stop, start), n)
            self._reader, self.start, self.stop = reader, start, stop
            self._position, self._current, self._anchor = start, None, None

    @property
    def notice(self) -> str:
        """What the recording is missing (cut off, damaged records, dropped frames) and what its
        source was missing when recorded (a video cut off); "" when both were whole."""
        return recording_notice(self.reader)

    def close(self) -> None:
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def __len__(self) -> int:
        return len(self.reader)

    def read(self) -> Frame | None:
        """The next frame (paced when ``realtime``), or None after ``stop`` when not looping."""
        with self._lock:
            reader = self.reader
            if self._position >= self.stop or self._position < self.start:
                if not self.loop or self.stop <= self.start:
                    return None
                self._position, self._anchor = self.start, None
            pos = self._position
            recorded = reader.frame(pos)
            self._position, self._current = pos + 1, pos
            due = self._due(recorded.timestamp_s)
        if due is not None:
            wait = due - self._clock()
            if wait > 0:
                self._sleep(wait)
        spacing = self.spacing_mm if self._override_spacing else recorded.spacing_mm
        return self.make_frame(recorded.image, recorded.timestamp_s, recorded.index, spacing)

    def _due(self, t_s: float) -> float | None:
        """Wall-clock time (``clock``) at which the frame recorded at ``t_s`` is due."""
        if not self.realtime:
            return None
        now = self._clock()
        if self._anchor is None or t_s < self._anchor[1]:
            self._anchor = (now, t_s)
            return now
        return self._anchor[0] + (t_s - self._anchor[1]) / self.speed

    # --- navigation ----------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """Position of the frame the next :meth:`read` returns."""
        return self._position

    @property
    def current(self) -> int | None:
        """Position of the frame last returned by :meth:`read` (None before the first)."""
        return self._current

    def seek(self, i: int) -> None:
        """Make frame ``i`` (a position, clipped to the recording) the next one read; pacing restarts there."""
        with self._lock:
            n = len(self.reader)
            self._position = int(min(max(int(i), 0), max(n - 1, 0)))
            self._anchor = None

    def seek_time(self, t_s: float) -> None:
        """Seek to the first frame recorded at or after ``t_s``."""
        self.seek(self.reader.position_at(t_s))

    def step(self, n: int = 1) -> None:
        """Move ``n`` frames from the last one read (1: the next, -1: the previous); read() returns it."""
        with self._lock:
            base = self._current if self._current is not None else self._position - 1
            self.seek(base + int(n))

    def set_speed(self, speed: float) -> None:
        with self._lock:
            self.speed = float(speed)
            self._anchor = None
