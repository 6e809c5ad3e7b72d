"""Whole-file operations: write a recording in one call, repair one, import any input as one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from ..contract import result_to_record
from ..errors import InputError
from ..types import Frame, FrameResult
from . import format as fmt
from .reader import RecordingReader
from .writer import RecordingWriter


def write_recording(path: str | Path, results_or_frames: Iterable[FrameResult | Frame],
                    metadata: dict | None = None, *, events: Iterable[dict] = ()) -> Path:
    """Write ``results_or_frames`` (FrameResults with what was shown, or bare Frames) as a recording.

    ``events``: dicts ``{"kind", "data", "t_s"}`` written after the frames. Returns the path.
    """
    writer = RecordingWriter(path, metadata)
    try:
        for item in results_or_frames:
            if isinstance(item, FrameResult):
                writer.write_frame(item.frame, result_to_record(item))
            else:
                writer.write_frame(item)
        for ev in events:
            writer.write_event(ev["kind"], ev.get("data"), t_s=ev.get("t_s"), frame=ev.get("frame"))
        writer.close()
    except BaseException:
        writer.abandon()
        raise
    return Path(path)


def repair_recording(path: str | Path, out: str | Path | None = None) -> dict:
    """Rewrite a damaged or cut-off recording with a fresh index and footer.

    Every record that passes its checksum is copied byte for byte (frames stay
    bit-exact; metadata, results and events unchanged). With ``out`` the
    repaired copy goes there; without, it replaces ``path`` through a temporary
    file and a rename, and the original is kept beside it as ``NAME.orig``
    (never deleted: it may hold something a better tool can still recover).
    Returns a summary dict.
    """
    src = Path(path)
    reader = RecordingReader(src)
    try:
        lost = reader.lost_info
        target = Path(out) if out is not None else src.with_name(src.name + ".repair-tmp")
        if target.exists():
            raise InputError(f"{target}: already exists; not overwritten")
        writer = RecordingWriter(target, reader.metadata, exact_metadata=True)
        frames = events = skipped = 0
        try:
            _copy_records(reader, writer)
            frames, events = writer.frames, writer.events
            writer.close()
        except BaseException:
            writer.abandon()
            target.unlink(missing_ok=True)
            raise
        verify = reader.verify()
        skipped = len(verify["damaged_frames"]) + verify["damaged_records"]
    finally:
        reader.close()
    final = target
    if out is None:
        backup = _free_name(src.with_name(src.name + ".orig"))
        os.replace(src, backup)
        os.replace(target, src)
        _fsync_dir(src.parent)
        final = src
    return {"repaired": str(final), "original_kept_as": None if out is not None else str(backup),
            "frames": frames, "events": events, "damaged_records_skipped": skipped,
            "unreadable_tail_bytes": lost.lost_bytes, "was_clean": lost.clean}


def _copy_records(reader: RecordingReader, writer: RecordingWriter) -> None:
    """Copy frames, results and events in file order, keeping their payloads byte for byte."""
    last_frame_seq = None
    for _offset, kind, payload in reader.iter_records():
        if kind == fmt.FRAME:
            try:
                head, _ = fmt.unpack_frame(payload)
            except ValueError:
                continue
            writer.append_frame_payload(payload, head.timestamp_s, head.seq)
            last_frame_seq = head.seq
        elif kind == fmt.RESULT:
            seq = fmt.RESULT_HEAD.unpack_from(payload)[0]
            if seq == last_frame_seq:
                writer.append_result_payload(payload)
                last_frame_seq = None
        elif kind == fmt.EVENT:
            writer.append_event_payload(payload)


def _free_name(p: Path) -> Path:
    if not p.exists():
        return p
    i = 2
    while p.with_name(f"{p.name}{i}").exists():
        i += 1
    return p.with_name(f"{p.name}{i}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def import_to_recording(spec: str, out: str | Path, *, spacing_mm=None, fps: float | None = None,
                        stages=None, metadata: dict | None = None) -> dict:
    """Convert any file input (an image folder, video, PLUS, DICOM) to a recording.

    A ``replay_data``-style folder (``frames/`` + ``meta.json``) takes its
    spacing and fps from ``meta.json``. Frames of an image folder have no
    timestamps: they are given ``index / fps``. With ``stages`` each frame is
    run through them and the result is recorded as if shown live.
    """
    from ..pipeline import process
    from ..sources import classify_spec, open_source

    folder = Path(spec)
    meta: dict = {}
    if folder.is_dir() and (folder / "meta.json").is_file() and (folder / "frames").is_dir():
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{folder / 'meta.json'}: not valid JSON ({exc})") from None
        spec = str(folder / "frames")
        if spacing_mm is None and meta.get("spacing_mm"):
            spacing_mm = meta["spacing_mm"]
        fps = fps or meta.get("fps")
    kind = classify_spec(spec)
    if kind in ("device", "igtl", "sim"):
        raise InputError(f"{spec}: import reads files; use 'guidance record' for a live source")
    opts = {"realtime": False, "loop": False}
    if spacing_mm is not None:
        sp = (spacing_mm, spacing_mm) if isinstance(spacing_mm, (int, float)) else spacing_mm
        opts["spacing_mm"] = (float(sp[0]), float(sp[1]))
    md = {"source": str(folder if meta else spec), "source_kind": kind, "imported": True, **(metadata or {})}
    if meta:
        md["source_meta"] = meta
    writer = RecordingWriter(out, md)
    try:
        with open_source(spec, **opts) as source:
            while True:
                frame = source.read()
                if frame is None:
                    break
                if fps and kind in ("folder", "image"):
                    frame = Frame(frame.image, frame.index / float(fps), frame.index, frame.seq, frame.spacing_mm,
                                  frame.source)
                if stages is not None:
                    writer.write_frame(frame, result_to_record(process(frame, stages)))
                else:
                    writer.write_frame(frame)
        if not writer.frames:
            raise InputError(f"{spec}: no frames to import")
        writer.close()
    except BaseException:
        writer.abandon()
        Path(out).unlink(missing_ok=True)
        raise
    return {"recording": str(out), "frames": writer.frames, "bytes": writer.bytes_written,
            "compression_ratio": round(writer.raw_bytes / max(writer.bytes_written, 1), 3)}
