"""Needle and target detection: one frame in, a :class:`~guidance.types.Detection` out.

Two detectors share one interface: the ONNX segmentation model
(:mod:`.model`, the committed ``models/needle_target.onnx``) and the classical
baseline (:mod:`.classical`: ridge filter + Hough for the needle, brightest
ridge above the shadow for the bone), which runs when no model is available.
Both crop to the imaging region when one is given and report coordinates in
full-frame pixels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ModelError
from ..types import Detection, FrameResult, ImagingRegion, Spacing

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "needle_target.onnx"
# A second, differently trained network: the committed detector asks it about uncertain needles.
SECOND_OPINION_MODEL = DEFAULT_MODEL.with_name("needle_target_wide.onnx")


@runtime_checkable
class Detector(Protocol):
    name: str

    def detect(self, image_u8: np.ndarray, spacing_mm: Spacing | None = None,
               region: ImagingRegion | None = None) -> Detection: ...


def load_detector(model: str | Path | None = "auto") -> Detector:
    """The detector named by ``model``.

    ``"auto"`` (or None): the committed ONNX model with its second opinion
    (:data:`SECOND_OPINION_MODEL`) when both are present and loadable, else
    the committed model alone, else the classical baseline. ``"classical"``:
    the baseline. Any other value: the path of an ONNX model, used alone
    (:class:`~guidance.errors.ModelError` when it is missing, corrupt or of
    the wrong shape).
    """
    from .classical import ClassicalDetector

    if model is None or str(model) == "auto":
        for second in (SECOND_OPINION_MODEL, None):
            try:
                return _model_detector(DEFAULT_MODEL, second)
            except (ModelError, ImportError):
                pass  # fall back to less rather than refuse to run
        return ClassicalDetector()
    if str(model) == "classical":
        return ClassicalDetector()
    return _model_detector(Path(model))


def _model_detector(path: Path, second_opinion: Path | None = None) -> Detector:
    from .model import ModelDetector

    return ModelDetector(path, second_opinion=second_opinion)


class DetectStage:
    """Pipeline stage: runs a detector on the frame (inside ``result.region`` when set)."""

    name = "detect"

    def __init__(self, detector: Detector | str | None = "auto") -> None:
        self.detector = detector if isinstance(detector, Detector) and not isinstance(detector, str) \
            else load_detector(detector)

    def __call__(self, result: FrameResult) -> FrameResult:
        frame = result.frame
        det = self.detector.detect(frame.image, spacing_mm=frame.spacing_mm, region=result.region)
        return dataclasses.replace(result, detection=det)


__all__ = ["Detector", "DetectStage", "load_detector", "DEFAULT_MODEL", "SECOND_OPINION_MODEL"]
