"""models/pymust_needles.py: a needle imaged by another simulator, drawn into a training frame where its truth says."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from guidance.sim.training import make_sample

REPO = Path(__file__).resolve().parents[1]
GRID = 0.075
TAIL_MM, TIP_MM = np.array([-17.5, 3.0]), np.array([-17.5 + 20 * np.cos(np.radians(15)), 3.0 + 20 * np.sin(np.radians(15))])


def _module():
    spec = importlib.util.spec_from_file_location("pymust_needles", REPO / "models" / "pymust_needles.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _library(folder: Path) -> Path:
    """One needle as `make` writes it: a bright 15-degree line on PyMUST's grid, and the tissue's level."""
    zz, xx = np.mgrid[0:401, 0:467].astype(np.float32)
    x_mm, z_mm = -17.5 + GRID * xx, 0.5 + GRID * zz
    d = (TIP_MM - TAIL_MM) / np.hypot(*(TIP_MM - TAIL_MM))
    t = (x_mm - TAIL_MM[0]) * d[0] + (z_mm - TAIL_MM[1]) * d[1]
    across = np.abs(-(x_mm - TAIL_MM[0]) * d[1] + (z_mm - TAIL_MM[1]) * d[0])
    env = np.where((across < 0.15) & (t <= 20.0), 50.0, 0.01).astype(np.float32)
    np.savez_compressed(folder / "1_00000.npz", env=env, x0_mm=-17.5, z0_mm=0.5, probe="L11-5v",
                        angles=np.zeros(1), tail_mm=TAIL_MM, tip_mm=TIP_MM, diam_mm=0.3, angle_deg=15.0)
    np.savez_compressed(folder / "tissue_calibration.npz", env=np.ones((8, 8), np.float32))
    return folder


def test_a_library_needle_lands_where_the_truth_puts_it_above_the_bone_from_either_side(tmp_path):
    lib = _module().NeedleLibrary(_library(tmp_path))
    sides = set()
    for seed in range(20):
        sf = make_sample(100_000 + seed, (256, 256), scenario="no_needle", add_needle=lib)
        n = sf.truth["needle"]
        if n is None:
            continue  # the needle fitted nowhere above this scene's bone: the frame stays needle-free
        tail, tip = np.array(n["shaft_px"][0]), np.array(n["tip_px"])
        rx, ry, rw, rh = sf.truth["region_px"]
        sides.add("left" if abs(tail[0] - rx) < 1.5 else "right" if abs(tail[0] - (rx + rw - 1)) < 1.5 else "?")
        assert rx <= tip[0] < rx + rw and ry <= tip[1] < ry + rh
        # the image is bright along the truth's line, not a few pixels beside it
        t = np.linspace(0.15, 0.85, 40)[:, None]
        on = tail + t * (tip - tail)
        u = (tip - tail) / np.hypot(*(tip - tail))
        off = on + 4 * np.array([-u[1], u[0]])
        img = sf.image.astype(float)

        def grey(p):
            return img[np.clip(np.round(p[:, 1]).astype(int), 0, 255), np.clip(np.round(p[:, 0]).astype(int), 0, 255)]

        assert np.median(grey(on)) > np.median(grey(off)) + 40
        assert sf.masks["needle"][int(round(on[20, 1])), int(round(on[20, 0]))] == 1
        # the whole shaft above the bone (or the cartilage's top)
        surf = np.array(sf.truth["target"].get("surface_px") or sf.truth["target"]["bone_px"])
        surf = surf[np.argsort(surf[:, 0])]
        ys = np.interp(on[:, 0], surf[:, 0], surf[:, 1])
        assert np.all(on[:, 1] < ys)
        assert sf.tip_px == tuple(n["tip_px"])
    assert sides == {"left", "right"}


def test_make_sample_refuses_an_unknown_scenario_and_a_forced_one_keeps_the_scene():
    with pytest.raises(ValueError, match="scenario 'knee'"):
        make_sample(1, (64, 64), scenario="knee")
    a = make_sample(100_007, (128, 128), scenario="no_needle")
    assert a.truth["needle"] is None
    assert np.array_equal(a.image, make_sample(100_007, (128, 128), scenario="no_needle").image)


def test_a_needle_file_cut_short_is_named(tmp_path):
    _library(tmp_path)
    (tmp_path / "1_00001.npz").write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(ValueError, match="1_00001.npz: not a needle"):
        _module().NeedleLibrary(tmp_path)
    with pytest.raises(FileNotFoundError, match="no needles"):
        _module().NeedleLibrary(tmp_path / "empty")


class _LowEnds:
    """A random generator stand-in that always draws the low end: the needle's brightness becomes exact."""

    def uniform(self, lo, hi=None):
        return lo

    def integers(self, n):
        return 0

    def random(self):
        return 0.9  # not mirrored


def test_walls_of_amplitude_a_echo_a_times_the_tissue_in_the_frame(tmp_path):
    # a library needle whose envelope equals the calibrated tissue's, drawn with walls 1.5 times the
    # tissue (the low end) on a 45 dB scale (the low end) into a uniform frame: the shaft must rise by
    # 10 log10(1 + 1.5^2) dB over the frame's level, 29 grey levels at 255 per 45 dB
    mod = _module()
    lib = mod.NeedleLibrary(_library(tmp_path))
    env, *rest = lib.needles[0]
    lib.needles[0] = (np.where(env > 1.0, lib.tissue_level, 0.0).astype(np.float32), *rest)
    image = np.full((420, 480), 100, np.uint8)
    truth = {"region_px": [0, 0, 480, 420], "target": None}
    n = lib(image, truth, (GRID, GRID), _LowEnds())
    tail, tip = np.array(n["shaft_px"][0]), np.array(n["tip_px"])
    mid = np.round(tail + 0.5 * (tip - tail)).astype(int)
    assert image[mid[1], mid[0]] == pytest.approx(100 + 255 * 10 * np.log10(1 + 1.5 ** 2) / 45, abs=1.5)
    assert image[mid[1] + 20, mid[0]] == 100
