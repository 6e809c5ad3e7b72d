"""What the player plays: frames by index, the guidance as recorded, and event marks.

A recording (``.usrec``) gives random access to its frames, the contract
line shown live for each, and its events. Any other file the sources can read
is loaded frame by frame (up to ``MAX_FILE_FRAMES``); it has no recorded
guidance, only guidance recomputed with the current model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guidance.errors import InputError
from guidance.types import (Detection, Frame, FrameResult, ImagingRegion, NeedleDetection, NeedleTrack,
                            TargetDetection, Trajectory)

MAX_FILE_FRAMES = 3000


@dataclass(frozen=True)
class Mark:
    """An event on the timeline: at frame ``index``, of ``kind`` (needle_lost, alert, injection, ...)."""

    index: int
    kind: str
    label: str = ""


class ReplayData:
    """Frames, recorded guidance and marks of one file, by frame index."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.name = Path(path).name
        self.metadata: dict = {}
        self.marks: list[Mark] = []
        self._reader = None
        self._frames: list[Frame] = []
        if str(path).lower().endswith(".usrec"):
            self._open_recording()
        else:
            self._load_file()
        if len(self) == 0:
            raise InputError(f"{self.path}: holds no frames")
        ts = np.asarray([self.timestamp_s(i) for i in range(len(self))], dtype=float)
        self.timestamps_s = ts
        dt = np.diff(ts)
        dt = dt[dt > 0]
        self.fps = float(1.0 / np.median(dt)) if len(dt) else 30.0

    # -- loading -----------------------------------------------------------
    def _open_recording(self) -> None:
        try:
            try:
                from guidance.recording import RecordingReader
            except ImportError:
                from guidance.recording.reader import RecordingReader
        except ImportError as exc:
            raise InputError(f"{self.path}: recordings cannot be read here ({exc})") from None
        self._reader = RecordingReader(self.path)
        self.metadata = dict(getattr(self._reader, "metadata", {}) or {})
        self.marks = self._recording_marks()

    def _load_file(self) -> None:
        from guidance.sources import open_source

        source = open_source(self.path, realtime=False, loop=False)
        with source:
            while len(self._frames) < MAX_FILE_FRAMES:
                frame = source.read()
                if frame is None:
                    break
                self._frames.append(frame)
        self.metadata = {"source": self.path}

    def _recording_marks(self) -> list[Mark]:
        marks: list[Mark] = []
        n = len(self._reader)
        ts_attr = getattr(self._reader, "timestamps_s", None)
        ts = np.asarray(ts_attr if ts_attr is not None else [], dtype=float)
        for ev in list(getattr(self._reader, "events", None) or []):
            ev = ev if isinstance(ev, dict) else getattr(ev, "__dict__", {})
            kind = str(ev.get("kind") or ev.get("type") or "event")
            data = ev.get("data") or {}
            index = ev.get("frame", data.get("frame") if isinstance(data, dict) else None)
            if index is None and ev.get("t_s") is not None and len(ts):
                index = int(np.clip(np.searchsorted(ts, float(ev["t_s"])), 0, n - 1))
            if index is not None:
                marks.append(Mark(int(np.clip(index, 0, n - 1)), kind, kind.replace("_", " ")))
        # Alerts as recorded per frame: mark where each begins.
        previous: set[str] = set()
        for i in range(n):
            rec = self.record(i) or {}
            alerts = set(rec.get("alerts") or ())
            for alert in sorted(alerts - previous):
                if not any(m.index == i and m.kind == alert for m in marks):
                    marks.append(Mark(i, alert, alert.replace("_", " ")))
            previous = alerts
        return sorted(marks, key=lambda m: m.index)

    # -- access ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._reader) if self._reader is not None else len(self._frames)

    @property
    def has_recorded_guidance(self) -> bool:
        return self._reader is not None

    def frame(self, i: int) -> Frame:
        return self._reader.frame(i) if self._reader is not None else self._frames[i]

    def record(self, i: int) -> dict | None:
        return self._reader.record(i) if self._reader is not None else None

    def timestamp_s(self, i: int) -> float:
        if self._reader is not None:
            ts = getattr(self._reader, "timestamps_s", None)
            if ts is not None and len(ts) > i:
                return float(ts[i])
            return float(self.frame(i).timestamp_s)
        return float(self._frames[i].timestamp_s)

    def recorded_result(self, i: int) -> FrameResult | None:
        """The guidance as shown live on frame ``i`` (None without a recording)."""
        rec = self.record(i)
        return None if rec is None else record_to_result(rec, self.frame(i))


def _arr(points) -> np.ndarray:
    return np.asarray(points if points else np.zeros((0, 2)), dtype=float).reshape(-1, 2)


def record_to_result(record: dict, frame: Frame) -> FrameResult:
    """Rebuild a :class:`FrameResult` from a contract line (as written by ``result_to_record``).

    ``received_s`` stays 0: replayed guidance has no live age.
    """
    needle = None
    n = record.get("needle")
    if n:
        shaft = n.get("shaft_px") or [n["tip_px"], n["tip_px"]]
        needle = NeedleDetection(tuple(n["tip_px"]), tuple(shaft[0]), float(n.get("confidence") or 0.0))
    target = None
    t = record.get("target")
    if t:
        target = TargetDetection(t.get("kind", "bone"), _arr(t.get("surface_px")), _arr(t.get("bone_px")),
                                 t.get("cartilage_thickness_mm"))
    traj = None
    tr = record.get("trajectory")
    if tr:
        traj = Trajectory(tuple(tr["intercept_px"]), tr.get("distance_mm"), float(tr.get("distance_px") or 0.0),
                          float(tr.get("approach_deg") or 0.0), tr.get("tip_depth_mm"),
                          target_point_px=tuple(tr["target_point_px"]) if tr.get("target_point_px") else None,
                          miss_depth_mm=tr.get("miss_depth_mm"), miss_lateral_mm=tr.get("miss_lateral_mm"))
    track = None
    if record.get("tracking"):
        state = record["tracking"]
        track = NeedleTrack(state, needle if state != "lost" else None)
    region = None
    if record.get("region_px"):
        region = ImagingRegion(*(int(v) for v in record["region_px"]))
    return FrameResult(frame, region=region, detection=Detection(needle, target, "recorded"), track=track,
                       trajectory=traj, alerts=tuple(record.get("alerts") or ()),
                       stages_ms=dict(record.get("ms") or {}))
