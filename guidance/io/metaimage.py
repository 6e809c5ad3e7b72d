"""MetaImage (``.mha``, ``.mhd``) reading and writing, as PLUS uses it.

A MetaImage file is a text header of ``Key = Value`` lines ending with
``ElementDataFile``, then the pixels: in the same file (``LOCAL``, ``.mha``)
or in a file beside the header (``.mhd`` + ``.raw``/``.zraw``), raw or as one
zlib stream (``CompressedData = True``). Frames are stored one after the
other, rows top to bottom, pixels left to right.

Pixels are read lazily: uncompressed data is memory-mapped, compressed data is
inflated as far as the frame asked for, so replaying a long sequence does not
hold it all in memory.
"""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

MAX_FRAMES = 1_000_000
MAX_HEADER_BYTES = 256 * 1024 * 1024
"""A header larger than this is not a header (PLUS writes about 700 bytes per frame)."""

ELEMENT_TYPES = {
    "MET_UCHAR": "u1", "MET_CHAR": "i1", "MET_USHORT": "u2", "MET_SHORT": "i2",
    "MET_UINT": "u4", "MET_INT": "i4", "MET_FLOAT": "f4", "MET_DOUBLE": "f8",
}
_TYPE_NAMES = {np.dtype(v).str[1:]: k for k, v in ELEMENT_TYPES.items()}


@dataclass(frozen=True)
class MetaHeader:
    """What the pixel reader needs from a MetaImage header, validated."""

    fields: dict[str, str]
    """Every header field in file order (frame fields included), values as text."""
    width_px: int
    height_px: int
    frames: int
    channels: int
    dtype: np.dtype
    compressed: bool
    data_path: Path
    data_offset: int
    compressed_size: int | None

    @property
    def frame_bytes(self) -> int:
        return self.width_px * self.height_px * self.channels * self.dtype.itemsize


def parse_header_lines(lines: list[bytes], where: str) -> dict[str, str]:
    """``Key = Value`` lines into an ordered dict; :class:`InputError` on a line that is neither."""
    fields: dict[str, str] = {}
    for lineno, raw in enumerate(lines, 1):
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            continue
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"{where}: header line {lineno} is not 'Key = Value': {text[:60]!r}")
        fields[key] = value.strip()
    return fields


def read_header(path: str | Path) -> MetaHeader:
    """Read and validate the header of a MetaImage file (not the pixels)."""
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        lines: list[bytes] = []
        size = 0
        while True:
            line = fh.readline(1 << 20)
            if not line:
                raise InputError(f"{path}: not a MetaImage file or truncated header (no ElementDataFile line)")
            size += len(line)
            if size > MAX_HEADER_BYTES:
                raise InputError(f"{path}: header larger than {MAX_HEADER_BYTES >> 20} MB: not a MetaImage file")
            lines.append(line)
            if line.lstrip().startswith(b"ElementDataFile"):
                break
        offset = fh.tell()
    fields = parse_header_lines(lines, str(path))
    return validate_header(fields, path, offset)


def _ints(fields: dict[str, str], key: str, where: str) -> list[int]:
    try:
        return [int(v) for v in fields[key].split()]
    except KeyError:
        raise InputError(f"{where}: header has no {key}") from None
    except ValueError:
        raise InputError(f"{where}: {key} {fields[key][:40]!r} is not whole numbers") from None


def _one_int(fields: dict[str, str], key: str, where: str) -> int:
    values = _ints(fields, key, where)
    if len(values) != 1:
        raise InputError(f"{where}: {key} {fields[key][:40]!r} is not one whole number")
    return values[0]


def _flag(fields: dict[str, str], key: str) -> bool:
    return fields.get(key, "False").strip().lower() in ("true", "1", "yes")


def validate_header(fields: dict[str, str], path: Path, data_offset: int) -> MetaHeader:
    where = str(path)
    if fields.get("ObjectType", "Image").strip().lower() != "image":
        raise InputError(f"{where}: ObjectType {fields['ObjectType']!r} is not Image")
    ndims = _ints(fields, "NDims", where)
    dims = _ints(fields, "DimSize", where)
    if len(ndims) != 1 or ndims[0] not in (2, 3) or len(dims) != ndims[0]:
        raise InputError(f"{where}: expected a 2-D image or a 3-D frame sequence, got NDims {fields.get('NDims')!r} "
                         f"and DimSize {fields.get('DimSize')!r}")
    if len(dims) == 2:
        dims.append(1)
    w, h, n = dims
    if w < 1 or h < 1 or n < 0 or w > 65535 or h > 65535:
        raise InputError(f"{where}: implausible image size {w}x{h} with {n} frames")
    etype = fields.get("ElementType", "").strip().upper()
    if etype not in ELEMENT_TYPES:
        raise InputError(f"{where}: unsupported ElementType {etype or '(missing)'!r}")
    channels = _one_int(fields, "ElementNumberOfChannels", where) if "ElementNumberOfChannels" in fields else 1
    if channels not in (1, 3, 4):
        raise InputError(f"{where}: {channels} channels per pixel; expected 1 (grey), 3 or 4 (colour)")
    big_endian = _flag(fields, "BinaryDataByteOrderMSB") or _flag(fields, "ElementByteOrderMSB")
    dtype = np.dtype(ELEMENT_TYPES[etype]).newbyteorder(">" if big_endian else "<")
    if "BinaryData" in fields and not _flag(fields, "BinaryData"):
        raise InputError(f"{where}: text (BinaryData = False) pixel data is not supported")
    data_file = fields.get("ElementDataFile", "").strip()
    if data_file.upper() == "LOCAL":
        data_path = path
    elif not data_file or data_file.upper().startswith("LIST") or "%" in data_file:
        raise InputError(f"{where}: ElementDataFile {data_file!r} is not supported (use LOCAL or one file name)")
    else:
        data_path = path.parent / data_file
        data_offset = 0
        if not data_path.is_file():
            raise InputError(f"{where}: pixel data file {data_path} is missing")
    compressed = _flag(fields, "CompressedData")
    csize = None
    if compressed and "CompressedDataSize" in fields:
        csize = _one_int(fields, "CompressedDataSize", where)
    if n > MAX_FRAMES:
        raise InputError(f"{where}: {n} frames is not plausible (at most {MAX_FRAMES})")
    if compressed:  # zlib cannot shrink data more than about 1030:1
        have = max(os.path.getsize(data_path) - data_offset, 0)
        need = w * h * n * channels * dtype.itemsize
        if need > have * 1100 + (1 << 16):
            raise InputError(f"{where}: truncated or corrupt: the header promises {need >> 20} MB of pixels, "
                             f"the file holds {have} compressed bytes")
        if csize is not None and have < csize:  # cut off (a copy or download that stopped): say so up front
            raise InputError(f"{where}: truncated: {csize} bytes of compressed pixel data expected, {have} found")
    return MetaHeader(fields, w, h, n, channels, dtype, compressed, data_path, data_offset, csize)


class MetaPixels:
    """Random access to the frames of a MetaImage file.

    ``frame(i)`` returns the stored pixels of frame ``i`` as an array of
    shape (H, W) or (H, W, C), in the file's element type.
    """

    def __init__(self, header: MetaHeader) -> None:
        self.header = header
        self._where = str(header.data_path)
        self._mmap: np.ndarray | None = None
        self._fh = None
        if header.frames == 0:
            return
        if header.compressed:
            self._fh = open(header.data_path, "rb")
            self._restart()
        else:
            need = header.frame_bytes * header.frames
            have = os.path.getsize(header.data_path) - header.data_offset
            if have < need:
                raise InputError(f"{self._where}: truncated: {need} bytes of pixel data expected, {max(have, 0)} found")
            shape = (header.frames, header.height_px, header.width_px) + ((header.channels,) if header.channels > 1 else ())
            self._mmap = np.memmap(header.data_path, dtype=header.dtype, mode="r",
                                   offset=header.data_offset, shape=shape)

    def _restart(self) -> None:
        self._fh.seek(self.header.data_offset)
        self._inflater = zlib.decompressobj()
        self._buf = bytearray()
        self._buf_frame = 0  # index of the frame at the start of _buf

    def frame(self, index: int) -> np.ndarray:
        h = self.header
        if not 0 <= index < h.frames:
            raise IndexError(index)
        shape = (h.height_px, h.width_px) + ((h.channels,) if h.channels > 1 else ())
        if self._mmap is not None:
            return np.array(self._mmap[index])  # a copy in memory: frames outlive the file mapping
        if index < self._buf_frame:  # going back: inflate again from the start
            self._restart()
        fb = h.frame_bytes
        while True:
            skip = min(index - self._buf_frame, len(self._buf) // fb)
            if skip:  # whole frames before the one asked for: drop them
                del self._buf[:skip * fb]
                self._buf_frame += skip
            if self._buf_frame == index and len(self._buf) >= fb:
                break
            self._inflate_more(index)
        return np.frombuffer(bytes(self._buf[:fb]), dtype=h.dtype).reshape(shape)

    def _inflate_more(self, index: int) -> None:
        """Append more inflated bytes to the buffer (bounded, whatever the compression ratio)."""
        src = self._inflater.unconsumed_tail or self._fh.read(1 << 20)
        try:
            data = (self._inflater.decompress(src, max(self.header.frame_bytes, 1 << 20)) if src
                    else self._inflater.flush())
        except zlib.error as exc:
            raise InputError(f"{self._where}: compressed pixel data is corrupt ({exc})") from None
        if not src and not data:
            raise InputError(f"{self._where}: truncated: compressed pixel data ends before frame {index} "
                             f"of {self.header.frames}")
        self._buf += data

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._mmap = None


def write_metaimage(path: str | Path, frames: np.ndarray, header_items: list[tuple[str, str]], *,
                    spacing_mm: tuple[float, float] | None, compress: bool = True) -> None:
    """Write frames (N, H, W) or (N, H, W, C) as a PLUS-style MetaImage sequence.

    ``.mha`` keeps the pixels in the file (``ElementDataFile = LOCAL``);
    ``.mhd`` writes them to ``<name>.raw`` or ``<name>.zraw`` beside it.
    ``header_items`` (the orientation and per-frame fields) go between the
    standard fields and ``ElementDataFile``.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4):
        raise InputError(f"{path}: expected frames of shape (N, H, W) or (N, H, W, C), got {frames.shape}")
    key = frames.dtype.str[1:]
    if key not in _TYPE_NAMES:
        raise InputError(f"{path}: cannot store {frames.dtype} pixels in MetaImage")
    n, h, w = frames.shape[:3]
    channels = frames.shape[3] if frames.ndim == 4 else 1
    data = np.ascontiguousarray(frames, dtype=frames.dtype.newbyteorder("<")).tobytes()
    payload = zlib.compress(data, 6) if compress else data
    sx, sy = spacing_mm if spacing_mm is not None else (1.0, 1.0)
    std = [
        ("ObjectType", "Image"), ("NDims", "3"), ("AnatomicalOrientation", "RAI"),
        ("BinaryData", "True"), ("BinaryDataByteOrderMSB", "False"), ("CenterOfRotation", "0 0 0"),
        ("CompressedData", "True" if compress else "False"),
    ]
    if compress:
        std.append(("CompressedDataSize", str(len(payload))))
    std += [
        ("DimSize", f"{w} {h} {n}"), ("Kinds", "domain domain list"),
        ("ElementNumberOfChannels", str(channels)),
        ("ElementSpacing", f"{_g(sx)} {_g(sy)} 1"), ("ElementType", _TYPE_NAMES[key]),
        ("Offset", "0 0 0"), ("TransformMatrix", "1 0 0 0 1 0 0 0 1"),
    ]
    if path.suffix.lower() == ".mhd":
        data_path = path.with_suffix(".zraw" if compress else ".raw")
        element_data = data_path.name
    else:
        data_path, element_data = path, "LOCAL"
    lines = [f"{k} = {v}\n" for k, v in std + list(header_items)]
    lines.append(f"ElementDataFile = {element_data}\n")
    head = "".join(lines).encode("utf-8")
    if data_path == path:
        _atomic_write(path, head, payload)
    else:
        _atomic_write(data_path, payload)
        _atomic_write(path, head)


def _g(v: float) -> str:
    v = float(v)
    if not math.isfinite(v):
        raise InputError(f"spacing {v} is not finite")
    return f"{v:.10g}"


def _atomic_write(path: Path, *parts: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "wb") as fh:
            for part in parts:
                fh.write(part)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None
