"""An image folder replayed with a frame rate: timestamps ``index / fps`` (sample sequences)."""

from __future__ import annotations

from ..sources import open_source
from ..sources.base import SourceBase


class TimedFolderSource(SourceBase):
    """Frames of an image folder (sorted by name) stamped ``index / fps`` seconds."""

    def __init__(self, spec: str, *, fps: float = 30.0, spacing_mm=None, **options) -> None:
        super().__init__()
        self.name = str(spec)
        self.fps = float(fps)
        self.spacing_mm = spacing_mm
        self._inner = open_source(spec, realtime=False, loop=False, spacing_mm=spacing_mm, **options)

    @property
    def nominal_fps(self) -> float | None:
        return self.fps

    def open(self) -> None:
        self._inner.open()

    def close(self) -> None:
        self._inner.close()

    def read(self):
        frame = self._inner.read()
        if frame is None:
            return None
        return self.make_frame(frame.image, frame.index / self.fps, frame.index, frame.spacing_mm)
