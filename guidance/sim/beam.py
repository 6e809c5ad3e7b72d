"""B-mode image formation: point-spread function, gain, log compression.

The received echo is modelled in baseband (IQ): complex scatterer amplitudes
convolved with a separable point-spread function, axial (a short Gabor-like
pulse) times lateral (Gaussian beam). The lateral width follows a focused
linear array: narrowest at the focal depth, wider above and below; the axial
pulse lengthens a little with depth (frequency-dependent attenuation lowers the
centre frequency). A depth-varying PSF is applied as a few depth bands, each a
fast ``cv2.sepFilter2D``, blended linearly between band centres. The envelope
is the magnitude of the filtered IQ field; speckle then has the Rayleigh
statistics of real fully developed speckle.

Typical values for a 7-15 MHz linear probe (c = 1540 m/s): wavelength
0.10-0.22 mm, axial resolution (envelope FWHM) 0.15-0.35 mm, lateral FWHM
0.3-0.6 mm at focus and 2-3 times that far from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


def gabor_kernel(sigma_px: float, cycles_per_px: float = 0.0, truncate: float = 3.0) -> np.ndarray:
    """A Gaussian (times a cosine when ``cycles_per_px`` > 0), L2-normalised, float32."""
    sigma_px = max(float(sigma_px), 0.35)
    half = max(1, int(math.ceil(truncate * sigma_px)))
    t = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma_px) ** 2)
    if cycles_per_px > 0:
        k = k * np.cos(2 * math.pi * cycles_per_px * t)
    return (k / np.sqrt(np.sum(k * k))).astype(np.float32)


@dataclass
class Probe:
    """Linear probe and scanner settings, all in mm / dB."""

    frequency_mhz: float = 10.0
    focus_mm: float = 15.0
    axial_fwhm_mm: float = 0.22
    lateral_fwhm_focus_mm: float = 0.4
    rayleigh_mm: float = 8.0
    """Depth over which the lateral width grows by sqrt(2) from the focus."""
    ringing: float = 0.0
    """Axial side-lobe strength (0: plain Gaussian pulse)."""
    focal_gain_db: float = 3.0
    dynamic_range_db: float = 55.0
    tissue_level: float = 0.42
    """Where median soft tissue sits on the 0-1 grey scale."""
    tgc_residual_db: float = 2.0
    deep_falloff_db: float = 4.0
    uncompensated_db: float = 0.0
    """Attenuation left over the full depth when the TGC does not compensate (raw simulators)."""
    noise_level: float = 0.025
    noise_rise_db: float = 14.0

    @classmethod
    def random(cls, rng: np.random.Generator, depth_mm: float, strong: bool = False) -> "Probe":
        """A plausible probe; ``strong`` widens every range (training)."""
        f = rng.uniform(7.0, 15.0) if strong else rng.uniform(9.0, 13.0)
        wl = 1.54 / f
        spread = 2.0 if strong else 1.0
        return cls(
            frequency_mhz=f,
            focus_mm=depth_mm * rng.uniform(0.3, 0.7),
            # Scanners resolve worse than the textbook limit (apodisation, display filters):
            # the real knee frames show speckle about 0.2 mm deep and 0.6-1 mm wide.
            axial_fwhm_mm=wl * rng.uniform(1.2 - 0.2 * (spread - 1), 1.8 + 0.8 * (spread - 1)),
            lateral_fwhm_focus_mm=wl * rng.uniform(4.0 - 1.5 * (spread - 1), 6.5 + 2.0 * (spread - 1)),
            rayleigh_mm=rng.uniform(5.0, 12.0),
            ringing=rng.uniform(0.0, 0.5 if strong else 0.25),
            focal_gain_db=rng.uniform(1.0, 5.0),
            dynamic_range_db=rng.uniform(45.0, 70.0) if strong else rng.uniform(50.0, 60.0),
            tissue_level=rng.uniform(0.28, 0.55) if strong else rng.uniform(0.36, 0.46),
            tgc_residual_db=rng.uniform(0.5, 4.0 * spread),
            deep_falloff_db=rng.uniform(0.0, 8.0 * spread),
            uncompensated_db=rng.uniform(5.0, 25.0) if strong and rng.random() < 0.2 else 0.0,
            noise_level=rng.uniform(0.005, 0.02 * spread),
            noise_rise_db=rng.uniform(6.0, 16.0 + 6.0 * (spread - 1)),
        )


class Beam:
    """Depth-dependent PSF and gain for a frame ``height_px`` deep at ``spacing_mm``."""

    def __init__(self, probe: Probe, height_px: int, spacing_mm: float, rng: np.random.Generator,
                 n_bands: int = 3):
        self.probe = probe
        self.height_px = int(height_px)
        s = float(spacing_mm)
        self.spacing_mm = s
        depth = np.arange(self.height_px) * s
        # Band centres spread over the depth; each has its own separable kernel.
        self.centres_px = np.linspace(0.12, 0.88, n_bands) * self.height_px
        self.kernels = []
        self.sigmas = []
        for c in self.centres_px:
            z = c * s
            lat_fwhm = probe.lateral_fwhm_focus_mm * math.sqrt(1 + ((z - probe.focus_mm) / probe.rayleigh_mm) ** 2)
            ax_fwhm = probe.axial_fwhm_mm * (1 + 0.25 * z / max(depth[-1], 1e-6))
            sig_ax = ax_fwhm / 2.355 / s
            sig_lat = lat_fwhm / 2.355 / s
            # Ringing: a cosine at a period of ~2.5 sigma adds side lobes to bright interfaces.
            cyc = probe.ringing / (2.5 * sig_ax) if probe.ringing > 0 else 0.0
            self.kernels.append((gabor_kernel(sig_lat), gabor_kernel(sig_ax, cyc)))
            self.sigmas.append((max(sig_lat, 0.35), max(sig_ax, 0.35)))
        self.half_px = max(max(len(kx), len(ky)) for kx, ky in self.kernels) // 2 + 1

        # Residual of attenuation after time-gain compensation, focal gain, deep falloff.
        z = depth / max(depth[-1], 1e-6)
        n_knots = 6
        knots = rng.uniform(-1, 1, n_knots) * probe.tgc_residual_db
        tgc = np.interp(z, np.linspace(0, 1, n_knots), knots)
        focal = probe.focal_gain_db * np.exp(-0.5 * ((depth - probe.focus_mm) / (0.35 * probe.rayleigh_mm + 2)) ** 2)
        deep = -probe.deep_falloff_db * z ** 2 - probe.uncompensated_db * z
        near = 3.0 * np.exp(-depth / 0.8)  # bright near-field ring-down under the skin
        self.gain_db = (tgc + focal + deep + near).astype(np.float32)
        self.gain = (10 ** (self.gain_db / 20)).astype(np.float32)
        # Electronic noise amplified by the TGC: rises with depth.
        self.noise_gain = (probe.noise_level * 10 ** (probe.noise_rise_db * z / 20)).astype(np.float32)

    def sigmas_px(self, row: float) -> tuple[float, float]:
        """Gaussian widths (lateral, axial) in px of the point-spread function at canvas ``row``."""
        w = self.weights(np.array([row]))[:, 0]
        sig = np.array(self.sigmas)
        return float(w @ sig[:, 0]), float(w @ sig[:, 1])

    def weights(self, rows: np.ndarray) -> np.ndarray:
        """(n_bands, len(rows)) linear interpolation weights between band centres."""
        c = self.centres_px
        r = np.clip(rows.astype(np.float64), c[0], c[-1])
        w = np.zeros((len(c), len(rows)), np.float32)
        j = np.clip(np.searchsorted(c, r, side="right") - 1, 0, len(c) - 2)
        f = (r - c[j]) / (c[j + 1] - c[j])
        w[j, np.arange(len(rows))] = 1 - f
        w[j + 1, np.arange(len(rows))] = f
        return w

    def form(self, planes: list[np.ndarray], row0: int = 0) -> list[np.ndarray]:
        """Convolve IQ planes (each (rows, cols) float32) whose first row is canvas row ``row0``.

        Returns new planes of the same shape: the field the probe receives.
        """
        rows = np.arange(planes[0].shape[0]) + row0
        w = self.weights(rows)
        out = [np.zeros_like(p) for p in planes]
        for b, (kx, ky) in enumerate(self.kernels):
            wb = w[b]
            nz = np.flatnonzero(wb > 0)
            if nz.size == 0:
                continue
            a = max(nz[0] - self.half_px, 0)
            z = min(nz[-1] + 1 + self.half_px, len(rows))
            wcol = wb[a:z, None]
            for p, o in zip(planes, out):
                conv = cv2.sepFilter2D(p[a:z], -1, kx, ky, borderType=cv2.BORDER_REFLECT)
                o[a:z] += conv * wcol
        return out
