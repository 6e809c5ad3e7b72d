"""Processing stages: the plug-in steps between a frame and its guidance.

A stage is any object with a ``name`` and a ``__call__(result) -> result``
that returns a new :class:`~guidance.types.FrameResult` (results are frozen:
use ``dataclasses.replace``). The pipeline times each stage under its name.
Stages may keep state across frames (the tracker does) but no global state.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .types import FrameResult


@runtime_checkable
class Stage(Protocol):
    name: str

    def __call__(self, result: FrameResult) -> FrameResult: ...


def build_stages(*, detector="auto", track: bool = True, target_point_px=None, region=None,
                 spacing_mm=None) -> list[Stage]:
    """The standard stages: imaging region, detection, tracking, guidance.

    Parameters
    ----------
    detector : str or Detector
        ``"auto"``, ``"classical"``, the path of an ONNX model (see
        ``guidance.detect.load_detector``), or a detector object.
    track : bool
        False treats every frame on its own (no tracking, no smoothing).
    target_point_px : (x, y), optional
        A user-chosen target point in frame pixels.
    region : ImagingRegion, optional
        User override of the imaging region (else found automatically).
    spacing_mm : float or (sx, sy) or "ruler", optional
        Pixel spacing that overrides whatever the source says; ``"ruler"``
        reads it from the scanner's depth ruler when the frame has none.
    """
    from .detect import DetectStage, load_detector
    from .region import RegionStage
    from .trajectory import GuidanceStage

    ruler = isinstance(spacing_mm, str) and spacing_mm == "ruler"
    stages: list[Stage] = [RegionStage(override=region, spacing_mm=None if ruler else spacing_mm, read_scale=ruler),
                           DetectStage(detector if hasattr(detector, "detect") else load_detector(detector))]
    if track:
        from .tracking import TrackStage

        stages.append(TrackStage())
    stages.append(GuidanceStage(target_point_px=target_point_px))
    return stages
