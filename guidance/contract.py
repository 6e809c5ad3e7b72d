"""The JSON Lines format of ``../shared/CONTRACT.md``: one object per frame.

Used by ``guidance detect`` (output), ``truth.jsonl`` next to sample data
(ground truth, same fields), ``guidance eval`` (reads both) and recordings.
Extend with new fields freely; never rename or remove one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import InputError
from .types import FrameResult, NeedleDetection, TargetDetection, Trajectory


def _r(v: float | None, nd: int = 2) -> float | None:
    if v is None:
        return None
    v = float(v)
    return round(v, nd) if math.isfinite(v) else None


def _pt(p, nd: int = 2) -> list[float]:
    return [round(float(p[0]), nd), round(float(p[1]), nd)]


def _pts(a: np.ndarray, nd: int = 2) -> list[list[float]]:
    return np.round(np.asarray(a, dtype=float), nd).tolist()


def needle_to_dict(n: NeedleDetection | None) -> dict | None:
    if n is None:
        return None
    return {"tip_px": _pt(n.tip_px), "shaft_px": [_pt(n.tail_px), _pt(n.tip_px)],
            "angle_deg": _r(n.angle_deg), "confidence": _r(n.confidence, 3)}


def target_to_dict(t: TargetDetection | None) -> dict | None:
    if t is None:
        return None
    return {"kind": t.kind, "surface_px": _pts(t.surface_px), "bone_px": _pts(t.bone_px),
            "cartilage_thickness_mm": _r(t.cartilage_thickness_mm)}


def trajectory_to_dict(tr: Trajectory | None) -> dict | None:
    if tr is None:
        return None
    d: dict[str, Any] = {"intercept_px": _pt(tr.intercept_px), "distance_mm": _r(tr.distance_mm),
                         "approach_deg": _r(tr.approach_deg), "distance_px": _r(tr.distance_px),
                         "tip_depth_mm": _r(tr.tip_depth_mm)}
    if tr.target_point_px is not None:
        d.update(target_point_px=_pt(tr.target_point_px), miss_depth_mm=_r(tr.miss_depth_mm),
                 miss_lateral_mm=_r(tr.miss_lateral_mm))
    return d


def result_to_record(result: FrameResult) -> dict[str, Any]:
    """The contract line for one processed frame."""
    rec: dict[str, Any] = {
        "frame": int(result.frame.index),
        "t_s": round(float(result.frame.timestamp_s), 6),
        "needle": needle_to_dict(result.needle),
        "target": target_to_dict(result.target),
        "trajectory": trajectory_to_dict(result.trajectory),
        "ms": {"total": _r(sum(result.stages_ms.values())),
               **{k: _r(v, 3) for k, v in result.stages_ms.items()}},
    }
    if result.track is not None:
        rec["tracking"] = result.track.state
    if result.alerts:
        rec["alerts"] = list(result.alerts)
    if result.region is not None:
        r = result.region
        rec["region_px"] = [r.x_px, r.y_px, r.width_px, r.height_px]
    if result.frame.spacing_mm is not None:
        rec["spacing_mm"] = [float(result.frame.spacing_mm[0]), float(result.frame.spacing_mm[1])]
    return rec


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(", ", ": "), allow_nan=False)


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the objects of a JSON Lines file, with a clear error on a bad line."""
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict) or "frame" not in obj:
                raise InputError(f"{path}:{lineno}: expected an object with a 'frame' field")
            yield obj
