"""The plain dataclasses that carry data one way through the pipeline.

source -> :class:`Frame` -> detect (:class:`Detection`) -> track (:class:`NeedleTrack`)
-> guidance (:class:`Trajectory`) -> overlay / record / UI, all gathered per
frame in one :class:`FrameResult`.

Units are in the names: ``*_px`` are pixels of the frame as grabbed (x right,
y down, centre of the top-left pixel at 0,0), ``*_mm`` millimetres, ``*_s``
seconds, ``*_ms`` milliseconds, ``*_deg`` degrees. Point arrays are float
arrays of shape (N, 2) holding (x, y).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .errors import FrameFormatError

Spacing = tuple[float, float]
"""Pixel spacing (sx_mm, sy_mm): millimetres per pixel along x and along y."""

PointPx = tuple[float, float]


@dataclass(frozen=True)
class ImagingRegion:
    """The rectangle of a grabbed frame that holds the ultrasound image, in frame pixels.

    A frame grabber sees the scanner's whole screen: text, logos, rulers. Only
    the pixels inside this box are ultrasound.
    """

    x_px: int
    y_px: int
    width_px: int
    height_px: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, cols) slices that cut the region out of a frame image."""
        return (slice(self.y_px, self.y_px + self.height_px),
                slice(self.x_px, self.x_px + self.width_px))

    def clip_to(self, height_px: int, width_px: int) -> "ImagingRegion":
        x0 = min(max(self.x_px, 0), width_px - 1)
        y0 = min(max(self.y_px, 0), height_px - 1)
        x1 = min(max(self.x_px + self.width_px, x0 + 1), width_px)
        y1 = min(max(self.y_px + self.height_px, y0 + 1), height_px)
        return ImagingRegion(x0, y0, x1 - x0, y1 - y0)

    @classmethod
    def full(cls, image: np.ndarray) -> "ImagingRegion":
        return cls(0, 0, int(image.shape[1]), int(image.shape[0]))

    @classmethod
    def parse(cls, text: str) -> "ImagingRegion":
        """Parse ``X,Y,W,H`` (pixels), as given on the command line."""
        try:
            x, y, w, h = (int(round(float(v))) for v in text.split(","))
        except ValueError:
            raise FrameFormatError(f"imaging region {text!r}: expected X,Y,W,H in pixels") from None
        if w <= 0 or h <= 0:
            raise FrameFormatError(f"imaging region {text!r}: width and height must be positive")
        return cls(x, y, w, h)


@dataclass(frozen=True, eq=False)
class Frame:
    """One grey ultrasound frame as it left its source.

    ``index`` is the source's own frame number (a file's frame number, a
    device's counter); ``seq`` is the pipeline's sequence number, which only
    increases, even across a source reconnecting or a replay looping.
    """

    image: np.ndarray
    timestamp_s: float
    index: int
    seq: int
    spacing_mm: Spacing | None = None
    source: str = ""

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.ndim != 2 or img.dtype != np.uint8:
            got = (f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray)
                   else type(img).__name__)
            raise FrameFormatError(f"{self.source or 'frame'}: expected a 2-D uint8 image, got {got}")
        if img.shape[0] < 8 or img.shape[1] < 8:
            raise FrameFormatError(f"{self.source or 'frame'}: image of {img.shape[1]}x{img.shape[0]} px is too small")
        if self.spacing_mm is not None:
            sx, sy = self.spacing_mm
            if not (math.isfinite(sx) and math.isfinite(sy) and sx > 0 and sy > 0):
                raise FrameFormatError(f"{self.source or 'frame'}: pixel spacing {self.spacing_mm} mm is not positive")

    @property
    def height_px(self) -> int:
        return int(self.image.shape[0])

    @property
    def width_px(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class NeedleDetection:
    """The needle seen in one frame.

    ``tail_px`` is the visible end of the shaft farthest from the tip; the
    shaft runs from tail to tip.
    """

    tip_px: PointPx
    tail_px: PointPx
    confidence: float

    @property
    def angle_deg(self) -> float:
        """Direction from tail toward tip, atan2(dy, dx) in image coordinates."""
        return math.degrees(math.atan2(self.tip_px[1] - self.tail_px[1], self.tip_px[0] - self.tail_px[0]))

    @property
    def direction(self) -> np.ndarray:
        """Unit vector (dx, dy) from tail toward tip, in pixels."""
        d = np.subtract(self.tip_px, self.tail_px, dtype=float)
        n = float(np.hypot(*d))
        return d / n if n > 0 else np.array([1.0, 0.0])


@dataclass(frozen=True, eq=False)
class TargetDetection:
    """The surfaces the needle may be aimed at.

    ``surface_px`` is the surface the needle is aimed at: the top of the
    cartilage where cartilage is seen (``kind == "cartilage"``), else the bone
    surface (``kind == "bone"``). ``bone_px`` is the bone surface. Both are
    (N, 2) float arrays of (x, y) ordered by increasing x.
    """

    kind: Literal["cartilage", "bone"]
    surface_px: np.ndarray
    bone_px: np.ndarray
    cartilage_thickness_mm: float | None = None
    confidence: float = 1.0


@dataclass(frozen=True)
class Detection:
    """What the detector saw in one frame (no memory of other frames)."""

    needle: NeedleDetection | None = None
    target: TargetDetection | None = None
    detector: str = ""


TrackingState = Literal["tracking", "coasting", "lost"]


@dataclass(frozen=True)
class NeedleTrack:
    """The needle after temporal filtering.

    ``needle`` is ``None`` when the state is ``lost``: a lost needle is never
    invented. ``angle_sd_deg`` is the shaft-angle uncertainty (one standard
    deviation) used for the uncertainty cone, ``tip_across_sd_px`` the tip's
    uncertainty across the shaft (the cone's width at the tip). ``confirmed`` is False while the
    track rests on too few detections to be trusted (maybe a spurious one):
    losing such a track is not worth an alert.
    """

    state: TrackingState
    needle: NeedleDetection | None
    tip_velocity_px_s: PointPx = (0.0, 0.0)
    angle_sd_deg: float = 0.0
    frames_since_detection: int = 0
    confirmed: bool = True
    tip_across_sd_px: float = 0.0


@dataclass(frozen=True)
class Trajectory:
    """The needle's path extended beyond the tip to the target surface."""

    intercept_px: PointPx
    distance_mm: float | None
    distance_px: float
    approach_deg: float
    tip_depth_mm: float | None = None
    cone_px: tuple[tuple[PointPx, PointPx], tuple[PointPx, PointPx]] | None = None
    """Two lines (start, end) bounding the uncertainty cone."""
    target_point_px: PointPx | None = None
    miss_depth_mm: float | None = None
    miss_lateral_mm: float | None = None


@dataclass(frozen=True, eq=False)
class FrameResult:
    """Everything computed on one frame. Results of later stages attach here.

    Guidance belongs to ``frame`` and to no other: anything drawn from this
    result must be drawn on this frame only.
    """

    frame: Frame
    region: ImagingRegion | None = None
    detection: Detection | None = None
    track: NeedleTrack | None = None
    trajectory: Trajectory | None = None
    alerts: tuple[str, ...] = ()
    stages_ms: dict[str, float] = field(default_factory=dict)
    received_s: float = 0.0
    """Monotonic clock (time.monotonic) when the pipeline received the frame."""

    @property
    def needle(self) -> NeedleDetection | None:
        """The needle to show: the tracked one when tracking ran, else the detected one."""
        if self.track is not None:
            return self.track.needle
        return self.detection.needle if self.detection else None

    @property
    def target(self) -> TargetDetection | None:
        return self.detection.target if self.detection else None
