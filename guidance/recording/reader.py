"""Reading a ``.usrec`` recording: random access by frame, without loading it whole.

Opening reads the file header, the metadata and the index (a chain of index
records, found from the footer of a cleanly closed file). A file cut short by
a crash has no footer: the reader finds the last good index record near the
end, then reads the records after it one by one up to the first that is
incomplete or fails its checksum, and says in :attr:`RecordingReader.lost_info`
how much was lost. A file is only ever opened read-only.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError
from ..types import Frame
from . import format as fmt

_BACKWARD_SEARCH_BYTES = 64 * 1024 * 1024  # how far from the end to look for the last index record
_BLOCK = 4 * 1024 * 1024


class CorruptRecordingError(InputError):
    """A record of the recording fails its checksum or does not decode."""


@dataclass(frozen=True)
class LostInfo:
    """What a recording is missing, as found when it was opened."""

    clean: bool
    """Closed properly (footer present and consistent)."""
    lost_bytes: int = 0
    """Bytes at the end that could not be read (a record cut off by a crash, or garbage)."""
    corrupt_records: int = 0
    """Records skipped because their checksum failed (a damaged disk or copy)."""
    frames_dropped: int = 0
    """Frames the recorder could not keep up with (recorded as ``frames_dropped`` events)."""
    message: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Scan:
    """What a forward scan over records found."""

    entries: list
    events: list
    end: int  # offset just after the last good record
    corrupt: int
    footer: tuple | None = None


class RecordingReader:
    """Random access to the frames, shown results and events of a recording.

    Parameters
    ----------
    path : a ``.usrec`` file. :class:`InputError` (naming the file) if it is not
        a readable recording; a crashed or damaged one opens with what is left
        and says what was lost in :attr:`lost_info`.

    Attributes
    ----------
    metadata : dict, the session fields written when recording started.
    events : list of dict ``{"kind", "data", "t_s", "frame", "wall_time"}``;
        ``frame`` is the position (``0 .. len-1``) of the frame the event follows.
    timestamps_s : list of float, the recorded timestamp of every frame.
    lost_info : :class:`LostInfo`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = resolve_recording_path(path)
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise InputError(f"{self.path}: no such recording") from None
        except IsADirectoryError:
            raise InputError(f"{self.path}: is a folder, not a recording (.usrec)") from None
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read ({exc.strerror})") from None
        self._fd: int | None = fd
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # --- opening -------------------------------------------------------------------------------
    def _open(self) -> None:
        self.size = os.fstat(self._fd).st_size
        try:
            self.version = fmt.parse_file_header(self._pread(0, fmt.FILE_HEADER_SIZE))
        except ValueError as exc:
            raise InputError(f"{self.path}: {exc}") from None
        meta = self._read_record_at(fmt.FILE_HEADER_SIZE)
        if meta is None or meta[0] != fmt.META:
            # Not "try repair": repair needs this record too, so it would fail with this same line.
            raise InputError(f"{self.path}: the metadata record is missing or corrupt (cut off or damaged "
                             "at its start); the recording cannot be read or repaired")
        try:
            self.metadata = json.loads(meta[1].decode("utf-8"))
        except ValueError:
            raise InputError(f"{self.path}: the metadata record is not valid JSON") from None
        self._data_start = fmt.FILE_HEADER_SIZE + fmt.RECORD_HEADER_SIZE + len(meta[1])

        entries, event_offsets, lost = self._open_indexed()
        self._entries = entries
        self._events = self._load_events(event_offsets)
        dropped = sum(int(e["data"].get("count", 0)) for e in self._events if e["kind"] == "frames_dropped")
        if dropped:
            msg = lost.message + ("; " if lost.message else "") + f"{dropped} frames were dropped while recording"
            lost = LostInfo(lost.clean, lost.lost_bytes, lost.corrupt_records, dropped, msg)
        self.lost_info = lost
        self.timestamps_s: list[float] = self._entries["t_s"].tolist()

    def _open_indexed(self) -> tuple[np.ndarray, list[int], LostInfo]:
        footer = self._read_footer()
        if footer is not None:
            last_index, frames, events, _dropped = footer
            chain = self._walk_index(last_index)
            if chain is not None and len(chain[0]) == frames:
                return chain[0], chain[1], LostInfo(True)
        # No footer (crash, disk full) or a broken index: index what can be indexed, scan the rest.
        start, entries, event_offsets = self._data_start, [], []
        last = self._find_last_index()
        if last is not None:
            chain = self._walk_index(last[0])
            if chain is not None:
                start, entries, event_offsets = last[1], [chain[0]], list(chain[1])
        scan = self._scan(start, self.size)
        entries.append(np.array(scan.entries, dtype=fmt.INDEX_ENTRY))
        event_offsets += scan.events
        all_entries = np.concatenate(entries) if entries else np.zeros(0, fmt.INDEX_ENTRY)
        lost_bytes = self.size - scan.end
        parts = ["the index was damaged and has been rebuilt by reading every record" if scan.footer is not None
                 else "not closed properly (no footer): the recording was cut off"]
        if lost_bytes:
            parts.append(f"{lost_bytes} bytes at the end could not be read")
        if scan.corrupt:
            parts.append(f"{scan.corrupt} damaged records were skipped")
        parts.append(f"{len(all_entries)} frames recovered")
        return all_entries, event_offsets, LostInfo(False, lost_bytes, scan.corrupt, 0, "; ".join(parts))

    def _read_footer(self) -> tuple | None:
        if self.size < self._data_start + fmt.FOOTER_RECORD_SIZE:
            return None
        rec = self._read_record_at(self.size - fmt.FOOTER_RECORD_SIZE)
        if rec is None or rec[0] != fmt.FOOTER:
            return None
        try:
            return fmt.unpack_footer(rec[1])
        except ValueError:
            return None

    def _walk_index(self, offset: int) -> tuple[np.ndarray, list[int]] | None:
        """Follow the index chain back from ``offset``; None if any link is broken."""
        parts, events = [], []
        seen = 0
        while offset:
            if offset < self._data_start or offset >= self.size or seen > 10_000_000:
                return None
            rec = self._read_record_at(offset)
            if rec is None or rec[0] != fmt.INDEX:
                return None
            try:
                prev, entries, ev = fmt.unpack_index(rec[1])
            except ValueError:
                return None
            if prev >= offset:
                return None
            parts.append(entries)
            events.append(ev)
            offset = prev
            seen += 1
        parts.reverse()
        events.reverse()
        all_entries = np.concatenate(parts) if parts else np.zeros(0, fmt.INDEX_ENTRY)
        return all_entries, [int(o) for ev in events for o in ev]

    def _find_last_index(self) -> tuple[int, int] | None:
        """(offset, end offset) of the last valid index record within the end of the file."""
        stop = max(self._data_start, self.size - _BACKWARD_SEARCH_BYTES)
        hi = self.size
        while hi > stop:
            lo = max(stop, hi - _BLOCK)
            block = self._pread(lo, hi - lo + fmt.RECORD_HEADER_SIZE)
            pos = len(block)
            while True:
                pos = block.rfind(fmt.INDEX, 0, pos)
                if pos < 0:
                    break
                rec = self._read_record_at(lo + pos)
                if rec is not None and rec[0] == fmt.INDEX:
                    return lo + pos, lo + pos + fmt.RECORD_HEADER_SIZE + len(rec[1])
            hi = lo
        return None

    def _load_events(self, offsets: list[int]) -> list[dict]:
        events = []
        for off in offsets:
            rec = self._read_record_at(int(off))
            if rec is None or rec[0] != fmt.EVENT:
                continue
            try:
                ev = json.loads(rec[1].decode("utf-8"))
            except ValueError:
                continue
            ev.setdefault("data", {})
            events.append(ev)
        return events

    # --- record access -------------------------------------------------------------------------
    def _pread(self, offset: int, n: int) -> bytes:
        if self._fd is None:
            raise InputError(f"{self.path}: the recording is closed")
        return os.pread(self._fd, n, offset)

    def _read_record_at(self, offset: int) -> tuple[bytes, bytes] | None:
        """(type, payload) of a whole, valid record at ``offset``, else None."""
        head = self._pread(offset, fmt.RECORD_HEADER_SIZE)
        parsed = fmt.parse_record_header(head)
        if parsed is None:
            return None
        kind, length, pcrc = parsed
        payload = self._pread(offset + fmt.RECORD_HEADER_SIZE, length)
        if len(payload) != length or zlib.crc32(payload) != pcrc:
            return None
        return kind, payload

    def iter_records(self, start: int | None = None, end: int | None = None) -> Iterator[tuple[int, bytes, bytes]]:
        """(offset, type, payload) of every valid record, skipping damaged ones (resynchronising)."""
        offset = self._data_start if start is None else start
        end = self.size if end is None else end
        while offset < end:
            rec = self._read_record_at(offset)
            if rec is None:
                nxt = self._resync(offset + 1, end)
                if nxt is None:
                    return
                offset = nxt
                continue
            yield offset, rec[0], rec[1]
            offset += fmt.RECORD_HEADER_SIZE + len(rec[1])

    def _resync(self, start: int, end: int) -> int | None:
        """Offset of the next valid record at or after ``start``, or None."""
        pos = start
        while pos < end:
            block = self._pread(pos, min(_BLOCK, end - pos) + fmt.RECORD_HEADER_SIZE)
            hits = sorted(i for kind in fmt.RECORD_TYPES for i in _find_all(block, kind)
                          if i < min(_BLOCK, end - pos))
            for i in hits:
                if self._read_record_at(pos + i) is not None:
                    return pos + i
            pos += _BLOCK
        return None

    def _scan(self, start: int, end: int) -> _Scan:
        """Index the records from ``start`` on, up to the end or the last whole record."""
        entries: list[list] = []
        events: list[int] = []
        corrupt = 0
        good_end = start
        footer = None
        offset = start
        while offset < end:
            rec = self._read_record_at(offset)
            if rec is None:
                nxt = self._resync(offset + 1, end)
                if nxt is None:
                    break  # the tail is cut off or garbage: that is what was lost
                corrupt += 1
                offset = nxt
                continue
            kind, payload = rec
            if kind == fmt.FRAME:
                head = fmt.unpack_frame_head(payload)
                entries.append([offset, 0, head.timestamp_s, head.seq])
            elif kind == fmt.RESULT and entries and entries[-1][1] == 0:
                if fmt.RESULT_HEAD.unpack_from(payload)[0] == entries[-1][3]:
                    entries[-1][1] = offset
            elif kind == fmt.EVENT:
                events.append(offset)
            elif kind == fmt.FOOTER:
                footer = fmt.unpack_footer(payload) if len(payload) == fmt.FOOTER_BODY.size else None
            offset += fmt.RECORD_HEADER_SIZE + len(payload)
            good_end = offset
        return _Scan([tuple(e) for e in entries], events, good_end, corrupt, footer)

    # --- public access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def _check(self, i: int) -> int:
        n = len(self._entries)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"{self.path}: frame {i} out of range (0..{n - 1})")
        return i % n

    def frame(self, i: int) -> Frame:
        """Frame at position ``i``, bit-exact as recorded (its index, timestamp, seq, spacing)."""
        i = self._check(i)
        rec = self._read_record_at(int(self._entries["frame_offset"][i]))
        if rec is None or rec[0] != fmt.FRAME:
            raise CorruptRecordingError(f"{self.path}: frame {i} is damaged (checksum mismatch); "
                                        "'guidance recording repair' keeps the other frames")
        try:
            head, image = fmt.unpack_frame(rec[1])
        except ValueError as exc:
            raise CorruptRecordingError(f"{self.path}: frame {i} does not decode ({exc})") from None
        return Frame(image, head.timestamp_s, head.index, head.seq, head.spacing_mm, str(self.path))

    def record(self, i: int) -> dict | None:
        """The contract line shown live on frame ``i`` (None if none was recorded)."""
        i = self._check(i)
        off = int(self._entries["result_offset"][i])
        if not off:
            return None
        rec = self._read_record_at(off)
        if rec is None or rec[0] != fmt.RESULT:
            raise CorruptRecordingError(f"{self.path}: the result of frame {i} is damaged (checksum mismatch)")
        try:
            return fmt.unpack_result(rec[1])[1]
        except (ValueError, zlib.error) as exc:
            raise CorruptRecordingError(f"{self.path}: the result of frame {i} does not decode ({exc})") from None

    @property
    def events(self) -> list[dict]:
        return [dict(e) for e in self._events]

    @property
    def source_notice(self) -> str:
        """What the recorded source was missing when it was recorded (a video cut off); "" if nothing."""
        notes = [e for e in self._events if e.get("kind") == fmt.EVENT_SOURCE_NOTICE]
        return str(notes[-1]["data"].get("message", "")) if notes else ""

    @property
    def seqs(self) -> np.ndarray:
        return self._entries["seq"].copy()

    @property
    def duration_s(self) -> float:
        ts = self._entries["t_s"]
        return float(ts[-1] - ts[0]) if len(ts) > 1 else 0.0

    def position_at(self, t_s: float) -> int:
        """Position of the first frame at or after recorded time ``t_s`` (clipped to the range)."""
        if not len(self):
            return 0
        return int(min(np.searchsorted(self._entries["t_s"], t_s), len(self) - 1))

    def info(self) -> dict:
        """A summary for ``guidance info``: metadata, frames, duration, drops, losses, sizes."""
        n = len(self)
        first = self._first_readable(lambda i: self.frame(i))
        first_record = self._first_readable(lambda i: self.record(i))
        dt = np.diff(self._entries["t_s"]) if n > 1 else np.zeros(0)
        dt = dt[dt > 0]
        raw = n * (first.width_px * first.height_px if first is not None else 0)
        kinds: dict[str, int] = {}
        for e in self._events:
            kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
        return {"path": str(self.path), "format_version": self.version, "metadata": self.metadata,
                "frames": n, "duration_s": round(self.duration_s, 3),
                "fps": round(float(1.0 / np.median(dt)), 3) if len(dt) else None,
                "size_px": [first.width_px, first.height_px] if first is not None else None,
                "spacing_mm": list(first.spacing_mm) if first is not None and first.spacing_mm else None,
                "region_px": (first_record or {}).get("region_px"),
                "frames_with_results": int(np.count_nonzero(self._entries["result_offset"])),
                "frames_dropped": self.lost_info.frames_dropped, "events": kinds,
                "file_bytes": self.size,
                "compression_ratio": round(raw / self.size, 3) if self.size and raw else None,
                "closed_cleanly": self.lost_info.clean, "lost": self.lost_info.as_dict(),
                "source_notice": self.source_notice or None}

    def _first_readable(self, read, tries: int = 10):
        """``read(i)`` of the first of the first ``tries`` frames that is not damaged, else None."""
        for i in range(min(len(self), tries)):
            try:
                return read(i)
            except CorruptRecordingError:
                continue
        return None

    def verify(self) -> dict:
        """Read every record and check its checksum (reads the whole file)."""
        bad_frames = []
        for i in range(len(self)):
            try:
                self.frame(i)
                self.record(i)
            except CorruptRecordingError:
                bad_frames.append(i)
        scan = self._scan(self._data_start, self.size)
        return {"frames": len(self), "damaged_frames": bad_frames, "damaged_records": scan.corrupt,
                "unreadable_tail_bytes": self.size - scan.end, "ok": not bad_frames and not scan.corrupt
                and scan.end == self.size}

    # --- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> "RecordingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def resolve_recording_path(path: str | Path) -> Path:
    """``path``, or the one ``.usrec`` file in the folder ``path`` (InputError if none or several)."""
    p = Path(path)
    if not p.is_dir():
        return p
    found = sorted(p.glob("*.usrec"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError(f"{p}: is a folder without a recording (.usrec)")
    raise InputError(f"{p}: the folder holds {len(found)} recordings ({found[0].name}, ...); name one")


def _find_all(block: bytes, needle: bytes) -> Iterator[int]:
    i = block.find(needle)
    while i >= 0:
        yield i
        i = block.find(needle, i + 1)
