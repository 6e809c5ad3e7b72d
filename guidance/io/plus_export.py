"""Our recordings as PLUS sequences, for 3D Slicer and PLUS.

``guidance export REC --plus OUT.seq.nrrd`` lands here: frames keep their
pixels (declared MF), each frame gets its timestamp, the detections as custom
per-frame fields and the needle tip as the ``NeedleTipToImage`` transform.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError
from .plus import NEEDLE_TRANSFORM, write_sequence


def needle_transform(tip_px: Sequence[float], angle_deg: float) -> np.ndarray:
    """NeedleTipToImage: the needle tip frame in image pixel coordinates.

    Origin at the tip; +x along the shaft from tail toward tip (the direction
    of travel), +y perpendicular in the image plane, +z out of plane. Units
    are image pixels, PLUS's convention for the Image coordinate system (its
    ImageToProbe calibration carries the mm scaling).
    """
    a = math.radians(float(angle_deg))
    c, s = math.cos(a), math.sin(a)
    m = np.eye(4)
    m[:3, 0] = (c, s, 0.0)
    m[:3, 1] = (-s, c, 0.0)
    m[:3, 3] = (float(tip_px[0]), float(tip_px[1]), 0.0)
    return m


def record_fields(record: Mapping[str, Any]) -> dict[str, str]:
    """Custom per-frame fields for one contract record (each a short header line)."""
    out: dict[str, str] = {}
    needle = record.get("needle")
    if needle:
        tip = needle.get("tip_px")
        out["NeedleTipPx"] = f"{tip[0]:.2f} {tip[1]:.2f}"
        shaft = needle.get("shaft_px") or []
        if shaft:
            out["NeedleTailPx"] = f"{shaft[0][0]:.2f} {shaft[0][1]:.2f}"
        out["NeedleAngleDeg"] = _fmt(needle.get("angle_deg"))
        out["NeedleConfidence"] = _fmt(needle.get("confidence"))
    target = record.get("target")
    if target:
        out["TargetKind"] = str(target.get("kind"))
        surface = np.asarray(target.get("surface_px") or [], dtype=float).reshape(-1, 2)
        if len(surface):
            pick = surface[np.linspace(0, len(surface) - 1, min(16, len(surface))).round().astype(int)]
            out["TargetSurfacePx"] = " ".join(f"{x:.1f},{y:.1f}" for x, y in pick)
        if target.get("cartilage_thickness_mm") is not None:
            out["CartilageThicknessMm"] = _fmt(target["cartilage_thickness_mm"])
    traj = record.get("trajectory")
    if traj:
        ip = traj.get("intercept_px")
        if ip:
            out["InterceptPx"] = f"{ip[0]:.2f} {ip[1]:.2f}"
        for key, name in (("distance_mm", "DistanceMm"), ("approach_deg", "ApproachDeg"),
                          ("distance_px", "DistancePx")):
            if traj.get(key) is not None:
                out[name] = _fmt(traj[key])
    if record.get("tracking"):
        out["Tracking"] = str(record["tracking"])
    if record.get("alerts"):
        out["Alerts"] = " ".join(str(a) for a in record["alerts"])
    return {k: v for k, v in out.items() if v != ""}


def _fmt(v) -> str:
    return "" if v is None else f"{float(v):.4g}"


def export_recording_to_plus(reader, out_path: str | Path, *, compress: bool = True) -> Path:
    """Write one of our recordings as a PLUS sequence that 3D Slicer opens.

    ``reader`` is a :class:`guidance.recording.RecordingReader` (anything
    with ``len()``, ``.frame(i) -> Frame`` and ``.record(i) -> dict``). Frames
    keep their pixels (declared MF); each frame gets its timestamp, the
    detections as custom fields (``NeedleTipPx``, ``InterceptPx``,
    ``DistanceMm``, ... see :func:`record_fields`) and the needle tip as the
    ``NeedleTipToImage`` transform (status INVALID where no needle was shown).
    """
    out_path = Path(out_path)
    n = len(reader)
    if n == 0:
        raise InputError(f"{out_path}: the recording has no frames to export")
    first = reader.frame(0)
    h, w = first.image.shape[:2]
    frames = np.empty((n, h, w), np.uint8)
    ts, mats, custom = [], [], []
    for i in range(n):
        frame = first if i == 0 else reader.frame(i)
        if frame.image.shape[:2] != (h, w):
            raise InputError(f"{out_path}: frame {i} is {frame.image.shape[1]}x{frame.image.shape[0]} px, "
                             f"frame 0 {w}x{h}: a PLUS sequence needs one frame size")
        frames[i] = frame.image
        ts.append(frame.timestamp_s)
        record = reader.record(i) or {}
        needle = record.get("needle")
        mats.append(needle_transform(needle["tip_px"], needle.get("angle_deg") or 0.0) if needle else None)
        fields = record_fields(record)
        fields["FrameIndex"] = str(record.get("frame", frame.index))
        custom.append(fields)
    return write_sequence(out_path, frames, {NEEDLE_TRANSFORM: mats}, custom, timestamps_s=ts,
                          spacing_mm=first.spacing_mm, compress=compress)
