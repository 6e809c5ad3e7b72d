"""Golden outputs: the pipeline's guidance on each sample, stored to catch any change in behaviour.

``tests/golden/<name>.jsonl`` holds, per frame, the contract fields that must
replay exactly (:data:`GUIDANCE_KEYS`: no timings); ``<name>.meta.json`` says
what produced them (detector, model hash, a hash of the frames), so a failing
comparison can say whether the frames, the model or the code changed.
Refresh on purpose with ``python tests/refresh_golden.py``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..contract import dumps, read_jsonl, result_to_record
from .samples import ReplaySample

GUIDANCE_KEYS = ("frame", "t_s", "needle", "target", "trajectory", "tracking", "alerts", "region_px", "spacing_mm")


def guidance_of(line: dict) -> dict:
    """The part of a contract line that must replay exactly (not the timings)."""
    return {k: line.get(k) for k in GUIDANCE_KEYS}


def run_sample(sample: ReplaySample, detector: str = "auto") -> tuple[list[dict], dict]:
    """(guidance lines, provenance) of the standard pipeline over every frame of ``sample``."""
    from ..pipeline import run_offline
    from ..stages import build_stages
    from .session_meta import describe_stages

    stages = build_stages(detector=detector, spacing_mm=sample.spacing_mm)
    frames_hash = hashlib.sha256()
    lines = []
    for result in run_offline(sample.source(), stages):
        frames_hash.update(result.frame.image.tobytes())
        lines.append(guidance_of(result_to_record(result)))
    info = describe_stages(stages)
    return lines, {"sample": sample.name, "frames": len(lines), "frames_sha256": frames_hash.hexdigest(),
                   "detector": info["detector"], "model_sha256": info["model_sha256"]}


def write_golden(folder: str | Path, name: str, lines: list[dict], provenance: dict) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jsonl"
    path.write_text("".join(dumps(line) + "\n" for line in lines), encoding="utf-8")
    (folder / f"{name}.meta.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return path


def read_golden(folder: str | Path, name: str) -> tuple[list[dict], dict] | None:
    folder = Path(folder)
    path = folder / f"{name}.jsonl"
    if not path.is_file():
        return None
    meta_path = folder / f"{name}.meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    return list(read_jsonl(path)), meta


def same_guidance(a, b, tol: float = 0.2) -> bool:
    """``a`` and ``b`` equal in structure, strings and flags, and in numbers to within ``tol``.

    The stored outputs are compared on other machines and library versions too,
    where onnxruntime and OpenCV may pick other kernels and round differently
    (OpenCV 5.0 against 4.x moved needle ends by up to 0.05 px on the committed
    samples); a real change of behaviour moves numbers by far more than ``tol``
    (px, mm, deg).
    """
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_guidance(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_guidance(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= tol
    return a == b


def explain_difference(expected: list[dict], got: list[dict], expected_meta: dict, got_meta: dict) -> str:
    """One paragraph saying where outputs first differ and what changed underneath."""
    why = [f"{k} changed ({expected_meta.get(k)} -> {got_meta.get(k)})"
           for k in ("frames", "frames_sha256", "detector", "model_sha256") if expected_meta.get(k) != got_meta.get(k)]
    first = next((i for i, (a, b) in enumerate(zip(expected, got)) if not same_guidance(a, b)),
                 min(len(expected), len(got)))
    detail = ""
    if first < min(len(expected), len(got)):
        keys = [k for k in GUIDANCE_KEYS if not same_guidance(expected[first].get(k), got[first].get(k))]
        detail = f"; first difference at frame {first} in {keys}"
    n_diff = sum(not same_guidance(a, b) for a, b in zip(expected, got)) + abs(len(expected) - len(got))
    return (f"{got_meta.get('sample')}: {n_diff} of {len(expected)} frames differ from the stored output{detail}; "
            + ("; ".join(why) if why else "same frames and model: the code's behaviour changed")
            + ". If intended, refresh with: python tests/refresh_golden.py")
