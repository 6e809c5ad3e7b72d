"""Follow-up cartilage thickness from the target detector, in millimetres.

Thickness at a point of the cartilage surface is its shortest distance to the
bone surface (so a sloped or curved trochlea is not over-measured as a
vertical gap would be). Over a sequence, frames are sampled evenly, the
per-point values are pooled and binned along x (1 mm bins), giving a median
and a profile along the surface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import binned_statistic

from ..errors import InputError
from ..types import Spacing, TargetDetection
from .series import point_polyline_distance
from .session import session_fingerprint


def thickness_along_surface(target: TargetDetection, spacing_mm: Spacing) -> tuple[np.ndarray, np.ndarray]:
    """Cartilage thickness (mm) at each point of the cartilage surface.

    Parameters
    ----------
    target : TargetDetection
        ``surface_px`` the cartilage top, ``bone_px`` the bone surface, (N, 2) pixels.
    spacing_mm : (sx, sy)

    Returns
    -------
    surface_px : (M, 2) float
        The surface points that lie above a stretch of bone.
    thickness_mm : (M,) float
    """
    surf = np.asarray(target.surface_px, float).reshape(-1, 2)
    bone = np.asarray(target.bone_px, float).reshape(-1, 2)
    if target.kind != "cartilage" or len(surf) == 0 or len(bone) < 2:
        return np.zeros((0, 2)), np.zeros(0)
    k = np.asarray(spacing_mm, float)
    over = (surf[:, 0] >= bone[:, 0].min()) & (surf[:, 0] <= bone[:, 0].max())
    surf = surf[over]
    polys = np.broadcast_to(bone * k, (len(surf),) + bone.shape)
    d, _ = point_polyline_distance(surf * k, polys)
    return surf, d


@dataclass
class CartilageMeasurement:
    source_name: str
    detector: str
    spacing_mm: Spacing
    frames_used: int
    frames_with_cartilage: int
    median_mm: float | None
    iqr_mm: tuple[float, float] | None
    position_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Distance along the (binned median) cartilage surface from its left end."""
    profile_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Median thickness in each 1 mm bin, at ``position_mm``."""

    def profile_list(self) -> list[list[float]]:
        return np.round(np.stack([self.position_mm, self.profile_mm], axis=1), 3).tolist() \
            if len(self.profile_mm) else []

    def to_dict(self) -> dict:
        return {"source": self.source_name, "detector": self.detector, "spacing_mm": list(self.spacing_mm),
                "frames_used": self.frames_used, "frames_with_cartilage": self.frames_with_cartilage,
                "median_thickness_mm": None if self.median_mm is None else round(self.median_mm, 3),
                "iqr_mm": None if self.iqr_mm is None else [round(v, 3) for v in self.iqr_mm],
                "profile_mm": self.profile_list()}

    def summary(self) -> str:
        if self.median_mm is None:
            return (f"{self.source_name}: no cartilage band found in {self.frames_used} frame(s) "
                    f"(detector {self.detector}); nothing measured")
        lines = [f"{self.source_name}: cartilage thickness median {self.median_mm:.2f} mm "
                 f"(IQR {self.iqr_mm[0]:.2f}-{self.iqr_mm[1]:.2f} mm) over {self.frames_with_cartilage}/"
                 f"{self.frames_used} frame(s), detector {self.detector}, spacing "
                 f"{self.spacing_mm[0]:.4f}x{self.spacing_mm[1]:.4f} mm/px",
                 "along the surface (mm from the left end: thickness mm):"]
        pick = np.unique(np.linspace(0, len(self.profile_mm) - 1, min(12, len(self.profile_mm))).astype(int))
        lines.append("  " + "  ".join(f"{self.position_mm[i]:.0f}:{self.profile_mm[i]:.2f}" for i in pick))
        return "\n".join(lines)


def measure_targets(targets: list[TargetDetection | None], spacing_mm: Spacing, *, source_name: str = "",
                    detector: str = "", bin_mm: float = 1.0) -> CartilageMeasurement:
    """Pool the thickness of several detections of the same view into one measurement."""
    xs, ys, ts = [], [], []
    with_cart = 0
    for t in targets:
        if t is None:
            continue
        pts, th = thickness_along_surface(t, spacing_mm)
        if len(th):
            with_cart += 1
            xs.append(pts[:, 0]), ys.append(pts[:, 1]), ts.append(th)
    m = CartilageMeasurement(source_name, detector, tuple(spacing_mm), len(targets), with_cart, None, None)
    if not ts:
        return m
    x, y, th = np.concatenate(xs), np.concatenate(ys), np.concatenate(ts)
    m.median_mm = float(np.median(th))
    m.iqr_mm = (float(np.percentile(th, 25)), float(np.percentile(th, 75)))
    sx, sy = spacing_mm
    nbins = max(1, int(np.ceil((x.max() - x.min()) * sx / bin_mm)))
    stat = lambda v: binned_statistic(x, v, statistic="median", bins=nbins)[0]  # noqa: E731
    bx, by, bt = stat(x), stat(y), stat(th)
    ok = np.isfinite(bt)
    bx, by, bt = bx[ok], by[ok], bt[ok]
    step = np.hypot(np.diff(bx) * sx, np.diff(by) * sy)
    m.position_mm = np.concatenate([[0.0], np.cumsum(step)])
    m.profile_mm = bt
    return m


def _frames(spec: str, spacing_mm, max_frames: int):
    from ..sources import classify_spec, open_source

    kind = classify_spec(spec)
    if kind in ("device", "igtl"):
        raise InputError(f"{spec}: measure needs a file (image, recording, video, PLUS, DICOM), not a live source")
    opts = {"realtime": False}
    if spacing_mm is not None:
        opts["spacing_mm"] = spacing_mm
    frames = []
    with open_source(spec, **opts) as src:
        total = None
        try:
            total = len(src)
        except TypeError:
            pass
        stride = max(1, (total or 0) // max(1, max_frames))
        i = 0
        while len(frames) < max_frames:
            fr = src.read()
            if fr is None:
                break
            if i % stride == 0:
                frames.append(fr)
            i += 1
    if not frames:
        raise InputError(f"{spec}: no frames to measure")
    return frames


def _region_and_scale(image: np.ndarray, want_ruler: bool):
    """Imaging region (when guidance.region can find it) and, if asked, the depth ruler's mm/px."""
    try:
        from ..region import find_imaging_region, read_depth_scale
    except ImportError:
        return None, None
    region = find_imaging_region(image)
    return region, (read_depth_scale(image, region) if want_ruler else None)


def measure_input(spec: str | Path, *, spacing_mm: Spacing | str | None = None, detector: str = "auto",
                  max_frames: int = 30) -> CartilageMeasurement:
    """Measure cartilage thickness on a file with the project's target detector.

    Spacing: ``spacing_mm`` if given as numbers, else the input's own; with
    ``spacing_mm="ruler"`` the scanner's depth ruler on a grabbed screen when
    the input has none (off unless asked: a misread ruler is worse than none).
    Without any, an :class:`InputError` asks for it.
    """
    from ..detect import load_detector

    spec = str(spec)
    want_ruler = spacing_mm == "ruler"
    fixed = None if want_ruler else spacing_mm
    frames = _frames(spec, fixed, max_frames)
    det = load_detector(detector)
    region, ruler_mm = _region_and_scale(frames[0].image, want_ruler and frames[0].spacing_mm is None)
    spacing = fixed or frames[0].spacing_mm or ((ruler_mm, ruler_mm) if ruler_mm else None)
    if spacing is None:
        why = "no depth ruler found on the screen" if want_ruler else "none in the input"
        raise InputError(f"{spec}: pixel spacing unknown ({why}): give --spacing MM (or --spacing ruler "
                         "for a grabbed scanner screen)")
    targets = [det.detect(f.image, spacing_mm=spacing, region=region).target for f in frames]
    # named by content, not by file name: a file name may name the patient
    fp = Path(spec)
    name = f"input {session_fingerprint(fp)}" if fp.is_file() else "input"
    return measure_targets(targets, spacing, source_name=name, detector=det.name)
