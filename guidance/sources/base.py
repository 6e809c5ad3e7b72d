"""The one protocol every frame source follows, and frame conversion.

A source is opened, read frame by frame until it ends (``read`` returns
``None``), and closed. It is a context manager. Live sources (devices,
streams) may raise :class:`~guidance.errors.SourceDisconnected` from ``read``;
the live pipeline reopens them with backoff.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from ..errors import FrameFormatError
from ..types import Frame, Spacing


@runtime_checkable
class FrameSource(Protocol):
    name: str
    """Human-readable description of the source (file name, device, URL)."""
    notice: str
    """What a file source is missing (cut off, damaged), once known; "" when nothing is."""

    @property
    def nominal_fps(self) -> float | None: ...

    @property
    def frame_size_px(self) -> tuple[int, int] | None:
        """(width, height) in pixels once known."""

    @property
    def is_live(self) -> bool:
        """True for devices and streams (frames arrive in real time and may stall)."""

    def open(self) -> None: ...

    def read(self) -> Frame | None:
        """The next frame, or None at the end of a finite source."""

    def close(self) -> None: ...

    def __enter__(self) -> "FrameSource": ...

    def __exit__(self, *exc) -> None: ...


class SourceBase:
    """Shared plumbing: context manager, sequence numbers, frame building."""

    name: str = "source"
    is_live: bool = False
    spacing_mm: Spacing | None = None
    notice: str = ""
    """What a file source is missing (a recording or video cut off or damaged), once known; "" when nothing is."""

    def __init__(self) -> None:
        self._seq = 0

    @property
    def nominal_fps(self) -> float | None:
        return None

    @property
    def frame_size_px(self) -> tuple[int, int] | None:
        return None

    def open(self) -> None:  # pragma: no cover - trivial default
        pass

    def close(self) -> None:  # pragma: no cover - trivial default
        pass

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def make_frame(self, image: np.ndarray, timestamp_s: float, index: int,
                   spacing_mm: Spacing | None = None) -> Frame:
        """Convert ``image`` to grey uint8 and wrap it with the next sequence number."""
        frame = Frame(to_gray_u8(image, self.name), float(timestamp_s), int(index), self._seq,
                      spacing_mm if spacing_mm is not None else self.spacing_mm, self.name)
        self._seq += 1
        return frame


def to_gray_u8(image: np.ndarray, where: str = "frame") -> np.ndarray:
    """Convert a decoded image to a contiguous 2-D uint8 grey image.

    Colour (BGR or BGRA, as OpenCV decodes) becomes grey by luminance; 16-bit
    images are scaled to 0-255 by the bits they use (8, 12 or 16); float
    images in 0-1 or 0-255 are taken as grey levels, any other float range
    (a log envelope in dB, raw amplitudes) is mapped from its own minimum and
    maximum. Anything else raises :class:`FrameFormatError` naming ``where``.
    """
    if not isinstance(image, np.ndarray):
        raise FrameFormatError(f"{where}: expected an image array, got {type(image).__name__}")
    img = image
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3:
        if img.shape[2] == 3:
            img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2GRAY)
        elif img.shape[2] == 4:
            img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGRA2GRAY)
        else:
            raise FrameFormatError(f"{where}: image with {img.shape[2]} channels is neither grey nor colour")
    if img.ndim != 2:
        raise FrameFormatError(f"{where}: expected a 2-D image, got an array of shape {image.shape}")
    if img.size == 0:
        raise FrameFormatError(f"{where}: image is empty")
    if img.dtype == np.uint8:
        return np.ascontiguousarray(img)
    if img.dtype == bool:
        return img.astype(np.uint8) * 255
    if img.dtype in (np.uint16, np.int16, np.uint32, np.int32):
        # Fixed scales, not per-frame min/max, so brightness does not flicker:
        # values up to 255 are 8-bit data in a wide type, up to 4095 12-bit.
        hi = int(img.max())
        full = 255 if hi <= 255 else 4095 if hi <= 4095 else 65535 if hi <= 65535 else max(hi, 1)
        return np.clip(img.astype(np.float32) * (255.0 / full) + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        f = img.astype(np.float32)
        if not np.isfinite(f).all():
            raise FrameFormatError(f"{where}: image holds NaN or infinite values")
        lo, hi = float(f.min()), float(f.max())
        if lo < 0.0 or hi > 255.0:
            # Not grey levels: a simulator's log envelope in dB (-60 to 0), or raw amplitudes.
            # Clipping would leave a dB image black; its own range maps to 0-255.
            return np.clip((f - lo) * (255.0 / max(hi - lo, 1e-12)) + 0.5, 0, 255).astype(np.uint8)
        scale = 255.0 if hi <= 1.0 else 1.0  # floats in 0-1, else already grey levels
        return np.clip(f * scale + 0.5, 0, 255).astype(np.uint8)
    raise FrameFormatError(f"{where}: unsupported pixel type {img.dtype}")
