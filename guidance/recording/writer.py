"""Appending records to a ``.usrec`` file, synchronously (the recorder's thread calls this).

Each record goes to the operating system as soon as it is written (an
unbuffered file), so a crash of this process (``kill -9``) loses nothing
written; an index record and an ``fsync`` follow at least every
``sync_interval_s`` so a power cut loses at most that much. A failed write
(disk full) cuts the file back to the last whole record and raises
:class:`RecordingWriteError`: the file stays readable.
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import GuidanceError, InputError
from ..types import Frame
from . import format as fmt


class RecordingWriteError(GuidanceError):
    """Writing the recording failed (disk full, file too large, device gone)."""


def base_metadata() -> dict:
    """The fields every recording starts with (the caller's metadata is added to these)."""
    return {"format": "usrec", "format_version": fmt.FORMAT_VERSION, "uuid": str(uuid.uuid4()),
            "start_time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "software": "guidance", "software_version": __version__}


def describe_write_error(path: Path | str, exc: OSError, frames: int) -> str:
    if exc.errno == errno.ENOSPC:
        why = "disk full"
    elif exc.errno == errno.EFBIG:
        why = "file size limit reached"
    else:
        why = exc.strerror or str(exc)
    return (f"{path}: {why} after {frames} frames; recording stopped "
            f"(the file keeps everything written up to there)")


class RecordingWriter:
    """Write a new recording: metadata first, then frames, results and events, index and footer.

    Parameters
    ----------
    path : path of the new file; an existing file is never overwritten.
    metadata : dict of JSON-serialisable session fields, added to :func:`base_metadata`.
    sync_interval_s : longest time between an index record + fsync.
    codec : ``format.CODEC_PNG`` (default) or ``format.CODEC_RAW``.
    exact_metadata : write ``metadata`` as given (a repaired copy keeps the original's uuid and times).
    """

    def __init__(self, path: str | Path, metadata: dict | None = None, *, sync_interval_s: float = 1.0,
                 codec: int = fmt.CODEC_PNG, index_every_frames: int = 256, exact_metadata: bool = False) -> None:
        self.path = Path(path)
        self.sync_interval_s = float(sync_interval_s)
        self.index_every_frames = int(index_every_frames)
        self.codec = codec
        meta = {} if exact_metadata else base_metadata()
        meta.update({k: v for k, v in (metadata or {}).items() if exact_metadata or k not in ("format", "format_version", "uuid")})
        self.metadata = meta
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise InputError(f"{self.path}: already exists; a recording is never overwritten") from None
        except OSError as exc:
            raise InputError(f"{self.path}: cannot create the recording ({exc.strerror})") from None
        self._fh = os.fdopen(fd, "wb", buffering=0)
        self._offset = 0
        self._last_index = 0
        self._pending: list[tuple[int, int, float, int]] = []
        self._pending_events: list[int] = []
        self.frames = self.events = self.dropped = 0
        self.raw_bytes = 0
        self._last_sync_s = time.monotonic()
        self.closed = False
        try:
            self._write(fmt.file_header())
            self._append(fmt.META, fmt.pack_json(meta))
            self.sync()
        except RecordingWriteError as exc:
            self._abandon()
            raise InputError(str(exc)) from None

    @property
    def bytes_written(self) -> int:
        return self._offset

    # --- appending ---------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        start = self._offset
        try:
            while view:
                n = self._fh.write(view)
                if not n:
                    raise OSError(errno.EIO, "write returned nothing")
                view = view[n:]
                self._offset += n
        except OSError as exc:
            self._cut(start)
            raise RecordingWriteError(describe_write_error(self.path, exc, self.frames)) from exc

    def _cut(self, offset: int) -> None:
        """Drop a partly written record so the file ends on a whole one."""
        try:
            self._fh.truncate(offset)
            self._fh.seek(offset)
        except OSError:
            pass  # the reader stops at a half record anyway
        self._offset = offset

    def _append(self, kind: bytes, payload: bytes) -> int:
        offset = self._offset
        self._write(fmt.pack_record(kind, payload))
        return offset

    def write_frame(self, frame: Frame, record: dict | None = None) -> int:
        """Append one frame (and the contract line shown on it). Returns its position."""
        payload = fmt.pack_frame(frame.image, seq=frame.seq, index=frame.index, timestamp_s=frame.timestamp_s,
                                 spacing_mm=frame.spacing_mm, codec=self.codec)
        chunk = fmt.pack_record(fmt.FRAME, payload)
        frame_offset, result_offset = self._offset, 0
        if record is not None:
            # One write for the frame and the result shown on it: a process killed between two
            # writes left a frame on disk without its result (seen as a flaky kill -9 test).
            result_offset = frame_offset + len(chunk)
            chunk += fmt.pack_record(fmt.RESULT, fmt.pack_result(frame.seq, record))
        self._write(chunk)
        self._pending.append((frame_offset, result_offset, float(frame.timestamp_s), int(frame.seq)))
        self.frames += 1
        self.raw_bytes += frame.image.size
        if len(self._pending) >= self.index_every_frames:
            self._write_index()
        return self.frames - 1

    def append_frame_payload(self, payload: bytes, timestamp_s: float, seq: int) -> None:
        """Append a frame payload as it is (repair: copied byte for byte from another file)."""
        if len(self._pending) >= self.index_every_frames:
            self._write_index()
        self._pending.append((self._append(fmt.FRAME, payload), 0, float(timestamp_s), int(seq)))
        self.frames += 1
        head = fmt.unpack_frame_head(payload)
        self.raw_bytes += head.width_px * head.height_px

    def append_result_payload(self, payload: bytes) -> None:
        """Append the result payload of the frame appended last."""
        offset = self._append(fmt.RESULT, payload)
        f, _, t, seq = self._pending[-1]
        self._pending[-1] = (f, offset, t, seq)

    def append_event_payload(self, payload: bytes) -> None:
        self._pending_events.append(self._append(fmt.EVENT, payload))
        self.events += 1

    def write_event(self, kind: str, data: dict | None = None, *, t_s: float | None = None,
                    frame: int | None = None, wall_time: str | None = None) -> None:
        """Append a user or system event (``frame``: position of the frame it follows)."""
        event = {"kind": str(kind), "data": data or {}, "t_s": t_s,
                 "frame": frame if frame is not None else max(self.frames - 1, 0),
                 "wall_time": wall_time or datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
        self._pending_events.append(self._append(fmt.EVENT, fmt.pack_json(event)))
        self.events += 1

    def note_dropped(self, count: int, t_s: float | None = None) -> None:
        """Say, in the file, that ``count`` frames were not recorded here (queue overflow)."""
        self.dropped += int(count)
        self.write_event("frames_dropped", {"count": int(count)}, t_s=t_s)

    # --- durability --------------------------------------------------------------------------
    def _write_index(self) -> None:
        if not self._pending and not self._pending_events:
            return
        entries = np.array(self._pending, dtype=fmt.INDEX_ENTRY)
        offset = self._append(fmt.INDEX, fmt.pack_index(self._last_index, entries, self._pending_events))
        self._last_index = offset
        self._pending.clear()
        self._pending_events.clear()

    def sync(self) -> None:
        """Index what is not indexed yet and force it to the disk."""
        self._write_index()
        try:
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise RecordingWriteError(describe_write_error(self.path, exc, self.frames)) from exc
        self._last_sync_s = time.monotonic()

    def sync_due(self, now_s: float | None = None) -> bool:
        return (time.monotonic() if now_s is None else now_s) - self._last_sync_s >= self.sync_interval_s

    def close(self) -> None:
        """Index, footer, fsync, close. Raises RecordingWriteError if the disk refuses (file still readable)."""
        if self.closed:
            return
        try:
            self._write_index()
            self._append(fmt.FOOTER, fmt.pack_footer(self._last_index, self.frames, self.events, self.dropped))
            os.fsync(self._fh.fileno())
        except OSError as exc:
            self._abandon()
            raise RecordingWriteError(describe_write_error(self.path, exc, self.frames)) from exc
        except RecordingWriteError:
            self._abandon()
            raise
        self.closed = True
        self._fh.close()

    def _abandon(self) -> None:
        """Close without a footer (after a write failure): the reader recovers by scanning."""
        if self.closed:
            return
        self.closed = True
        try:
            os.fsync(self._fh.fileno())
        except OSError:
            pass
        try:
            self._fh.close()
        except OSError:
            pass

    abandon = _abandon
