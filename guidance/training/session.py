"""A session to score: its contract records, events, metadata and frames.

Loaded from a project recording (``.usrec``, through
:class:`guidance.recording.RecordingReader`), or from contract JSON Lines
(``guidance detect`` output or a ``truth.jsonl``; no frames then). Only
whitelisted metadata leaves this module (see :func:`safe_metadata`): nothing
that could identify a patient reaches a report, a database or the terminal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputError
from ..types import (Detection, Frame, FrameResult, ImagingRegion, NeedleDetection, NeedleTrack,
                     TargetDetection, Trajectory)

#: metadata fields allowed out of a recording (technical only, never who or when exactly)
METADATA_WHITELIST = ("software_version", "format_version", "source_kind", "scenario", "seed", "fps",
                      "size_px", "width_px", "height_px", "spacing_mm", "detector", "model", "frames")


@dataclass
class Session:
    """Records (one contract dict per frame), events and an optional frame provider."""

    records: Sequence[dict]
    events: list[dict] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    image_of: Callable[[int], np.ndarray] | None = None
    session_id: str = ""

    def __len__(self) -> int:
        return len(self.records)

    def image(self, i: int) -> np.ndarray | None:
        """Grey uint8 image of row ``i``, or None when the session has no frames."""
        return None if self.image_of is None else self.image_of(i)


def session_fingerprint(path: Path) -> str:
    """Short ID of a file's content (SHA-256 of its size and first MiB): names no one."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
    return h.hexdigest()[:12]


def safe_metadata(meta: dict[str, Any] | None) -> dict[str, Any]:
    """Only the whitelisted technical fields, with simple JSON values."""
    out: dict[str, Any] = {}
    for k in METADATA_WHITELIST:
        v = (meta or {}).get(k)
        if isinstance(v, (int, float, str)) and not isinstance(v, bool):
            out[k] = v if not isinstance(v, str) else v[:64]
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v) and len(v) <= 4:
            out[k] = list(v)
    return out


MAX_PROCESSED_FRAMES = 20000


def load_session(path: str | Path, *, detector: str = "auto", spacing_mm=None) -> Session:
    """Open a recording, a contract JSON Lines file, or any other input as a :class:`Session`.

    A recording (``.usrec``) gives the guidance as shown live and its events;
    JSON Lines give records only (no frames). Any other input the sources read
    (a video, a PLUS or DICOM file, ``sim:SCENARIO:SEED``) is run through the
    detection and tracking pipeline now, with ``detector``; its frames are
    kept JPEG-compressed in memory for the report's pictures.
    """
    from ..contract import read_jsonl

    spec = str(path)
    p = Path(path)
    if not p.exists() and not spec.lower().startswith("sim"):
        raise InputError(f"{p}: no such file")
    if p.suffix.lower() not in (".jsonl", ".json", ".usrec") and not p.is_dir():
        return _processed_session(spec, detector, spacing_mm)
    if p.suffix.lower() in (".jsonl", ".json"):
        records = list(read_jsonl(p))
        if not records:
            raise InputError(f"{p}: no records")
        return Session(records, [], {"source_kind": "jsonl"}, None, session_fingerprint(p))
    try:
        from ..recording import RecordingReader
    except ImportError:
        raise InputError(f"{p}: recordings cannot be read by this build (guidance.recording missing)") from None
    reader = RecordingReader(p)
    n = len(reader)
    if n == 0:
        raise InputError(f"{p}: the recording has no frames")
    records = _LazyRecords(reader)
    return Session(records, list(getattr(reader, "events", []) or []), dict(reader.metadata or {}),
                   lambda i: reader.frame(i).image, session_fingerprint(p))


def _processed_session(spec: str, detector: str, spacing_mm) -> Session:
    import cv2

    from ..contract import result_to_record
    from ..pipeline import run_offline
    from ..sources import classify_spec, open_source
    from ..stages import build_stages

    kind = classify_spec(spec)
    if kind in ("device", "igtl"):
        raise InputError(f"{spec}: a live source cannot be scored; record it first")
    opts = {"realtime": False}
    if spacing_mm is not None:
        opts["spacing_mm"] = spacing_mm
    records, jpegs = [], []
    for result in run_offline(open_source(spec, **opts), build_stages(detector=detector, spacing_mm=spacing_mm)):
        records.append(result_to_record(result))
        jpegs.append(cv2.imencode(".jpg", result.frame.image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1])
        if len(records) >= MAX_PROCESSED_FRAMES:
            break
    if not records:
        raise InputError(f"{spec}: no frames")
    name = spec if kind == "sim" else None
    fid = (spec.replace(":", "-")[:32] if name
           else session_fingerprint(Path(spec)) if Path(spec).is_file() else "")
    meta = {"source_kind": kind, "frames": len(records)}
    return Session(records, [], meta, lambda i: cv2.imdecode(jpegs[i], cv2.IMREAD_GRAYSCALE), fid)


class _LazyRecords(Sequence):
    """The reader's records, read once on first use and cached."""

    def __init__(self, reader):
        self._reader = reader
        self._cache: list[dict] | None = None

    def _all(self) -> list[dict]:
        if self._cache is None:
            self._cache = [self._reader.record(i) for i in range(len(self._reader))]
        return self._cache

    def __len__(self) -> int:
        return len(self._reader)

    def __getitem__(self, i):
        return self._all()[i]


def record_to_result(record: dict, image: np.ndarray, spacing_mm=None) -> FrameResult:
    """Rebuild a :class:`FrameResult` from a contract record and its frame (for overlays)."""
    sp = record.get("spacing_mm") or spacing_mm
    frame = Frame(image=image, timestamp_s=float(record.get("t_s", 0.0)), index=int(record.get("frame", 0)),
                  seq=int(record.get("frame", 0)), spacing_mm=tuple(sp) if sp else None, source="replay")
    nd = record.get("needle")
    needle = None
    if nd:
        shaft = nd.get("shaft_px") or [nd["tip_px"], nd["tip_px"]]
        needle = NeedleDetection(tuple(nd["tip_px"]), tuple(shaft[0]), float(nd.get("confidence") or 0.0))
    tg = record.get("target")
    target = None
    if tg and tg.get("surface_px"):
        target = TargetDetection(tg.get("kind", "bone"), np.asarray(tg["surface_px"], float).reshape(-1, 2),
                                 np.asarray(tg.get("bone_px") or tg["surface_px"], float).reshape(-1, 2),
                                 tg.get("cartilage_thickness_mm"))
    trd = record.get("trajectory")
    traj = None
    if trd and trd.get("intercept_px"):
        traj = Trajectory(tuple(trd["intercept_px"]), trd.get("distance_mm"), float(trd.get("distance_px") or 0.0),
                          float(trd.get("approach_deg") or 0.0), trd.get("tip_depth_mm"),
                          target_point_px=tuple(trd["target_point_px"]) if trd.get("target_point_px") else None,
                          miss_depth_mm=trd.get("miss_depth_mm"), miss_lateral_mm=trd.get("miss_lateral_mm"))
    track = None
    if record.get("tracking"):
        track = NeedleTrack(state=record["tracking"], needle=needle)
    region = ImagingRegion(*record["region_px"]) if record.get("region_px") else None
    return FrameResult(frame=frame, region=region, detection=Detection(needle, target, "recorded"),
                       track=track, trajectory=traj, alerts=tuple(record.get("alerts") or ()))
