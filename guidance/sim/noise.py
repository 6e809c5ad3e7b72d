"""Smooth random fields used to build tissue textures, fast.

Textures (fat septa, tendon fibrils, muscle streaks, wavy layer boundaries) are
level sets or exponentials of band-limited Gaussian noise. Drawing white noise
on a coarse grid and resizing it with cubic interpolation is far cheaper than
blurring a full-size field with a wide kernel and looks the same.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], corr_x_px: float,
                 corr_y_px: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian noise with the given correlation lengths.

    Parameters
    ----------
    rng : numpy Generator
    shape : (rows, cols)
    corr_x_px, corr_y_px : float
        Correlation length (about one blob size) along x and y, in pixels.

    Returns
    -------
    (rows, cols) float32 array.
    """
    h, w = shape
    cx = max(float(corr_x_px), 1.0)
    cy = max(float(corr_y_px), 1.0)
    gh = int(math.ceil(h / cy)) + 4
    gw = int(math.ceil(w / cx)) + 4
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    # Resize so that one coarse cell spans corr px, then crop the centre.
    big = cv2.resize(coarse, (int(round(gw * cx)), int(round(gh * cy))), interpolation=cv2.INTER_CUBIC)
    y0 = int(round(2 * cy)) // 2
    x0 = int(round(2 * cx)) // 2
    out = big[y0:y0 + h, x0:x0 + w]
    if out.shape != (h, w):  # rounding at tiny sizes
        out = cv2.resize(big, (w, h), interpolation=cv2.INTER_LINEAR)
    out = out - out.mean()
    sd = float(out.std())
    return (out / sd if sd > 0 else out).astype(np.float32)


def smooth_curve(rng: np.random.Generator, n: int, corr_px: float) -> np.ndarray:
    """Zero-mean, unit-variance smooth 1-D random curve of length ``n``."""
    return smooth_noise(rng, (1, n), corr_px, 1.0)[0]


def level_lines(field: np.ndarray, width: float) -> np.ndarray:
    """Thin bright curves along the zero level set of a smooth field (0-1).

    ``width`` is in units of the field's standard deviation; smaller is thinner.
    """
    return np.exp(-(field / width) ** 2).astype(np.float32)
