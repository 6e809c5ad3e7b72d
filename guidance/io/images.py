"""Decoding still images (PNG, JPEG, BMP, TIFF) with OpenCV, quietly."""

from __future__ import annotations

import cv2
import numpy as np


def decode_image(data: np.ndarray | bytes | memoryview, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray | None:
    """The decoded image, or None when ``data`` is not a whole image.

    OpenCV's own log lines are held back while decoding ("readHeader IHDR
    chunk shall be first", "libpng error"): the caller names the file and says
    what is wrong in one line, and OpenCV's lines would bury it. cv2.error
    propagates.
    """
    buf = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
    log = cv2.utils.logging
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(buf, flags)
    finally:
        log.setLogLevel(level)
