"""Per-frame fields of PLUS sequence files (``Seq_FrameNNNN_<Name> = value``).

PLUS stores one header line per frame and field, in MetaImage (``=``) and
NRRD (``:=``) headers alike: the timestamp, the image status, each
``<A>To<B>Transform`` (16 numbers, row-major 4x4) and its
``<A>To<B>TransformStatus``, and any custom field. This module turns those
lines into per-frame records and back; the file formats themselves are read
by :mod:`guidance.io.metaimage` and pynrrd.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

FRAME_FIELD = re.compile(r"^Seq_Frame(\d+)_(.+)$")
MAX_FRAMES = 10_000_000
"""More frame numbers than this in a header means the file is corrupt, not long."""


@dataclass
class FrameFields:
    """The per-frame fields of one frame, parsed.

    ``transforms`` maps a name such as ``"ProbeToTracker"`` to a 4x4 float
    matrix; ``transform_ok`` to whether its status is ``OK``. ``custom`` holds
    every other field as text. ``timestamp_s`` is ``None`` when absent.
    """

    timestamp_s: float | None = None
    image_ok: bool = True
    transforms: dict[str, np.ndarray] = field(default_factory=dict)
    transform_ok: dict[str, bool] = field(default_factory=dict)
    custom: dict[str, str] = field(default_factory=dict)


def split_frame_fields(header: dict[str, str]) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    """Separate a header's plain fields from its ``Seq_FrameNNNN_*`` fields.

    Returns ``(plain, per_frame)`` where ``per_frame[i]`` maps field names
    (without the ``Seq_FrameNNNN_`` prefix) to their text.
    """
    plain: dict[str, str] = {}
    per_frame: dict[int, dict[str, str]] = {}
    for key, value in header.items():
        m = FRAME_FIELD.match(key)
        if m is None:
            plain[key] = value
            continue
        index = int(m.group(1))
        if index >= MAX_FRAMES:
            raise InputError(f"frame field {key!r}: frame number {index} is not plausible")
        per_frame.setdefault(index, {})[m.group(2)] = str(value).strip()
    return plain, per_frame


def parse_matrix(text: str, where: str) -> np.ndarray:
    """16 numbers, row-major, into a 4x4 matrix; :class:`InputError` otherwise."""
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        raise InputError(f"{where}: transform {text[:60]!r} is not 16 numbers") from None
    if len(values) != 16 or not all(math.isfinite(v) for v in values):
        raise InputError(f"{where}: transform has {len(values)} values, expected 16 finite numbers")
    return np.array(values, dtype=float).reshape(4, 4)


def parse_frame_fields(fields: dict[str, str], where: str) -> FrameFields:
    """Interpret one frame's fields (names without the ``Seq_FrameNNNN_`` prefix)."""
    out = FrameFields()
    for name, value in fields.items():
        if name == "Timestamp":
            try:
                t = float(value)
            except ValueError:
                raise InputError(f"{where}: timestamp {value[:40]!r} is not a number") from None
            if not math.isfinite(t):
                raise InputError(f"{where}: timestamp {value[:40]!r} is not finite")
            out.timestamp_s = t
        elif name in ("ImageStatus", "Status"):  # PLUS's NRRD writer has used both names
            out.image_ok = out.image_ok and value.strip().upper() == "OK"
        elif name.endswith("TransformStatus"):
            out.transform_ok[name[: -len("TransformStatus")]] = value.strip().upper() == "OK"
        elif name.endswith("Transform") and len(name) > len("Transform"):
            out.transforms[name[: -len("Transform")]] = parse_matrix(value, f"{where} {name}")
        else:
            out.custom[name] = value
    for name in out.transforms:  # a transform without a status line is taken as valid, as PLUS does
        out.transform_ok.setdefault(name, True)
    return out


def format_matrix(matrix: np.ndarray) -> str:
    m = np.asarray(matrix, dtype=float).reshape(4, 4)
    return " ".join(_num(v) for v in m.ravel())


def _num(v: float) -> str:
    return f"{float(v):.10g}"


def format_frame_fields(index: int, frame: FrameFields,
                        status_names: tuple[str, ...] = ("ImageStatus",)) -> list[tuple[str, str]]:
    """The ``(key, value)`` header entries of one frame, in PLUS's order.

    PLUS's MetaImage files name the image status ``ImageStatus``, its NRRD
    files ``Status``: ``status_names`` says which to write.
    """
    prefix = f"Seq_Frame{index:04d}_"
    items: list[tuple[str, str]] = []
    for name, matrix in frame.transforms.items():
        items.append((f"{prefix}{name}Transform", format_matrix(matrix)))
        ok = frame.transform_ok.get(name, True)
        items.append((f"{prefix}{name}TransformStatus", "OK" if ok else "INVALID"))
    for name, value in frame.custom.items():
        text = str(value)
        if "\n" in text or "\r" in text:
            raise InputError(f"custom field {name!r}: a header value cannot span lines")
        items.append((f"{prefix}{name}", text))
    if frame.timestamp_s is not None:
        items.append((f"{prefix}Timestamp", f"{float(frame.timestamp_s):.6f}"))
    for name in status_names:
        items.append((f"{prefix}{name}", "OK" if frame.image_ok else "INVALID"))
    return items


def check_field_name(name: str) -> None:
    """Field names go into a header line: letters, digits and underscores only."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name or ""):
        raise InputError(f"field name {name!r}: use letters, digits and underscores only")
