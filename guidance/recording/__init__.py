"""Lossless, crash-safe session recordings (``.usrec``) and their replay.

- :class:`Recorder`: a pipeline consumer writing on its own thread
  (``pipeline.add_consumer(recorder.submit)``).
- :class:`RecordingReader`: random access to frames, shown results and events.
- :class:`~guidance.recording.replay.RecordingSource`: a recording as a frame source.
- :func:`write_recording`, :func:`repair_recording`, :func:`import_to_recording`.

The byte format is specified in ``docs/recording-format.md``.
"""

from __future__ import annotations

from .format import FORMAT_VERSION
from .reader import CorruptRecordingError, LostInfo, RecordingReader
from .recorder import Recorder
from .tools import import_to_recording, repair_recording, write_recording
from .writer import RecordingWriteError, RecordingWriter

__all__ = ["FORMAT_VERSION", "Recorder", "RecordingReader", "RecordingWriter", "RecordingWriteError",
           "CorruptRecordingError", "LostInfo", "RecordingSource", "write_recording", "repair_recording",
           "import_to_recording"]


def __getattr__(name: str):
    if name == "RecordingSource":  # lazy: the source module imports the sources package
        from .replay import RecordingSource

        return RecordingSource
    raise AttributeError(name)
