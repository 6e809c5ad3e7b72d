"""Building the processing stages the UI runs, and finding the parts it talks to."""

from __future__ import annotations

import inspect

from guidance.types import Spacing


def make_stages(*, detector: str = "auto", track: bool = True, target_point_px=None,
                spacing_mm: Spacing | None = None) -> list:
    """The full stage list (region, detect, track, guidance) as ``guidance.stages.build_stages`` makes it.

    Falls back to assembling whichever stages exist while parts of the core
    are still missing, so the viewer always shows at least the image.
    """
    try:
        from guidance.stages import build_stages
    except ImportError:
        build_stages = None
    if build_stages is not None:
        kwargs = dict(detector=detector, track=track, target_point_px=target_point_px, spacing_mm=spacing_mm)
        accepted = inspect.signature(build_stages).parameters
        return list(build_stages(**{k: v for k, v in kwargs.items() if k in accepted}))
    stages: list = []
    try:
        from guidance.detect import DetectStage, load_detector
        stages.append(DetectStage(load_detector(detector)))
    except ImportError:
        pass
    if track:
        try:
            from guidance.tracking import TrackStage
            stages.append(TrackStage())
        except ImportError:
            pass
    try:
        from guidance.trajectory import GuidanceStage
        stages.append(GuidanceStage(target_point_px=target_point_px))
    except ImportError:
        pass
    return stages


def find_stage(stages, name: str):
    """The stage called ``name`` in ``stages``, or None."""
    return next((s for s in stages if getattr(s, "name", None) == name), None)


def model_name(stages) -> str:
    """The detector in use, as shown in the status bar."""
    det = find_stage(stages, "detect")
    if det is None:
        return "no detector"
    detector = getattr(det, "detector", None)
    return str(getattr(detector, "name", None) or type(detector or det).__name__)
