"""Session metrics on scripted insertions whose truth is known from their geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from guidance.training.metrics import MetricParams, analyse, overall_score
from guidance.training.scripted import Script, scripted_insertion


def test_two_redirections_are_counted_as_two():
    s = scripted_insertion(Script(pass_angles_deg=(30.0, 38.0), noise_px=0.5))
    assert s.truth["redirections"] == 2
    m = analyse(s.records, s.events).metrics
    assert m.redirections == 2
    assert m.withdrawals == 2
    assert not m.first_pass_success
    assert m.reached_target


def test_clean_single_pass_is_a_first_pass_success():
    s = scripted_insertion(Script(pass_angles_deg=(), noise_px=0.5))
    m = analyse(s.records, s.events).metrics
    assert (m.redirections, m.withdrawals) == (0, 0)
    assert m.first_pass_success and m.reached_target
    assert m.final_tip_to_target_mm < 0.3
    assert not m.touched_bone
    # no withdrawal, no loss: the best score
    assert overall_score(m) == pytest.approx(100.0)


def test_withdraw_and_readvance_on_the_same_line_is_not_a_redirection():
    # the pass angle equals the final angle: a withdrawal, no change of direction
    final = scripted_insertion(Script(pass_angles_deg=())).truth["final_angle_deg"]
    s = scripted_insertion(Script(pass_angles_deg=(final,), noise_px=0.5))
    m = analyse(s.records, s.events).metrics
    assert m.withdrawals == 1
    assert m.redirections == 0


def test_redirection_threshold_is_the_documented_parameter():
    s = scripted_insertion(Script(pass_angles_deg=(30.0, 38.0)))
    strict = analyse(s.records, s.events, params=MetricParams(redirect_deg=20.0)).metrics
    assert strict.withdrawals == 2 and strict.redirections == 0


def test_path_length_matches_the_geometry():
    s = scripted_insertion(Script(noise_px=0.5))
    m = analyse(s.records, s.events).metrics
    assert m.units == "mm"
    assert m.path_length_mm == pytest.approx(s.truth["path_length_mm"], rel=0.05)


def test_tip_lost_episode_and_visible_fraction():
    s = scripted_insertion(Script(lost_s=(3.0, 3.6)))
    m = analyse(s.records, s.events).metrics
    assert m.tip_lost_episodes == 1
    assert m.tip_lost_total_s == pytest.approx(0.6, abs=1.0 / s.script.fps + 1e-6)
    assert m.needle_visible_fraction == pytest.approx(s.truth["visible_fraction"], abs=0.01)
    # a one-frame dropout is not an episode
    short = scripted_insertion(Script(lost_s=(3.0, 3.06)))
    assert analyse(short.records).metrics.tip_lost_episodes == 0


def test_coasting_frames_are_not_sightings():
    s = scripted_insertion(Script(pass_angles_deg=()))
    for rec in s.records[30:40]:
        rec["tracking"] = "coasting"
    m = analyse(s.records).metrics
    assert m.tip_lost_episodes == 1
    assert m.needle_visible_fraction < 1.0


def test_driving_into_bone_is_reported():
    s = scripted_insertion(Script(pass_angles_deg=(), final="bone"))
    m = analyse(s.records, s.events).metrics
    assert m.touched_bone
    assert m.min_tip_to_bone_mm == pytest.approx(0.0, abs=0.05)
    assert overall_score(m) <= 80.0


def test_time_to_target_and_key_frames():
    s = scripted_insertion(Script(pass_angles_deg=()))
    a = analyse(s.records, s.events)
    m = a.metrics
    # the final pass advances at a known speed from 40 px deep after a 0.5 s pause
    depth_px = float(np.hypot(*np.subtract(s.truth["target_px"], s.script.entry_px)))
    reach_px = depth_px - m.params.reach_mm / s.script.spacing_mm
    expected = 0.5 + (reach_px - 40.0) / s.script.advance_px_s
    assert m.time_to_target_s == pytest.approx(expected, abs=2.0 / s.script.fps)
    assert set(a.key_frames) == {"first_sight", "closest_approach", "injection"}
    assert a.key_frames["first_sight"] == 0
    # the injection event is on the records' own clock (not starting at 0)
    assert m.tip_to_target_at_injection_mm == pytest.approx(0.0, abs=0.3)


def test_without_spacing_lengths_are_in_pixels():
    s = scripted_insertion(Script(pass_angles_deg=()))
    for rec in s.records:
        rec.pop("spacing_mm")
    m = analyse(s.records).metrics
    assert m.units == "px"
    assert m.path_length_mm == pytest.approx(s.truth["path_length_mm"] / s.script.spacing_mm, rel=0.05)


def test_anisotropic_spacing_scales_each_axis():
    s = scripted_insertion(Script(pass_angles_deg=()))
    iso = analyse(s.records).metrics.path_length_mm
    tip = s.truth["tip_px"]
    d = np.diff(tip, axis=0)
    ratio_expected = np.sum(np.hypot(d[:, 0] * 0.1, d[:, 1] * 0.2)) / np.sum(np.hypot(d[:, 0] * 0.1, d[:, 1] * 0.1))
    aniso = analyse(s.records, spacing_mm=(0.1, 0.2)).metrics.path_length_mm
    assert aniso / iso == pytest.approx(ratio_expected, rel=0.02)


def test_smoothness_is_worse_for_a_shaky_hand():
    calm = analyse(scripted_insertion(Script(pass_angles_deg=())).records).metrics.smoothness_ldlj
    shaky = analyse(scripted_insertion(Script(pass_angles_deg=(), noise_px=2.0)).records).metrics.smoothness_ldlj
    assert shaky < calm


def test_no_needle_at_all_gives_empty_metrics_not_errors():
    s = scripted_insertion(Script(pass_angles_deg=()))
    for rec in s.records:
        rec["needle"] = None
        rec["tracking"] = "lost"
    m = analyse(s.records, s.events).metrics
    assert not m.reached_target and m.time_to_target_s is None
    assert m.needle_visible_fraction is None and m.path_length_mm is None
    d = m.to_dict()
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in d.values())


@pytest.mark.parametrize("scenario,seed", [("insertion", 0), ("insertion", 2), ("steep", 1)])
def test_simulator_redirect_is_counted_once(scenario, seed):
    """The simulator's scenarios withdraw and turn the needle once: its truth scores one redirection."""
    sim_mod = pytest.importorskip("guidance.sim")
    sim = sim_mod.Simulator(sim_mod.SimConfig(width_px=320, height_px=256, fps=15, seed=seed, scenario=scenario))
    records = [sim.render(i).truth for i in range(len(sim))]
    m = analyse(records).metrics
    assert m.redirections == 1 and m.withdrawals == 1
    assert m.reached_target
    assert m.final_tip_to_target_mm < 0.5  # the simulated tip stops just short of the cartilage


@pytest.mark.parametrize("seed", [0, 1])
def test_simulator_out_of_plane_is_one_tip_lost_episode(seed):
    """The tip rolls out of the plane and back: one episode, and its visible shaft end is not taken for the tip."""
    sim_mod = pytest.importorskip("guidance.sim")
    sim = sim_mod.Simulator(sim_mod.SimConfig(width_px=320, height_px=256, fps=15, seed=seed,
                                              scenario="out_of_plane"))
    records = [sim.render(i).truth for i in range(len(sim))]
    m = analyse(records).metrics
    assert m.tip_lost_episodes == 1
    assert m.withdrawals <= 1  # no false withdrawals from the visible end sliding back
    assert 0.2 < m.needle_visible_fraction < 0.95
