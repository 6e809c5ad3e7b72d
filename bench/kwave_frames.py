"""Knee-like frames from a full-wave physics simulator of another project: k-Wave.

    python -m venv ~/kwave-venv && ~/kwave-venv/bin/pip install k-wave-python==0.6.2   # its own venv (below)
    ~/kwave-venv/bin/python bench/kwave_frames.py --out DIR [--frames 18] [--seed 0] [--part 0/2]
    guidance detect DIR/frames --spacing 0.075 --no-track --out pred.jsonl
    python bench/eval_pymust.py DIR                    # scored by needle kind and angle, as PyMUST's frames

The detector will be judged on physics-based simulations made with other tools.
``bench/pymust_frames.py`` uses one that sums echoes of point scatterers.
This one solves the wave equation itself: k-Wave's k-space pseudospectral
solver (k-wave-python's NumPy backend) propagates each plane wave through maps
of sound speed, density and absorption. So a needle here is a metal tube
whose echo is what the wave does at its walls: specular reflection,
ringing in the lumen, edge diffraction, and the multiple paths between the tube,
the tissue and the bone. Nothing of ``guidance`` is used to make the frames.

Imaging: a linear array on the skin line (every grid point an element
for transmit, under a Tukey window; pairs of them, 0.2 mm, for receive),
5 MHz two-cycle pulses, plane waves at -10, 0 and +10 degrees. The echoes are
band-passed (2.5-7.5 MHz), beamformed by delay and sum (receive f-number 1.5,
Hann apodisation, assumed sound speed 1540 m/s) and compounded coherently; a TGC
follows, and the envelope is log-compressed over 45-55 dB.
The grid is 0.1 mm (3 points per wavelength at 5 MHz); the image's pixels are
0.075 mm, 25 mm wide and 24.5 mm deep.

Each frame is its own scene: skin, fat and muscle with septa, a bone surface
(a dome or a trochlea's groove, 13-20 mm deep) with no scatterers below it
and strong absorption, a cartilage band over it with no scatterers, and in
two frames of three a needle entering from a side edge at 12-45 degrees:
a tube 0.5-0.9 mm across with 0.15 mm walls of metal (density 7900 kg/m3;
sound speed 3500 m/s instead of steel's 5900, which would halve the time step;
the echo at the wall is set mostly by the density). In a quarter of the frames a
straight oblique fascia is a distractor. In the images the region under the
bone is not a shadow and the cartilage is not dark: in 2-D every scatterer is a
line, and the paths between the smooth bone and the tissue fill both (model
card, "Frames of k-Wave").

k-wave-python downloads its C++ binaries when it is first imported; only the
NumPy solver is used here, so that download is skipped, and the script runs
offline. Install it in its own venv: it pulls ``opencv-python``, which must not
sit beside the project's ``opencv-python-headless``.

Writes ``DIR/frames/NNNNN.png``, ``DIR/truth.jsonl`` (the contract's lines with
the true values; the needle is its axis, tail where it enters the image) and
``DIR/meta.json``. Frames already there are kept, so runs resume, and
``--part I/N`` images only frames k with k % N == I, for N processes at once.
About 3 minutes a frame on one core.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
from scipy.signal import butter, hilbert, sosfiltfilt

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pymust_frames  # noqa: E402  (the truth's line format; it imports PyMUST only when imaging)

DX_MM = 0.1                  # grid step: 3 points per wavelength at 5 MHz
PML = 20                     # absorbing layer, grid points, inside the grid
PML_ALPHA = 2.0              # its absorption, nepers per grid point (k-Wave's default)
X_HALF_MM = 12.5             # image half-width
Z0_MM, Z1_MM = 0.5, 25.0     # image depth range
MARGIN_MM = 2.0              # tissue beside the image on each side (the array spans it too)
FC_HZ = 5e6
C0 = 1540.0                  # the beamformer's sound speed, m/s
C_MAX = 3500.0               # fastest material (the needle's metal), sets the time step
ANGLES_DEG = (-10.0, 0.0, 10.0)
F_NUMBER = 1.5
ALPHA_POWER = 1.5            # absorption ~ f^1.5 (k-Wave's dispersion term diverges as the power nears 1)
ALPHA_TISSUE = 0.8 * 5.0 / 5.0 ** ALPHA_POWER   # 0.8 dB/(MHz cm) at 5 MHz, in dB/(MHz^y cm)
ALPHA_BONE = 10.0 * 5.0 / 5.0 ** ALPHA_POWER    # 10 dB/(MHz cm): nothing comes back from inside the bone
ELEMENT = 2                  # grid points per receive element


def kwave_solver():
    """k-Wave's NumPy solver class, imported without the package's download of its C++ binaries."""
    real = urllib.request.urlretrieve

    def offline(url, *args, **kwargs):
        raise TimeoutError(f"not downloading {url}: only the NumPy solver is used")  # k-Wave skips on timeout

    urllib.request.urlretrieve = offline
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        from kwave.solvers.kspace_solver import Simulation
    finally:
        urllib.request.urlretrieve = real
        logging.getLogger().setLevel(level)
    return Simulation


class Grid:
    """The simulation grid: axis 0 is depth, axis 1 lateral; the array lies on row PML (z = 0)."""

    def __init__(self):
        self.nz = 2 * PML + int(round((Z1_MM + 1.0) / DX_MM))
        self.nx = 2 * PML + int(round((2 * (X_HALF_MM + MARGIN_MM)) / DX_MM))
        self.z_mm = (np.arange(self.nz) - PML) * DX_MM
        self.x_mm = (np.arange(self.nx) - (self.nx - 1) / 2) * DX_MM
        self.Z, self.X = np.meshgrid(self.z_mm, self.x_mm, indexing="ij")
        self.array_cols = np.arange(PML, self.nx - PML)


def band(dist_mm: np.ndarray, half_mm: float) -> np.ndarray:
    """Fraction (0-1) of each grid cell inside a band ``half_mm`` either side of a line, from the
    cells' distances to it: partial cells at the edge, so a slanted wall has no staircase."""
    return np.clip(0.5 + (half_mm - dist_mm) / DX_MM, 0.0, 1.0)


def segment_distance(g: Grid, p0, p1) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) of every cell from the segment p0-p1 (x, z in mm) and the position along it (0-1)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    t = ((g.X - p0[0]) * d[0] + (g.Z - p0[1]) * d[1]) / float(d @ d)
    tc = np.clip(t, 0.0, 1.0)
    return np.hypot(g.X - p0[0] - tc * d[0], g.Z - p0[1] - tc * d[1]), t


def scene(g: Grid, rng: np.random.Generator, needle: bool) -> dict:
    """Maps of sound speed (m/s), density (kg/m3) and absorption (dB/(MHz^y cm)) of one knee-like
    scene, and its truth in mm."""
    X, Z = g.X, g.Z
    # bone surface: a dome or a trochlea (two flanks and a groove), 13-20 mm deep
    bx = np.linspace(-X_HALF_MM - MARGIN_MM - 3, X_HALF_MM + MARGIN_MM + 3, 2000)
    base = rng.uniform(13.0, 20.0)
    if rng.random() < 0.5:
        bz = base + rng.uniform(2.0, 4.0) * ((bx - rng.uniform(-5, 5)) / X_HALF_MM) ** 2
    else:
        c, wdt = rng.uniform(-5, 5), rng.uniform(4.0, 7.0)
        bz = base - rng.uniform(1.5, 3.0) * np.exp(-((np.abs(bx - c) - wdt) / (0.6 * wdt)) ** 2) \
            + rng.uniform(0.5, 1.5) * np.exp(-((bx - c) / (0.5 * wdt)) ** 2)
    bz += rng.uniform(-0.08, 0.08) * bx
    cart = rng.uniform(1.5, 3.0)
    # the bone's surface is rough on the scale of the wavelength: without it, it is a perfect mirror
    rough = np.convolve(rng.standard_normal(len(bx)), np.hanning(25) / np.hanning(25).sum(), mode="same")
    zb = np.interp(X, bx, bz + 0.02 * rough / rough.std())

    skin = rng.uniform(0.8, 1.6)
    subcut = skin + rng.uniform(2.5, 6.0)
    tilt = rng.uniform(-0.06, 0.06)
    zt = Z + tilt * X
    # soft tissue: speeds near 1540 so the beamformer's assumption places echoes where they are
    c = np.where(zt < skin, 1570.0, np.where(zt < subcut, 1500.0, 1560.0))
    rho = np.where(zt < skin, 1100.0, np.where(zt < subcut, 950.0, 1050.0))
    # density fluctuation per grid cell: stronger makes multiple scattering fill the anechoic cartilage
    scatter = np.where(zt < skin, 0.04, np.where(zt < subcut, rng.uniform(0.012, 0.02), rng.uniform(0.02, 0.03)))
    scatter = scatter * (1 + 0.35 * np.sin(X / rng.uniform(2, 6) + rng.uniform(0, 6)) * np.sin(Z / rng.uniform(1.5, 4)))
    alpha = np.full(X.shape, ALPHA_TISSUE)

    def interface(p0, p1, half_mm, drho, dc):
        nonlocal rho, c
        dist, _ = segment_distance(g, p0, p1)
        f = band(dist, half_mm) * (1 + 0.15 * rng.standard_normal(X.shape))
        rho = rho * (1 + drho * f)
        c = c * (1 + dc * f)

    # septa and muscle striations: thin bright lines near the skin's direction
    for _ in range(rng.integers(2, 5)):
        zc = rng.uniform(skin, base - cart - 1.5)
        a = np.radians(rng.uniform(-8, 8))
        xc, half = rng.uniform(-X_HALF_MM, X_HALF_MM), rng.uniform(3, 12)
        d = np.array([np.cos(a), np.sin(a)]) * half
        interface([xc, zc] - d, [xc, zc] + d, 0.1, rng.uniform(0.04, 0.1), 0.02)
    if rng.random() < 0.25:   # a straight oblique fascia: what false needles come from
        a = np.radians(rng.uniform(-35, 35))
        p0 = np.array([rng.uniform(-9, 5), rng.uniform(skin + 1, base - cart - 5)])
        p1 = p0 + rng.uniform(4, 9) * np.array([np.cos(a), np.sin(a)])
        interface(p0, p1, 0.1, rng.uniform(0.1, 0.25), 0.03)

    # cartilage: anechoic (no scatterers), a little faster and denser; bone below: no scatterers,
    # strong absorption, so nothing returns from under its surface
    in_cart = (Z >= zb - cart) & (Z < zb)
    in_bone = Z >= zb
    scatter = np.where(in_cart | in_bone, 0.0, scatter)
    c = np.where(in_cart, 1600.0, np.where(in_bone, 3000.0, c))
    rho = np.where(in_cart, 1100.0, np.where(in_bone, 1900.0, rho))
    alpha = np.where(in_bone, ALPHA_BONE, alpha)
    speckle = 1 + scatter * rng.standard_normal(X.shape)
    rho, c = rho * speckle, c * (1 + 0.5 * (speckle - 1))

    truth_needle = None
    if needle:
        ang = np.radians(rng.uniform(12.0, 45.0))
        left = rng.random() < 0.5
        d = np.array([np.cos(ang) if left else -np.cos(ang), np.sin(ang)])
        entry = np.array([-X_HALF_MM if left else X_HALF_MM, rng.uniform(1.0, 5.0)])   # where the axis enters
        zmax = float(np.interp(0.0, bx, bz)) - cart
        tip_z = rng.uniform(entry[1] + 4.0 * d[1], max(entry[1] + 4.0 * d[1] + 0.1, zmax - 0.3))
        length = min((tip_z - entry[1]) / d[1], (2 * X_HALF_MM - 1.0) / abs(d[0]))     # the tip stays in the image
        tip = entry + length * d
        if tip[1] > float(np.interp(tip[0], bx, bz)) - cart - 0.2:                    # not into the cartilage
            length = max(4.0, length - 3.0)
            tip = entry + length * d
        diam = rng.uniform(0.5, 0.9)
        back = entry - 10.0 * d                                   # the shaft goes on to the grid's edge
        dist, t = segment_distance(g, back, tip)
        dist = np.where(t <= 1.0, dist, np.inf)                   # the bevel: cut square at the tip
        outer, lumen = band(dist, diam / 2), band(dist, diam / 2 - 0.15)
        metal = outer - lumen
        rho = rho * (1 - outer) + 7900.0 * metal + 1000.0 * lumen
        c = c * (1 - outer) + C_MAX * metal + 1500.0 * lumen
        alpha = alpha * (1 - outer) + 0.1 * outer
        truth_needle = {"tail_mm": entry, "tip_mm": tip, "style": "tube", "diam_mm": diam,
                        "angle_deg": float(np.degrees(np.arctan2(d[1], d[0])))}
    return {"c": c.astype(np.float32), "rho": rho.astype(np.float32), "alpha": alpha.astype(np.float32),
            "bone": (bx, bz), "cart_mm": cart, "needle": truth_needle}


def pulse(t_s: np.ndarray) -> np.ndarray:
    """Two cycles of FC_HZ under a Hann window, starting at t = 0."""
    n_cyc = 2.0
    ph = t_s * FC_HZ
    return np.where((ph >= 0) & (ph <= n_cyc), np.sin(2 * np.pi * ph) * np.sin(np.pi * ph / n_cyc) ** 2, 0.0)


class Imager:
    """Plane-wave transmits through the scene with k-Wave, delay-and-sum onto the image's pixels."""

    def __init__(self, g: Grid, spacing_mm: float):
        self.g = g
        self.Simulation = kwave_solver()
        self.dt = 0.3 * DX_MM * 1e-3 / C_MAX
        xe = g.x_mm[g.array_cols]
        self.xe_tx = xe
        n_el = len(xe) // ELEMENT
        self.xe_rx = xe[:n_el * ELEMENT].reshape(n_el, ELEMENT).mean(1)
        self.nx = int(round(2 * X_HALF_MM / spacing_mm)) + 1
        self.nz = int(round((Z1_MM - Z0_MM) / spacing_mm)) + 1
        self.xi = -X_HALF_MM + spacing_mm * np.arange(self.nx)
        self.zi = Z0_MM + spacing_mm * np.arange(self.nz)
        self.t_pulse = 1.0 / FC_HZ                       # the pulse's centre, after its start
        width = 2 * (X_HALF_MM + MARGIN_MM) * 1e-3
        slant = width * np.sin(np.radians(max(abs(a) for a in ANGLES_DEG)))
        z1 = Z1_MM * 1e-3
        self.nt = int(((slant + 2 * z1 * 1.06) / C0 + 2 * self.t_pulse + 1e-6) / self.dt)

    def tx_delays(self, angle_deg: float) -> np.ndarray:
        """Firing time of each transmit element (s), the earliest at 0."""
        s = np.sin(np.radians(angle_deg)) * self.xe_tx * 1e-3 / C0
        return s - s.min()

    def rf(self, sc: dict, angle_deg: float) -> np.ndarray:
        """Echoes (receive elements x time samples) of one plane wave."""
        g = self.g
        t = np.arange(self.nt) * self.dt
        delays = self.tx_delays(angle_deg)
        # a Tukey window across the aperture: square edges would send edge waves across the image
        n = len(delays)
        edge = np.clip(np.minimum(np.arange(n), n - 1 - np.arange(n)) / (0.1 * n), 0, 1)
        sig = pulse(t[None, :] - delays[:, None]) * (0.5 - 0.5 * np.cos(np.pi * edge))[:, None]
        mask = np.zeros((g.nz, g.nx))
        mask[PML, g.array_cols] = 1
        kgrid = SimpleNamespace(Nx=g.nz, dx=DX_MM * 1e-3, Ny=g.nx, dy=DX_MM * 1e-3, Nt=self.nt, dt=self.dt)
        medium = SimpleNamespace(sound_speed=sc["c"], density=sc["rho"], alpha_coeff=sc["alpha"],
                                 alpha_power=ALPHA_POWER)
        sim = self.Simulation(kgrid, medium, SimpleNamespace(p_mask=mask, p=sig),
                              SimpleNamespace(mask=mask, record=("p",)), pml_size=(PML, PML),
                              pml_alpha=(PML_ALPHA, PML_ALPHA), quiet=True, dtype=np.float32, smooth_p0=False)
        p = np.asarray(sim.run()["p"], dtype=np.float64)         # (elements, time), in the mask's order (x rising)
        n_el = len(self.xe_rx)
        p = p[:n_el * ELEMENT].reshape(n_el, ELEMENT, -1).sum(1)
        # the probe's band: what the grid carries poorly (over 7.7 MHz, 2 points a wavelength) rings
        sos = butter(4, [0.5 * FC_HZ, 1.5 * FC_HZ], btype="band", fs=1 / self.dt, output="sos")
        return sosfiltfilt(sos, p, axis=1)

    def beamform(self, rf: np.ndarray, angle_deg: float) -> np.ndarray:
        """Delay and sum of one plane wave's analytic echoes onto the pixel grid (nz, nx), complex."""
        th = np.radians(angle_deg)
        xe_tx = self.xe_tx * 1e-3
        x_ref = xe_tx.min() if th >= 0 else xe_tx.max()
        a = hilbert(rf, axis=1)
        a[:, :int(2 * self.t_pulse / self.dt)] = 0                 # the transmit itself, on the receivers
        out = np.zeros((self.nz, self.nx), complex)
        xr = self.xe_rx * 1e-3
        xs = self.xi * 1e-3
        for iz, z_mm in enumerate(self.zi):                        # one row of pixels at a time (memory)
            z = z_mm * 1e-3
            t_tx = ((xs - x_ref) * np.sin(th) + z * np.cos(th)) / C0 + self.t_pulse
            lat = xs[:, None] - xr[None, :]
            t_rx = np.hypot(lat, z) / C0
            w = np.abs(lat) <= z / (2 * F_NUMBER)
            w = w * (0.5 + 0.5 * np.cos(np.pi * lat / np.maximum(z / (2 * F_NUMBER), 1e-9)))  # Hann
            idx = (t_tx[:, None] + t_rx) / self.dt
            i0 = np.clip(idx.astype(int), 0, rf.shape[1] - 2)
            f = idx - i0
            el = np.arange(len(xr))[None, :]
            v = a[el, i0] * (1 - f) + a[el, i0 + 1] * f
            out[iz] = (v * w).sum(1)
        return out

    def image(self, sc: dict, rng: np.random.Generator) -> np.ndarray:
        iq = sum(self.beamform(self.rf(sc, ang), ang) for ang in ANGLES_DEG)
        # TGC: undo most of the absorption (0.8 dB/(MHz cm) both ways) and the 2-D spreading
        z_cm = self.zi[:, None] * 0.1
        gain_db = 0.8 * FC_HZ * 1e-6 * 2 * z_cm * rng.uniform(0.7, 0.9)
        env = np.abs(iq) * 10 ** (gain_db / 20) * np.sqrt(self.zi[:, None])
        db = 20 * np.log10(env / np.percentile(env, 99.9) + 1e-9)
        dr = rng.uniform(45.0, 55.0)
        return (np.clip((db + dr) / dr, 0, 1) * 255).astype(np.uint8)


def truth_line(frame: int, sc: dict, sp: float) -> dict:
    """The contract's line with the true values, in pixels of the image (as PyMUST's frames write it)."""
    return pymust_frames.truth_line(frame, sc, sp, X_HALF_MM, Z0_MM)


def make(out: Path, frames: int, seed: int, spacing_mm: float, part: tuple[int, int]) -> None:
    (out / "frames").mkdir(parents=True, exist_ok=True)
    g = Grid()
    imager = Imager(g, spacing_mm)
    for k in range(frames):
        png, js = out / "frames" / f"{k:05d}.png", out / "frames" / f"{k:05d}.json"
        if k % part[1] != part[0] or (png.exists() and js.exists()):
            continue
        rng = np.random.default_rng([seed, k])
        t0 = time.perf_counter()
        sc = scene(g, rng, needle=(k % 3 != 2))
        img = imager.image(sc, rng)
        cv2.imwrite(str(png), img)
        tmp = js.with_suffix(".tmp")
        tmp.write_text(json.dumps(truth_line(k, sc, spacing_mm)))
        os.replace(tmp, js)                                 # the frame counts as done once its truth is there
        print(f"[{k + 1}/{frames}] {g.nz}x{g.nx} grid, {imager.nt} steps x {len(ANGLES_DEG)} plane waves, "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    lines = [(out / "frames" / f"{k:05d}.json") for k in range(frames)]
    (out / "truth.jsonl").write_text("".join(p.read_text() + "\n" for p in lines if p.exists()))
    (out / "meta.json").write_text(json.dumps({
        "tool": "k-Wave (k-wave-python 0.6.2, NumPy k-space pseudospectral solver) + delay-and-sum",
        "fc_hz": FC_HZ, "grid_mm": DX_MM, "plane_waves_deg": ANGLES_DEG, "spacing_mm": [spacing_mm, spacing_mm],
        "frames": frames, "seed": seed,
        "command": f"python bench/kwave_frames.py --out {out} --frames {frames} --seed {seed} --spacing {spacing_mm}"},
        indent=1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=18)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spacing", type=float, default=0.075, help="pixel size, mm")
    ap.add_argument("--part", default="0/1", help="I/N: image only frames k with k %% N == I")
    args = ap.parse_args()
    import importlib.util
    if importlib.util.find_spec("kwave") is None:  # not imported here: that would start its download
        print("kwave_frames.py: k-wave-python is not installed (pip install k-wave-python==0.6.2, in its own venv)",
              file=sys.stderr)
        return 2
    i, n = (int(v) for v in args.part.split("/"))
    make(args.out, args.frames, args.seed, args.spacing, (i, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
