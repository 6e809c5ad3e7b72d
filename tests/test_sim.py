"""The simulator's ground truth agrees with its pixels, is deterministic and follows the contract."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from guidance.cli import main as cli_main
from guidance.contract import read_jsonl
from guidance.geometry import polyline_y_at
from guidance.sim import SCENARIOS, SimConfig, Simulator
from guidance.sim.needle import GAUGE_MM
from guidance.sim.training import make_sample
from guidance.sources import open_source

SIZE = dict(width_px=320, height_px=256, fps=15.0)


def _sim(scenario="insertion", seed=4, n=48, **kw):
    return Simulator(SimConfig(scenario=scenario, seed=seed, n_frames=n, **{**SIZE, **kw}))


def _profile(img, a, b, n):
    """Brightness sampled at n points along the segment a->b (bilinear)."""
    t = np.linspace(0, 1, n)
    pts = (np.asarray(a)[None] * (1 - t)[:, None] + np.asarray(b)[None] * t[:, None]).astype(np.float32)
    return cv2.remap(img.astype(np.float32), pts[:, 0].reshape(1, -1), pts[:, 1].reshape(1, -1),
                     cv2.INTER_LINEAR)[0]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_true_tip_lies_at_the_bright_end_of_the_needle(seed):
    sim = _sim(seed=seed)
    frames = [f for f in (sim.render(i) for i in range(10, len(sim), 6))
              if f.truth["needle"] and f.truth["needle"]["tip_visible"]]
    assert len(frames) >= 3, "an in-plane insertion must show its tip"
    crossings = []
    for f in frames:
        if f.truth["trajectory"] and f.truth["trajectory"]["distance_mm"] < 3.0:
            continue  # the bright cartilage and bone surfaces just ahead would mask the fall
        img = cv2.GaussianBlur(f.image, (0, 0), 1.0)
        n = f.truth["needle"]
        tip = np.array(n["tip_px"])
        tail = np.array(n["shaft_px"][0])
        d = (tip - tail) / np.hypot(*(tip - tail))
        mm = 1.0 / f.spacing_mm[0]
        # Along the needle's line the brightness falls from the shaft's level to the
        # tissue's at the true tip. Log compression makes a bright end bloom a
        # little beyond it (~1 PSF width, as on real scans): allow -0.3..+1.5 mm.
        s_mm = np.linspace(-2.0, 3.0, 101)
        prof = _profile(img, tip - 2.0 * mm * d, tip + 3.0 * mm * d, 101)
        shaft = prof[(s_mm > -1.5) & (s_mm < -0.3)].mean()
        ahead = np.median(prof[s_mm > 1.5])
        assert shaft > ahead + 20, (f.index, shaft, ahead)  # the shaft's end is bright
        half = (shaft + ahead) / 2
        j = np.flatnonzero((prof[:-1] >= half) & (prof[1:] < half) & (s_mm[:-1] > -1.0))
        assert len(j), f.index
        crossings.append(s_mm[j[0]])
        assert -0.3 <= s_mm[j[0]] <= 1.5, (f.index, s_mm[j[0]])
        assert f.masks["needle"][int(round(tip[1])), int(round(tip[0]))] == 1
    assert 0.0 <= np.median(crossings) <= 0.8


def test_bone_surface_is_the_bright_line_above_the_shadow_and_cartilage_is_dark():
    for seed, view in ((1, "trochlea"), (2, "condyle"), (3, "suprapatellar"), (4, "joint_line")):
        f = _sim("no_needle", seed=seed, view=view, fluid=False).render(5)
        img = f.image.astype(np.float32)
        mm = 1.0 / f.spacing_mm[0]
        bone = np.array(f.truth["target"]["bone_px"])
        surf = np.array(f.truth["target"]["surface_px"])
        xs = bone[:, 0].astype(int)
        ys = bone[:, 1]
        ok = ys + 4 * mm < img.shape[0]
        xs, ys = xs[ok], ys[ok]
        line = np.array([img[int(round(y)):int(round(y + 0.35 * mm)) + 1, x].max() for x, y in zip(xs, ys)])
        shadow = np.array([img[int(y + 2 * mm):int(y + 4 * mm), x].mean() for x, y in zip(xs, ys)])
        assert np.median(line) > np.median(shadow) + 60, view
        # Cartilage band darker than the 2 mm of tissue above its top. Its edges
        # glow with the blooming of the bright interfaces (as on real scans), so
        # compare the band's core (0.4 mm in from either edge).
        k = int(round(0.4 * mm))
        core = cv2.erode(f.masks["cartilage"], np.ones((2 * k + 1, 1), np.uint8))
        cart = img[core == 1]
        assert cart.size > 200
        above = np.concatenate([img[max(0, int(y - 2.5 * mm)):max(0, int(y - 0.5 * mm)), int(x)]
                                for x, y in surf])
        assert cart.mean() < above.mean() - 25, view
        thick = f.truth["target"]["cartilage_thickness_mm"]
        assert 1.0 <= thick <= 3.5


def test_same_seed_same_frames_other_seed_other_frames():
    a = _sim(seed=7).render(20)
    b = _sim(seed=7).render(20)
    c = _sim(seed=8).render(20)
    assert np.array_equal(a.image, b.image) and a.truth == b.truth
    assert all(np.array_equal(a.masks[k], b.masks[k]) for k in a.masks)
    assert not np.array_equal(a.image, c.image)
    # Rendering order does not matter.
    sim = _sim(seed=7)
    sim.render(40)
    assert np.array_equal(sim.render(20).image, a.image)
    assert np.array_equal(make_sample(5).image, make_sample(5).image)


def _check_line(rec, spacing, w, h):
    for k in ("frame", "t_s", "needle", "target", "trajectory"):
        assert k in rec
    json.dumps(rec, allow_nan=False)
    n, t, tr = rec["needle"], rec["target"], rec["trajectory"]
    if n:
        tail, tip = n["shaft_px"]
        assert tip == n["tip_px"] and n["confidence"] == 1.0
        assert abs(n["angle_deg"] - math.degrees(math.atan2(tip[1] - tail[1], tip[0] - tail[0]))) < 0.05
        assert -1 <= tip[0] <= w and -1 <= tip[1] <= h
    if t:
        for key in ("surface_px", "bone_px"):
            xs = [p[0] for p in t[key]]
            assert xs == sorted(xs) and len(xs) > 10
        assert t["kind"] in ("cartilage", "bone")
    if tr:
        assert n and t
        tip = np.array(n["tip_px"])
        d = tip - np.array(n["shaft_px"][0])
        ip = np.array(tr["intercept_px"])
        v = ip - tip
        assert abs(d[0] * v[1] - d[1] * v[0]) / np.hypot(*d) < 0.1   # on the needle's line
        assert np.dot(v, d) >= -1e-6                                   # ahead of the tip
        y_on_surface = polyline_y_at(np.array(t["surface_px"]), ip[0])
        assert y_on_surface is not None and abs(y_on_surface - ip[1]) < 0.6
        assert abs(tr["distance_mm"] - np.hypot(*(v * spacing))) < 0.05
        assert 0 <= tr["approach_deg"] <= 90
    if not n:
        assert tr is None


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_truth_lines_follow_the_contract(scenario, tmp_path):
    out = tmp_path / scenario
    rc = cli_main(["sim", "--scenario", scenario, "--seed", "3", "--frames", "30", "--size", "256x224",
                   "--fps", "15", "--out", str(out)])
    assert rc == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["scenario"] == scenario and meta["seed"] == 3 and meta["fps"] == 15
    recs = list(read_jsonl(out / "truth.jsonl"))
    frames = sorted((out / "frames").glob("*.png"))
    assert len(recs) == len(frames) == 30
    assert [r["frame"] for r in recs] == list(range(30))
    img = cv2.imread(str(frames[0]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (224, 256) and img.dtype == np.uint8
    spacing = np.array(meta["spacing_mm"])
    for r in recs:
        _check_line(r, spacing, 256, 224)
    seen = [r["needle"] is not None for r in recs]
    if scenario == "no_needle":
        assert not any(seen)
    else:
        assert sum(seen) > 10


@pytest.mark.parametrize("seed", [1, 3, 4])
def test_out_of_plane_loses_the_tip_and_finds_it_again(seed):
    sim = _sim("out_of_plane", seed=seed, n=60)
    vis = [bool(f.truth["needle"] and f.truth["needle"]["tip_visible"]) for f in sim.frames()]
    first_lost = vis.index(False, vis.index(True))
    assert True in vis[first_lost:], "tip never found again"
    # While the tip is well out of plane it leaves no echo where it truly is:
    # the same frame with the needle rolled back into the plane is brighter there.
    import copy
    in_plane = copy.deepcopy(sim)
    for k in in_plane.plan.keys:
        k.elevation_mm = 0.0
    in_plane.plan.bend_mm = 0.0
    far = 0
    for i in range(first_lost, len(sim)):
        f = sim.render(i)
        n = f.truth["needle"]
        if n is None:
            assert f.masks["needle"].sum() == 0
            continue
        if n["tip_visible"]:
            continue
        x, y = np.round(f.truth["sim"]["true_tip_px"]).astype(int)
        vx, vy = np.round(n["tip_px"]).astype(int)
        if np.hypot(x - vx, y - vy) * sim.spacing_mm[0] >= 3.0 and 2 <= x < 318 and 2 <= y < 254:
            far += 1
            lost = cv2.GaussianBlur(f.image, (0, 0), 1.5).astype(np.float32)
            seen = cv2.GaussianBlur(in_plane.render(i).image, (0, 0), 1.5).astype(np.float32)
            assert lost[y, x] < seen[y, x] - 30, i
            assert f.masks["needle"][y - 2:y + 3, x - 2:x + 3].sum() == 0
    assert far >= 2


def test_the_truths_visibility_line_moves_the_truth_of_a_fading_needle_and_not_the_image():
    # bench/eval_sim.py --visible-level scores the same detections against another line on a fade
    strict, loose = (_sim("out_of_plane", seed=7, n=40, visible_level=v) for v in (0.35, 0.2))
    more = 0
    for i in range(40):
        a, b = strict.render(i), loose.render(i)
        assert np.array_equal(a.image, b.image), i
        if a.truth["needle"] is not None:  # a piece above 35 % of the echo is above 20 % too
            assert b.truth["needle"] is not None and b.masks["needle"].sum() >= a.masks["needle"].sum()
        more += a.truth["needle"] is None and b.truth["needle"] is not None
    assert more >= 1, "no frame whose faint needle only the lower line calls visible"


def test_synthetic_source_offline_is_finite_and_carries_spacing():
    src = open_source("sim:3", realtime=False, size_px=(256, 192), fps=15)
    with src:
        assert not src.is_live
        frames = []
        while (fr := src.read()) is not None:
            frames.append(fr)
    assert len(frames) == len(src) == 120  # the scenario's 8 s at 15 fps
    assert frames[0].image.shape == (192, 256) and frames[0].spacing_mm[1] == pytest.approx(30.0 / 192)
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert src.last_truth["frame"] == len(frames) - 1
    live = open_source("sim:steep:5", size_px=(64, 64))
    assert live.is_live and live.scenario == "steep" and live.seed == 5


def test_bad_sim_specs_and_arguments_are_user_errors(tmp_path, capsys):
    from guidance.errors import InputError
    with pytest.raises(InputError):
        open_source("sim:bogus:3")
    with pytest.raises(InputError):
        open_source("sim:1:2:3")
    assert cli_main(["sim", "--size", "12by4", "--out", str(tmp_path / "x")]) == 2
    assert "--size" in capsys.readouterr().err


def test_make_sample_masks_match_truth():
    for seed in range(12):
        f = make_sample(seed, (256, 224))
        assert f.image.shape == (224, 256) and f.image.dtype == np.uint8
        for k in ("needle", "bone", "cartilage"):
            assert f.masks[k].shape == (224, 256) and set(np.unique(f.masks[k])) <= {0, 1}
        rx, ry, rw, rh = f.truth["region_px"]
        assert 0 <= rx and 0 <= ry and rx + rw <= 256 and ry + rh <= 224
        bone = np.array(f.truth["target"]["bone_px"]) if f.truth["target"] else np.zeros((0, 2))
        for x, y in np.round(bone[::5]).astype(int):
            if 0 <= y < 224 and 0 <= x < 256:
                assert f.masks["bone"][max(y - 2, 0):y + 3, max(x - 2, 0):x + 3].any()
        if f.tip_px is not None:
            x, y = np.round(f.tip_px).astype(int)
            assert f.masks["needle"][max(y - 2, 0):y + 3, max(x - 2, 0):x + 3].any()
        else:
            assert f.truth["needle"] is None


def test_scene_without_cartilage_targets_the_bone():
    sim = _sim("insertion", seed=6, cartilage=False)
    recs = [sim.render(i) for i in range(0, len(sim), 8)]
    for f in recs:
        t = f.truth["target"]
        assert t["kind"] == "bone" and t["surface_px"] == t["bone_px"]
        assert t["cartilage_thickness_mm"] is None
        assert f.masks["cartilage"].sum() == 0
        _check_line(f.truth, np.array(f.spacing_mm), 320, 256)
    assert any(f.truth["trajectory"] for f in recs)


@pytest.mark.parametrize("name", ["insertion", "steep", "out_of_plane", "no_needle"])
def test_committed_samples_regenerate_exactly(repo_root, name):
    """replay_data/README.md promises the commands there give the same pixels and truth.

    Up to rounding: another OpenCV or NumPy build may land a handful of pixels
    one grey level off (OpenCV 5.0 against 4.x: 2 of 81,920 pixels).
    """
    folder = repo_root / "replay_data" / name
    meta = json.loads((folder / "meta.json").read_text())
    w, h = meta["size_px"]
    sim = Simulator(SimConfig(width_px=w, height_px=h, fps=meta["fps"], seed=meta["seed"], scenario=meta["scenario"],
                              depth_mm=meta["depth_mm"], n_frames=meta["frames"],
                              view=meta["view"] if "--view" in meta["command"] else None))
    truth = list(read_jsonl(folder / "truth.jsonl"))
    for i in (0, meta["frames"] // 2, meta["frames"] - 1):
        f = sim.render(i)
        diff = np.abs(f.image.astype(int) - cv2.imread(str(folder / "frames" / f"{i:05d}.png"), cv2.IMREAD_GRAYSCALE))
        assert diff.max() <= 1 and np.count_nonzero(diff) <= 0.001 * diff.size, (i, diff.max(), np.count_nonzero(diff))
        assert json.loads(json.dumps(f.truth)) == truth[i]


def test_live_synthetic_source_loops_with_new_seeds():
    src = open_source("sim:no_needle:4", size_px=(96, 80), fps=1000.0, n_frames=6)
    with src:
        assert src.is_live
        frames = [src.read() for _ in range(15)]
    assert [f.index for f in frames] == list(range(15))
    assert not np.array_equal(frames[0].image, frames[6].image)  # a new scene after 6 frames
    assert all(f.image.shape == (80, 96) for f in frames)


def _shaft_contrast(f):
    """Mean brightness on the visible shaft minus the median of the frame's soft tissue above the bone."""
    img = f.image.astype(np.float32)
    shaft = img[f.masks["needle"] == 1].mean()
    return shaft - np.median(img[: int(np.nanmin(np.array(f.truth["target"]["bone_px"])[:, 1]))])


def test_needle_fades_as_it_steepens():
    shallow, steep = [], []
    for seed in (1, 2, 3, 4, 5, 6):
        for scenario, out in (("insertion", shallow), ("steep", steep)):
            sim = _sim(scenario, seed=seed)
            f = sim.render(len(sim) - 12)
            assert f.truth["needle"] is not None
            out.append(_shaft_contrast(f))
    # Angles overlap near 40-45 degrees between the scenarios: compare on average.
    assert sum(a > b for a, b in zip(shallow, steep)) >= 5, (shallow, steep)
    assert np.mean(shallow) > np.mean(steep) + 20, (shallow, steep)
    assert np.mean(steep) > 0  # faint, yet brighter than the tissue around it


def test_injection_spreads_an_anechoic_bolus_at_the_tip():
    sim = _sim("insertion", seed=5, n=60, fluid=False)
    phases = [sim.plan.pose(i / sim.config.fps).phase for i in range(len(sim))]
    start = phases.index("inject")
    before, after = sim.render(start), sim.render(len(sim) - 1)
    assert after.truth["sim"]["bolus"] > 0.9 and before.truth["sim"]["bolus"] < 0.05
    cx, cy = np.array(sim.plan.bolus_centre_px) - (sim.drift_px[-1], 0)
    r = 0.8 / sim.spacing_mm[0]  # a disc of 0.8 mm just above the tip, away from the shaft
    yy, xx = np.mgrid[0:256, 0:320]
    disc = ((xx - cx) ** 2 + (yy - (cy - 1.2 * r)) ** 2 < r * r) & (after.masks["needle"] == 0) \
        & (before.masks["needle"] == 0)
    assert disc.sum() > 20
    assert after.image[disc].mean() < before.image[disc].mean() - 20


def test_sim_command_writes_training_masks_matching_the_simulator(tmp_path):
    out = tmp_path / "m"
    assert cli_main(["sim", "--scenario", "insertion", "--seed", "5", "--frames", "12", "--size", "160x128",
                     "--masks", "--view", "condyle", "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["view"] == "condyle" and "--masks" in meta["command"]
    sim = Simulator(SimConfig(width_px=160, height_px=128, fps=15, seed=5, scenario="insertion", n_frames=12,
                              view="condyle"))
    f = sim.render(11)
    packed = cv2.imread(str(out / "masks" / "00011.png"), cv2.IMREAD_UNCHANGED)
    for bit, name in enumerate(("needle", "bone", "cartilage")):
        assert np.array_equal((packed >> bit) & 1, f.masks[name]), name


def _across_profile(f, offsets_px):
    """Mean brightness along the truth shaft's middle half, shifted across it by each offset (px, + is deeper)."""
    n = f.truth["needle"]
    tip, tail = np.array(n["tip_px"]), np.array(n["shaft_px"][0])
    d = (tip - tail) / np.hypot(*(tip - tail))
    normal = np.array([-d[1], d[0]]) * (1 if d[0] >= 0 else -1)  # points down-ish
    a, b = tail + 0.25 * (tip - tail), tail + 0.75 * (tip - tail)
    return np.array([_profile(f.image, a + o * normal, b + o * normal, 64).mean() for o in offsets_px])


def test_a_needle_of_point_scatterers_is_a_bright_band_across_the_axis():
    offsets = np.arange(-24, 25, 1.0)
    for seed in (1, 2, 3):
        spec = _sim(seed=seed).render(40)
        scat = _sim(seed=seed, needle_style="scatter").render(40)
        # the same scene and needle: only its echo differs
        assert scat.truth["needle"] == spec.truth["needle"] and (scat.masks["needle"] == spec.masks["needle"]).all()
        assert scat.truth["sim"]["needle_style"] == "scatter" and "needle_style" not in spec.truth["sim"]
        prof = _across_profile(scat, offsets)
        half_px = 0.5 * GAUGE_MM[scat.truth["sim"]["gauge"]] / scat.spacing_mm[0]
        flank = prof[np.abs(offsets) >= half_px + 10].mean()
        # bright across the whole tube, the axis (where the truth puts the needle) included
        across = np.abs(offsets) <= max(half_px - 1.0, 1.0)
        assert prof[across].min() > flank + 15, (seed, prof.round())
        assert abs(offsets[np.argmax(prof)]) <= half_px + 2.0, (seed, prof.round())


def test_sim_command_writes_a_scatterer_needle_sequence_that_says_so(tmp_path, capsys):
    out = tmp_path / "s"
    assert cli_main(["sim", "--scenario", "insertion", "--seed", "5", "--frames", "6", "--size", "160x128",
                     "--needle-style", "scatter", "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["needle_style"] == "scatter" and "--needle-style scatter" in meta["command"]
    lines = read_jsonl(out / "truth.jsonl")
    assert all(r["sim"]["needle_style"] == "scatter" for r in lines if r["needle"])
    frame = cv2.imread(str(out / "frames" / "00005.png"), cv2.IMREAD_GRAYSCALE)
    sim = Simulator(SimConfig(width_px=160, height_px=128, fps=15, seed=5, scenario="insertion", n_frames=6,
                              needle_style="scatter"))
    assert np.array_equal(frame, sim.render(5).image)
    with pytest.raises(SystemExit):  # argparse names the choices
        cli_main(["sim", "--needle-style", "bubbles", "--out", str(tmp_path / "x")])
    assert "invalid choice: 'bubbles'" in capsys.readouterr().err


def test_an_unknown_needle_style_is_a_user_error():
    with pytest.raises(Exception, match="needle style 'bubbles'"):
        Simulator(SimConfig(needle_style="bubbles"))


def test_a_walls_needle_shows_its_far_wall_as_bright_as_the_near_one():
    """Single-scattering simulators (PyMUST) draw a tube as two equal walls; our scanner-like
    specular needle has its far wall in the near one's shadow and ringing below."""
    offsets = np.arange(-24, 25, 0.5)
    for seed in (1, 2, 3):
        spec = _sim(seed=seed).render(40)
        walls = _sim(seed=seed, needle_style="walls").render(40)
        assert walls.truth["needle"] == spec.truth["needle"] and walls.truth["sim"]["needle_style"] == "walls"
        half_px = 0.5 * GAUGE_MM[walls.truth["sim"]["gauge"]] / walls.spacing_mm[0]
        n = walls.truth["needle"]
        tip, tail = np.array(n["tip_px"]), np.array(n["shaft_px"][0])
        chord = half_px / abs((tip - tail)[0] / np.hypot(*(tip - tail)))  # the walls' vertical half-spacing
        near, far = np.abs(offsets + chord) <= 1.5, np.abs(offsets - chord) <= 1.5
        pw, ps = _across_profile(walls, offsets), _across_profile(spec, offsets)
        flank = pw[np.abs(offsets) >= chord + 10].mean()
        ratio_walls = (pw[far].max() - flank) / (pw[near].max() - flank)
        ratio_spec = (ps[far].max() - flank) / (ps[near].max() - flank)
        assert ratio_walls > 0.85 and ratio_spec < 0.7, (seed, ratio_walls, ratio_spec)


def test_needle_style_shares_in_training_samples():
    styles = [make_sample(seed, needle_styles={"scatter": 0.25, "walls": 0.3}).truth for seed in range(100000, 100040)]
    kinds = [t["sim"].get("needle_style", "specular") for t in styles if t["needle"]]
    assert kinds.count("walls") >= 4 and kinds.count("scatter") >= 3 and kinds.count("specular") >= 6, kinds
    with pytest.raises(ValueError, match="summing to at most 1"):
        make_sample(1, needle_styles={"scatter": 0.7, "walls": 0.5})


def test_needle_styles_in_training_samples_change_only_the_needle():
    scatter = specular = 0
    for seed in range(100000, 100024):
        a, b = make_sample(seed), make_sample(seed, needle_styles=True)
        same = ("frame", "t_s", "spacing_mm", "needle", "target", "trajectory", "region_px")
        assert all(a.truth.get(k) == b.truth.get(k) for k in same), seed
        assert all((a.masks[k] == b.masks[k]).all() for k in a.masks), seed
        differs = not np.array_equal(a.image, b.image)
        if a.truth["needle"] is None:
            assert not differs
        else:
            scatter += differs
            specular += not differs
    assert scatter >= 3 and specular >= 6, (scatter, specular)  # about 35 % of the needles


def _brute_wall_field(pixels, start, d, length, amp, sigma, wavevectors, carrier, step=0.02):
    """The coherent wall summed point by point, every ``step`` px (what wall_field integrates)."""
    t = np.arange(0.0, length, step) + step / 2
    pts = start[None, :] + t[:, None] * d[None, :]
    rho = pixels[:, None, :] - pts[None, :, :]
    h = np.exp(-0.5 * (rho[..., 0] ** 2 / sigma[0] ** 2 + rho[..., 1] ** 2 / sigma[1] ** 2))
    total = np.zeros(len(pixels), complex)
    for k in wavevectors:
        total += (h * np.exp(1j * (rho @ k))).sum(axis=1) * step
    total *= np.exp(-1j * carrier * pixels[:, 1])
    return total * amp / np.sqrt(np.pi * sigma[0] * sigma[1]) / len(wavevectors)


def test_a_coherent_wall_in_closed_form_matches_the_sum_of_its_points():
    from guidance.sim.coherent import round_trip_wavevectors, wall_field
    k = round_trip_wavevectors(0.06, 0.15, np.array([-10.0, 0.0, 10.0]), 20.0)
    carrier = 4 * np.pi * 0.06 / 0.15
    rng = np.random.default_rng(0)
    for angle in (0.0, 8.0, 25.0):
        d = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
        start = np.array([10.3, 20.7])
        pixels = start + 15 * d + rng.uniform(-25, 25, (40, 2))  # about the wall, past its ends too
        got = wall_field(pixels, start, d, 30.0, np.full(8, 2.0), (3.0, 1.5), k, carrier)
        want = _brute_wall_field(pixels, start, d, 30.0, 2.0, (3.0, 1.5), k, carrier)
        assert np.allclose(got, want, atol=2e-3 * np.abs(want).max() + 1e-12), angle


def test_a_coherent_walls_needle_fades_when_no_wave_meets_its_walls_square_on():
    """Imaged by steered plane waves, a continuous wall echoes where its normal bisects a transmit
    and a receive direction: a flat wall is bright, a steep one cancels along its length."""
    from guidance.sim.coherent import round_trip_wavevectors, wall_field
    k = round_trip_wavevectors(0.06, 0.15, np.zeros(1), 10.0)
    carrier = 4 * np.pi * 0.06 / 0.15
    peak = {}
    for angle in (0.0, 3.0, 30.0):
        d = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
        start = np.array([0.0, 0.0])
        mid = start + 40 * d
        pixels = mid + np.arange(-4, 5)[:, None] * np.array([-d[1], d[0]])  # across the wall's middle
        peak[angle] = np.abs(wall_field(pixels, start, d, 80.0, np.ones(4), (3.0, 1.5), k, carrier)).max()
    assert peak[3.0] > 0.5 * peak[0.0] and peak[30.0] < 0.01 * peak[0.0], peak


def test_a_coherent_needle_changes_only_the_needle_echo_and_keeps_its_truth():
    for seed in (1, 2):
        spec = _sim(seed=seed).render(40)
        coh = _sim(seed=seed, needle_style="coherent").render(40)
        assert coh.truth["needle"] == spec.truth["needle"] and coh.truth["sim"]["needle_style"] == "coherent"
        assert (coh.masks["needle"] == spec.masks["needle"]).all()
        # the echo, its ghost bands (up to 3 diameters deep, up to 8 mm past the tip) and the PSF's reach
        n = coh.truth["needle"]
        tip, tail = np.array(n["tip_px"]), np.array(n["shaft_px"][0])
        past = tip + (tip - tail) / np.hypot(*(tip - tail)) * 8.5 / coh.spacing_mm[0]
        line = cv2.line(coh.masks["needle"].copy(), tuple(int(v) for v in tip), tuple(int(v) for v in past), 1, 3)
        near = cv2.dilate(line, np.ones((101, 101), np.uint8)) > 0
        assert np.array_equal(coh.image[~near], spec.image[~near])
        shaft = coh.masks["needle"] > 0
        assert np.abs(coh.image[shaft].astype(int) - spec.image[shaft]).mean() > 10


def test_an_oblique_strand_is_a_straight_needle_like_line_in_the_soft_tissue_only():
    long = 0
    for seed in range(1, 13):
        cfg = dict(width_px=320, height_px=320, seed=seed, scenario="no_needle")
        plain = Simulator(SimConfig(**cfg)).render(10)
        strand = Simulator(SimConfig(**cfg, oblique_strands=1)).render(10)
        assert strand.truth == plain.truth and all((strand.masks[k] == plain.masks[k]).all() for k in plain.masks)
        diff = strand.image.astype(float) - plain.image.astype(float)
        assert diff.max() > 20, seed
        ys, xs = np.nonzero(diff > 0.5 * diff.max())
        bone = np.array(plain.truth["target"]["bone_px"])
        assert (ys < np.interp(xs, bone[:, 0], bone[:, 1]) + 3).all(), seed  # above the bone
        evals, evecs = np.linalg.eigh(np.cov(np.column_stack([xs, ys]).T.astype(float)))
        if math.sqrt(12 * evals[-1]) < 25:  # too short to tell a line from a blob at half its peak
            continue
        long += 1
        dx, dy = evecs[:, -1]
        assert 10 <= math.degrees(math.atan2(abs(dy), abs(dx))) <= 62, seed  # at a needle's angles
        assert evals[0] < 0.06 * evals[-1], seed  # straight and thin
    assert long >= 6, long


@pytest.mark.parametrize("variety", ["distractors", "shadowless_bone", "bright_fascias"])
def test_training_varieties_change_only_the_image_of_about_their_share_of_samples(variety):
    changed = 0
    for seed in range(100000, 100016):
        a, b = make_sample(seed), make_sample(seed, **{variety: 0.5})
        assert a.truth == b.truth and all((a.masks[k] == b.masks[k]).all() for k in a.masks), seed
        changed += not np.array_equal(a.image, b.image)
    assert 3 <= changed <= 13, changed  # about half the samples


def test_a_shadowless_bone_fills_only_the_region_under_it_and_keeps_the_truth():
    """Training variety for frames of full-wave simulators (k-Wave), where a smooth bone casts no
    shadow: the tissue is mirrored under it. Above the bone the frame is as before; under it, it is
    no longer dark."""
    for seed in range(1, 7):
        cfg = dict(width_px=320, height_px=320, seed=seed, scenario="no_needle", depth_mm=30.0)
        plain = Simulator(SimConfig(**cfg)).render(5)
        filled = Simulator(SimConfig(**cfg, shadowless_bone=True)).render(5)
        assert filled.truth == plain.truth and all((filled.masks[k] == plain.masks[k]).all() for k in plain.masks)
        bone = np.array(plain.truth["target"]["bone_px"])
        rows = np.arange(320)[:, None]
        bone_y = np.interp(np.arange(320), bone[:, 0], bone[:, 1], left=np.nan, right=np.nan)[None, :]
        mm = 1.0 / plain.spacing_mm[1]
        above = rows < bone_y - 2.5 * mm
        under = (rows > bone_y + 1.5 * mm) & (rows < bone_y + 6 * mm)
        # as before, but for the grey calibration's median (soft tissue near the bone): a level or two
        moved = np.abs(filled.image[above].astype(int) - plain.image[above])
        assert np.percentile(moved, 99) <= 2 and moved.mean() < 0.5, seed
        tissue = np.median(plain.image[above & (rows > 3 * mm)])
        before, after = np.mean(plain.image[under]), np.mean(filled.image[under])
        assert before < 0.3 * tissue, seed  # a shadow (some are grey)
        assert after > max(0.35 * tissue, before + 15), seed  # echoes like tissue at 0.3-1 of its amplitude


def test_a_bright_fascia_is_a_long_line_above_the_bone_and_keeps_the_truth():
    """The distractor for a bone without shadow: a long line as bright as the bone in the soft tissue,
    which the detector must not take for the bone."""
    for seed in range(1, 5):
        cfg = dict(width_px=320, height_px=320, seed=seed, scenario="no_needle", depth_mm=30.0)
        plain = Simulator(SimConfig(**cfg)).render(5)
        fascia = Simulator(SimConfig(**cfg, bright_fascias=1)).render(5)
        assert fascia.truth == plain.truth and all((fascia.masks[k] == plain.masks[k]).all() for k in plain.masks)
        diff = fascia.image.astype(float) - plain.image.astype(float)
        ys, xs = np.nonzero(diff > 0.5 * diff.max())
        assert diff.max() > 40, seed
        bone = np.array(plain.truth["target"]["bone_px"])
        assert (ys < np.interp(xs, bone[:, 0], bone[:, 1]) - 1.0 / plain.spacing_mm[1]).all(), seed  # above it
        assert np.ptp(xs) > 0.3 * 320 * 0.9, seed  # long
        on_bone = plain.image[np.round(bone[:, 1]).astype(int).clip(0, 319), np.round(bone[:, 0]).astype(int)]
        assert np.percentile(fascia.image[ys, xs], 75) > 0.5 * np.median(on_bone), seed  # about as bright
