"""Sources read with OpenCV: capture devices and streams, video files, images.

A capture device (``cv2.VideoCapture`` by index or URL) is what a frame
grabber or capture card on an ultrasound machine looks like. Video files,
image folders and single images are for offline work and tests.

Every source converts its frames to 2-D uint8 grey (colour by luminance,
16-bit scaled; see :func:`~guidance.sources.base.to_gray_u8`) and accepts
``spacing_mm`` (a number or ``(sx, sy)``, millimetres per pixel).
"""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path

import cv2
import numpy as np

from ..io.images import decode_image
from ..errors import FrameFormatError, InputError, SourceDisconnected
from ..types import Frame, Spacing
from .base import SourceBase, to_gray_u8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# FFmpeg writes its own complaints ("moov atom not found") to stderr; our InputError says it in one line.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

DEFAULT_STILL_FPS = 30.0
"""Frame rate assumed for image folders without ``fps``: tracking needs a time base."""


def quiet_opencv_warnings() -> None:
    """Keep OpenCV's own warnings off the terminal (its errors still show).

    For the commands that keep reopening a lost device or stream: OpenCV warns on
    every failed attempt, burying the one line that says what is wrong.
    """
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def as_spacing(value, where: str = "spacing") -> Spacing | None:
    """Normalise a spacing option: None, one number (square pixels) or (sx, sy), in mm per pixel."""
    if value is None:
        return None
    if isinstance(value, (int, float, np.floating, np.integer)):
        sx = sy = float(value)
    else:
        try:
            sx, sy = (float(v) for v in value)
        except (TypeError, ValueError):
            raise InputError(f"{where}: pixel spacing {value!r} is not a number or a pair (sx, sy) in mm") from None
    if not (math.isfinite(sx) and math.isfinite(sy) and sx > 0 and sy > 0):
        raise InputError(f"{where}: pixel spacing {value!r} mm must be positive")
    return (sx, sy)


class _Pacer:
    """Sleeps so that frames leave at their own timestamps (for ``realtime`` file playback)."""

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = float(speed) if speed and speed > 0 else 1.0
        self._start: tuple[float, float] | None = None  # (monotonic, media time)

    def wait(self, timestamp_s: float) -> None:
        now = time.monotonic()
        if self._start is None or timestamp_s < self._start[1]:
            self._start = (now, timestamp_s)
            return
        due = self._start[0] + (timestamp_s - self._start[1]) / self.speed
        if due > now:
            time.sleep(due - now)
        elif now - due > 1.0:  # fell far behind (paused, slow disk): restart the clock
            self._start = (now, timestamp_s)


class CaptureSource(SourceBase):
    """A capture device (``"0"``, ``"/dev/video2"``) or a stream URL (``rtsp://...``).

    ``read`` raises :class:`SourceDisconnected` when the device stops
    delivering; the live pipeline reopens it with backoff. Frames that decode
    to something that is not an image raise :class:`FrameFormatError` (the
    pipeline skips them). Timestamps are seconds on the monotonic clock since
    the source was opened.

    Parameters
    ----------
    spec : str or int
        Device index, device path or URL.
    spacing_mm : float or (float, float), optional
        Pixel spacing, when known from the scanner's settings.
    width_px, height_px, fps : optional
        Capture format to request from the device (the device may refuse).
    timeout_s : float
        Open and read timeout requested from network backends.
    """

    is_live = True

    def __init__(self, spec, *, spacing_mm=None, width_px: int | None = None, height_px: int | None = None,
                 fps: float | None = None, timeout_s: float = 5.0, **_ignored) -> None:
        super().__init__()
        text = str(spec).strip()
        self._target: int | str = int(text) if re.fullmatch(r"\d+", text) else text
        self.name = f"capture device {text}" if isinstance(self._target, int) else text
        self.spacing_mm = as_spacing(spacing_mm, self.name)
        self._request = (width_px, height_px, fps)
        self._timeout_ms = int(timeout_s * 1000)
        self._cap: cv2.VideoCapture | None = None
        self._t0 = 0.0
        self._index = 0
        self._size: tuple[int, int] | None = None
        self._fps: float | None = None

    @property
    def nominal_fps(self) -> float | None:
        return self._fps

    @property
    def frame_size_px(self) -> tuple[int, int] | None:
        return self._size

    def open(self) -> None:
        self.close()
        cap = None
        if isinstance(self._target, str):
            # Streams: FFmpeg with bounded open/read times, so a dead server cannot hang a read for long.
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self._timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, self._timeout_ms]
            cap = self._try_open(cv2.CAP_FFMPEG, params)
        if cap is None:
            # Devices (or a stream FFmpeg cannot take): whatever backend fits, without parameters,
            # because OpenCV refuses to open when a backend does not support one of them.
            cap = self._try_open(cv2.CAP_ANY, [])
        if cap is None:
            raise SourceDisconnected(f"{self.name}: cannot open (no such device, in use, or stream unreachable)")
        width, height, fps = self._request
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        got_fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = float(got_fps) if got_fps and 0 < got_fps < 1000 else None
        self._cap, self._t0, self._index = cap, time.monotonic(), 0

    def _try_open(self, backend: int, params: list[int]) -> cv2.VideoCapture | None:
        try:
            cap = cv2.VideoCapture(self._target, backend, params)
        except cv2.error:
            return None
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceDisconnected(f"{self.name}: not open")
        try:
            ok, image = self._cap.read()
        except cv2.error as exc:
            raise SourceDisconnected(f"{self.name}: read failed ({_cv_reason(exc)})") from None
        if not ok or image is None:
            raise SourceDisconnected(f"{self.name}: no frame (device disconnected or stream ended)")
        t_s = time.monotonic() - self._t0
        index = self._index
        self._index += 1
        frame = self.make_frame(image, t_s, index)  # FrameFormatError on a garbage frame
        self._size = (frame.width_px, frame.height_px)
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class VideoFileSource(SourceBase):
    """A video file (``.mp4``, ``.avi``, ``.mkv``), frame by frame.

    Timestamps come from the container (``CAP_PROP_POS_MSEC``), falling back
    to ``index / fps`` where the container gives none.

    Parameters
    ----------
    realtime : bool
        Pace frames at their timestamps (``speed`` times faster), as a live
        scanner would deliver them. Off by default: as fast as decoding goes.
    loop : bool
        Start again at the end (timestamps keep increasing).
    """

    def __init__(self, spec, *, spacing_mm=None, realtime: bool = False, speed: float = 1.0,
                 loop: bool = False, **_ignored) -> None:
        super().__init__()
        self.path = Path(spec)
        self.name = str(spec)
        self.spacing_mm = as_spacing(spacing_mm, self.name)
        self.realtime = bool(realtime)
        self.is_live = self.realtime
        self.loop = bool(loop)
        self._pacer = _Pacer(speed)
        self._cap: cv2.VideoCapture | None = None
        self._fps: float | None = None
        self._size: tuple[int, int] | None = None
        self._count: int | None = None
        self._index = 0
        self._last_t_s = -math.inf
        self._loop_offset_s = 0.0

    @property
    def nominal_fps(self) -> float | None:
        return self._fps

    @property
    def frame_size_px(self) -> tuple[int, int] | None:
        return self._size

    @property
    def frame_count(self) -> int | None:
        """Frames in the file as the container reports it (may be an estimate)."""
        return self._count

    def __len__(self) -> int:
        return self._count or 0

    def open(self) -> None:
        self.close()
        if not self.path.is_file():
            raise InputError(f"{self.name}: no such video file")
        try:
            cap = cv2.VideoCapture(str(self.path))
        except cv2.error as exc:
            raise InputError(f"{self.name}: cannot open video ({_cv_reason(exc)})") from None
        if not cap.isOpened():
            cap.release()
            raise InputError(f"{self.name}: cannot open as a video (corrupt, empty or unsupported codec)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = float(fps) if fps and 0 < fps < 1000 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._count = count if count > 0 else None
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._size = (width, height) if width > 0 and height > 0 else None
        self._cap, self._index, self._last_t_s, self._loop_offset_s = cap, 0, -math.inf, 0.0

    def read(self) -> Frame | None:
        if self._cap is None:
            self.open()
        assert self._cap is not None
        ok, image = self._read_raw()
        if not ok and self._index > 0 and self._loop_offset_s == 0.0 and self._count \
                and self._count - self._index > max(2, self._count // 50):
            # The first end came well before the frame count the header declares (some containers
            # only estimate it: a frame or two short is not news). Said once, looping or not.
            self.notice = (f"the video ends after {self._index} of the {self._count} frames its header "
                           f"declares: it was cut off or is damaged")
        if not ok and self.loop and self._index > 0:
            self._loop_offset_s = self._last_t_s + 1.0 / (self._fps or DEFAULT_STILL_FPS)
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._index = 0
            ok, image = self._read_raw()
        if not ok:
            if self._index == 0 and self._loop_offset_s == 0.0:
                raise InputError(f"{self.name}: no frame could be decoded (corrupt or unsupported video)")
            return None
        t_s = self._timestamp_s()
        frame = self.make_frame(image, t_s, self._index)
        self._index += 1
        self._last_t_s = t_s
        if self.realtime:
            self._pacer.wait(t_s)
        return frame

    def _read_raw(self):
        try:
            return self._cap.read()
        except cv2.error as exc:
            raise InputError(f"{self.name}: frame {self._index} cannot be decoded ({_cv_reason(exc)})") from None

    def _timestamp_s(self) -> float:
        pos_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        t_s = self._loop_offset_s + pos_ms / 1000.0
        fallback = self._loop_offset_s + self._index / (self._fps or DEFAULT_STILL_FPS)
        # Containers without timestamps report 0 (or go backwards): use the frame rate instead.
        if not math.isfinite(t_s) or (self._index > 0 and pos_ms <= 0) or t_s <= self._last_t_s:
            t_s = max(fallback, self._last_t_s + 1e-6)
        return t_s

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def read_image(path: Path | str) -> np.ndarray:
    """Decode one image file as stored (8- or 16-bit, grey or colour).

    Raises :class:`InputError` naming the file when it cannot be read or decoded.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise InputError(f"{path}: file is empty")
    try:
        image = decode_image(data)
    except cv2.error as exc:
        raise InputError(f"{path}: cannot decode image ({_cv_reason(exc)})") from None
    if image is None:
        raise InputError(f"{path}: cannot decode image (corrupt or not an image)")
    return image


class ImageFolderSource(SourceBase):
    """The image files of a folder (``.png .jpg .bmp .tif``), sorted by file name.

    Timestamps are ``index / fps`` (``fps`` defaults to 30). A file that cannot
    be decoded raises :class:`InputError` naming it.
    """

    def __init__(self, spec, *, spacing_mm=None, fps: float | None = None, realtime: bool = False,
                 loop: bool = False, **_ignored) -> None:
        super().__init__()
        self.folder = Path(spec)
        self.name = str(spec)
        self.spacing_mm = as_spacing(spacing_mm, self.name)
        self._fps = float(fps) if fps and fps > 0 else DEFAULT_STILL_FPS
        self.realtime = bool(realtime)
        self.is_live = self.realtime
        self.loop = bool(loop)
        self._pacer = _Pacer()
        self._files: list[Path] | None = None
        self._pos = 0
        self._size: tuple[int, int] | None = None

    @property
    def nominal_fps(self) -> float | None:
        return self._fps

    @property
    def frame_size_px(self) -> tuple[int, int] | None:
        return self._size

    @property
    def files(self) -> list[Path]:
        if self._files is None:
            self.open()
        return list(self._files or [])

    def __len__(self) -> int:
        return len(self.files)

    def open(self) -> None:
        if not self.folder.is_dir():
            raise InputError(f"{self.name}: no such folder")
        try:
            entries = list(os.scandir(self.folder))
        except OSError as exc:
            raise InputError(f"{self.name}: cannot list folder ({exc.strerror or exc})") from None
        files = sorted((Path(e.path) for e in entries
                        if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES) and not e.name.startswith(".")),
                       key=lambda p: p.name)
        if not files:
            raise InputError(f"{self.name}: folder holds no image files ({' '.join(IMAGE_SUFFIXES)})")
        self._files, self._pos = files, 0

    def read(self) -> Frame | None:
        if self._files is None:
            self.open()
        assert self._files is not None
        if self._pos >= len(self._files):
            if not self.loop:
                return None
        index = self._pos % len(self._files)
        path = self._files[index]
        image = read_image(path)
        t_s = self._pos / self._fps
        try:
            frame = self.make_frame(image, t_s, index)
        except FrameFormatError as exc:
            raise InputError(f"{path}: {_after_colon(exc)}") from None
        self._pos += 1
        self._size = (frame.width_px, frame.height_px)
        if self.realtime:
            self._pacer.wait(t_s)
        return frame

    def close(self) -> None:
        pass


class ImageFileSource(SourceBase):
    """One image file as a one-frame source (``loop`` repeats it, for a live view)."""

    def __init__(self, spec, *, spacing_mm=None, loop: bool = False, fps: float | None = None,
                 realtime: bool = False, **_ignored) -> None:
        super().__init__()
        self.path = Path(spec)
        self.name = str(spec)
        self.spacing_mm = as_spacing(spacing_mm, self.name)
        self.loop = bool(loop)
        self._fps = float(fps) if fps and fps > 0 else DEFAULT_STILL_FPS
        self.realtime = bool(realtime)
        self.is_live = self.realtime
        self._pacer = _Pacer()
        self._image: np.ndarray | None = None
        self._pos = 0

    @property
    def nominal_fps(self) -> float | None:
        return self._fps

    @property
    def frame_size_px(self) -> tuple[int, int] | None:
        return None if self._image is None else (int(self._image.shape[1]), int(self._image.shape[0]))

    def __len__(self) -> int:
        return 1

    def open(self) -> None:
        if not self.path.is_file():
            raise InputError(f"{self.name}: no such image file")
        try:
            self._image = to_gray_u8(read_image(self.path), self.name)
        except FrameFormatError as exc:
            raise InputError(f"{self.path}: {_after_colon(exc)}") from None
        self._pos = 0

    def read(self) -> Frame | None:
        if self._image is None:
            self.open()
        if self._pos >= 1 and not self.loop:
            return None
        t_s = self._pos / self._fps
        frame = self.make_frame(self._image, t_s, self._pos)
        self._pos += 1
        if self.realtime:
            self._pacer.wait(t_s)
        return frame


def _cv_reason(exc: cv2.error) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else "OpenCV error")[:200]


def _after_colon(exc: Exception) -> str:
    """The reason part of a 'where: reason' message."""
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text
