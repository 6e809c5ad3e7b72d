"""Continuous reflectors (a needle's walls) imaged by steered plane waves, in closed form.

Our speckle is formed in baseband on the pixel grid, which cannot hold the
radio-frequency carrier (two to three radians per pixel in depth). A wall's
echo, though, is decided by that carrier: each point of a straight reflector
returns with the round-trip phase K . r of the transmit and receive directions,
and only where the wall's normal is near the bisector of a transmit and a
receive direction do the points along it add in phase. Simulators that image
reflectors point by point (PyMUST's SIMUS, Field II) show this: a flat wall is
bright, a steeper one fades to its two ends, and several transmit and receive
angles catching it a little differently beat into fringes along the shaft.

For a straight segment of uniform amplitude under a Gaussian point-spread
function the integral along the segment has a closed form (complex error
functions, computed stably with the Faddeeva function), so the field is exact
at every pixel with no carrier on the grid.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import wofz


def round_trip_wavevectors(spacing_mm: float, wavelength_mm: float, tx_deg: np.ndarray,
                           rx_half_deg: float, n_rx: int = 5) -> np.ndarray:
    """Wavevectors (P, 2), rad per px (x right, y down), of the (transmit, receive) direction pairs
    of plane waves steered at ``tx_deg`` and received within ``rx_half_deg`` of the probe's axis."""
    k = 2 * math.pi / wavelength_mm * spacing_mm
    tx = np.radians(np.asarray(tx_deg, np.float64))
    rx = np.radians(np.linspace(-rx_half_deg, rx_half_deg, n_rx))
    a, b = (v.ravel() for v in np.meshgrid(tx, rx))
    return np.column_stack([k * (np.sin(a) + np.sin(b)), k * (np.cos(a) + np.cos(b))])


def _scaled_erf(x: np.ndarray, y: float) -> np.ndarray:
    """exp(-y^2) * erf(x + iy) without overflow (x real array, y real)."""
    # For x >= 0: exp(-y^2) - exp(-x^2 - 2ixy) w(-y + ix), with w the Faddeeva function, bounded in
    # the upper half-plane. erf is odd, so x < 0 is the same at (-x, -y), negated.
    sign = np.where(x < 0, -1.0, 1.0)
    ax, ys = np.abs(x), y * sign
    return sign * (np.exp(-y * y) - np.exp(-ax * ax - 2j * ax * ys) * wofz(-ys + 1j * ax))


def wall_field(pixels_px: np.ndarray, start_px: np.ndarray, direction: np.ndarray, length_px: float,
               amplitude: np.ndarray, sigma_px: tuple[float, float], wavevectors: np.ndarray,
               carrier: float) -> np.ndarray:
    """Baseband field (N,) complex at ``pixels_px`` (N, 2) of a straight wall.

    The wall runs from ``start_px`` along the unit ``direction`` for
    ``length_px``, with ``amplitude`` (M,) per px of length sampled evenly
    along it; ``sigma_px`` (lateral, axial) is the Gaussian point-spread
    function's width; ``wavevectors`` (P, 2) the round-trip pairs (compounded
    coherently, averaged) and ``carrier`` the axial carrier (rad/px) the
    baseband field omits. Slowly varying amplitude is taken at each pixel's
    foot on the wall.
    """
    sx, sy = sigma_px
    q = pixels_px - start_px[None, :]
    dx, dy = float(direction[0]), float(direction[1])
    a = dx * dx / sx ** 2 + dy * dy / sy ** 2
    b = q[:, 0] * dx / sx ** 2 + q[:, 1] * dy / sy ** 2
    c = q[:, 0] ** 2 / sx ** 2 + q[:, 1] ** 2 / sy ** 2
    t0 = b / a
    envelope = np.exp(-0.5 * np.maximum(c - b * b / a, 0.0)) * math.sqrt(math.pi / (2 * a))
    r = math.sqrt(a / 2)
    x0, x1 = -t0 * r, (length_px - t0) * r
    foot = np.clip(t0, 0.0, length_px) / max(length_px, 1e-9) * (len(amplitude) - 1)
    amp = np.interp(foot, np.arange(len(amplitude)), amplitude)
    total = np.zeros(len(q), np.complex128)
    for kx, ky in wavevectors:  # a few dozen pairs; each is vectorized over the pixels
        w = kx * dx + ky * dy   # the phase's rate along the wall
        y = w / (2 * r)         # = w / sqrt(2a)
        along = _scaled_erf(x1, y) - _scaled_erf(x0, y)
        # K . q - w t0: the pair's phase from the pixel's foot on the wall to the pixel; the carrier
        # (common to all pairs) is what the baseband field leaves out
        total += along * np.exp(1j * (kx * q[:, 0] + ky * q[:, 1] - w * t0 - carrier * pixels_px[:, 1]))
    # normalised like the grid's separable kernels (each L2-normalised in 1-D)
    norm = 1.0 / math.sqrt(math.pi * sx * sy) / len(wavevectors)
    return total * envelope * amp * norm
