"""The ``.usrec`` byte layout: file header, framed records, and their payloads.

See ``docs/recording-format.md`` for the specification. Everything here is
pure byte packing (no file handling): the recorder writes these bytes, the
reader checks and unpacks them.

A file is a 16-byte header followed by records. Every record is a 16-byte
header -- ``type`` (4 ASCII bytes), ``length`` (payload bytes, u32),
``payload_crc`` (CRC-32 of the payload), ``header_crc`` (CRC-32 of the
previous 12 bytes) -- and its payload. All integers are little-endian.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from ..io.images import decode_image

MAGIC = b"USREC\r\n\x1a"
"""8 bytes; the CR LF and ^Z catch files mangled by text-mode transfers (as PNG does)."""
FORMAT_VERSION = 1
FILE_HEADER = struct.Struct("<8sHHI")  # magic, version, flags (0), crc32 of the first 12 bytes
FILE_HEADER_SIZE = FILE_HEADER.size  # 16

RECORD_HEADER = struct.Struct("<4sIII")  # type, payload length, payload crc32, header crc32
RECORD_HEADER_SIZE = RECORD_HEADER.size  # 16
MAX_PAYLOAD = 256 * 1024 * 1024  # a length beyond this is corruption, not a frame

META, FRAME, RESULT, EVENT, INDEX, FOOTER = b"META", b"FRAM", b"RSLT", b"EVNT", b"INDX", b"FOOT"
RECORD_TYPES = (META, FRAME, RESULT, EVENT, INDEX, FOOTER)

# The event a recording ends with when its source was missing something (a video cut off
# before the frame count its header declares): data {"message": ...}. A replay says so.
EVENT_SOURCE_NOTICE = "source_notice"

# Frame payload: seq, index, timestamp_s, spacing x, y (NaN: unknown), width, height, codec; then pixels.
FRAME_HEAD = struct.Struct("<qqdddIIB")
CODEC_RAW, CODEC_PNG = 0, 1
CODEC_NAMES = {CODEC_RAW: "raw", CODEC_PNG: "png"}
# PNG, zlib level 1 with the run-length strategy: measured the best lossless ratio per
# millisecond on ultrasound (2.1x on simulated speckle, 4.2x on real PLUS frames, 10x on a
# grabbed screen) at ~9 ms per 640x480 frame; WebP "lossless" is not bit-exact on grey.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]

RESULT_HEAD = struct.Struct("<qB")  # seq of the frame it belongs to, encoding; then the contract line
RESULT_JSON, RESULT_ZLIB_JSON = 0, 1  # target polylines make a line 5-10 kB of JSON: zlib takes 60% off

# Index payload: offset of the previous index record (0: none), number of frames, of events;
# then per frame (frame offset, result offset or 0, timestamp_s, seq), then event offsets.
INDEX_HEAD = struct.Struct("<QII")
INDEX_ENTRY = np.dtype([("frame_offset", "<u8"), ("result_offset", "<u8"), ("t_s", "<f8"), ("seq", "<i8")])
FOOTER_BODY = struct.Struct("<QQQQ")  # offset of the last index record, frames, events, frames dropped
FOOTER_RECORD_SIZE = RECORD_HEADER_SIZE + FOOTER_BODY.size  # fixed: found at the end of the file


def file_header() -> bytes:
    head = struct.pack("<8sHH", MAGIC, FORMAT_VERSION, 0)
    return head + struct.pack("<I", zlib.crc32(head))


def parse_file_header(data: bytes) -> int:
    """The format version, or raise ValueError saying what is wrong."""
    if len(data) < FILE_HEADER_SIZE:
        raise ValueError("too short to be a recording (no file header)")
    magic, version, _flags, crc = FILE_HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("not a recording (.usrec): wrong magic bytes")
    if zlib.crc32(data[:12]) != crc:
        raise ValueError("file header is corrupt (CRC mismatch)")
    if version > FORMAT_VERSION:
        raise ValueError(f"recording format version {version} is newer than this software reads ({FORMAT_VERSION})")
    return version


def pack_record(kind: bytes, payload: bytes) -> bytes:
    head = struct.pack("<4sII", kind, len(payload), zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def parse_record_header(data: bytes, offset: int = 0) -> tuple[bytes, int, int] | None:
    """(type, payload length, payload crc) of a valid header at ``offset``, else None."""
    if len(data) - offset < RECORD_HEADER_SIZE:
        return None
    kind, length, pcrc, hcrc = RECORD_HEADER.unpack_from(data, offset)
    if zlib.crc32(data[offset:offset + 12]) != hcrc or kind not in RECORD_TYPES or length > MAX_PAYLOAD:
        return None
    return kind, length, pcrc


# --- payloads ----------------------------------------------------------------------------------

def pack_json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_json_default).encode("utf-8")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


@dataclass(frozen=True)
class FrameHead:
    seq: int
    index: int
    timestamp_s: float
    spacing_mm: tuple[float, float] | None
    width_px: int
    height_px: int
    codec: int


def pack_frame(image: np.ndarray, *, seq: int, index: int, timestamp_s: float,
               spacing_mm, codec: int = CODEC_PNG) -> bytes:
    """Frame payload: the fixed head, then the pixels (PNG, or raw rows)."""
    h, w = image.shape
    sx, sy = (float(spacing_mm[0]), float(spacing_mm[1])) if spacing_mm is not None else (math.nan, math.nan)
    if codec == CODEC_PNG:
        ok, enc = cv2.imencode(".png", image, PNG_PARAMS)
        if not ok:
            raise ValueError("PNG encoding failed")
        pixels = enc.tobytes()
    else:
        pixels = np.ascontiguousarray(image).tobytes()
    return FRAME_HEAD.pack(int(seq), int(index), float(timestamp_s), sx, sy, w, h, codec) + pixels


def unpack_frame_head(payload: bytes) -> FrameHead:
    seq, index, t, sx, sy, w, h, codec = FRAME_HEAD.unpack_from(payload)
    spacing = None if (math.isnan(sx) or math.isnan(sy)) else (sx, sy)
    return FrameHead(seq, index, t, spacing, w, h, codec)


def unpack_frame(payload: bytes) -> tuple[FrameHead, np.ndarray]:
    """The frame head and its uint8 (height, width) image; ValueError if the pixels do not decode."""
    head = unpack_frame_head(payload)
    data = memoryview(payload)[FRAME_HEAD.size:]
    if head.codec == CODEC_PNG:
        image = decode_image(data)
    elif head.codec == CODEC_RAW and len(data) == head.width_px * head.height_px:
        image = np.frombuffer(data, np.uint8).reshape(head.height_px, head.width_px).copy()
    else:
        raise ValueError(f"unknown pixel codec {head.codec}")
    if image is None or image.shape != (head.height_px, head.width_px) or image.dtype != np.uint8:
        raise ValueError("pixels do not decode to the recorded size")
    return head, image


def pack_result(seq: int, record: dict) -> bytes:
    return RESULT_HEAD.pack(int(seq), RESULT_ZLIB_JSON) + zlib.compress(pack_json(record), 1)


def unpack_result(payload: bytes) -> tuple[int, dict]:
    seq, encoding = RESULT_HEAD.unpack_from(payload)
    body = payload[RESULT_HEAD.size:]
    if encoding == RESULT_ZLIB_JSON:
        body = zlib.decompress(body)
    elif encoding != RESULT_JSON:
        raise ValueError(f"unknown result encoding {encoding}")
    return seq, json.loads(body.decode("utf-8"))


def pack_index(prev_offset: int, entries: np.ndarray, event_offsets: list[int]) -> bytes:
    entries = np.asarray(entries, dtype=INDEX_ENTRY)
    return (INDEX_HEAD.pack(int(prev_offset), len(entries), len(event_offsets)) + entries.tobytes()
            + np.asarray(event_offsets, dtype="<u8").tobytes())


def unpack_index(payload: bytes) -> tuple[int, np.ndarray, np.ndarray]:
    prev, n, m = INDEX_HEAD.unpack_from(payload)
    start = INDEX_HEAD.size
    end = start + n * INDEX_ENTRY.itemsize
    if len(payload) != end + 8 * m:
        raise ValueError("index record has the wrong length")
    entries = np.frombuffer(payload, INDEX_ENTRY, n, start)
    events = np.frombuffer(payload, "<u8", m, end)
    return prev, entries, events


def pack_footer(last_index_offset: int, frames: int, events: int, dropped: int) -> bytes:
    return FOOTER_BODY.pack(int(last_index_offset), int(frames), int(events), int(dropped))


def unpack_footer(payload: bytes) -> tuple[int, int, int, int]:
    if len(payload) != FOOTER_BODY.size:
        raise ValueError("footer has the wrong length")
    return FOOTER_BODY.unpack(payload)
