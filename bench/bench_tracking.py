"""Tracking and trajectory benchmark: jitter, intercept error, gap recovery, time per frame.

Runs on synthetic detections with known truth (always) and, when the
simulator and detector are installed, on simulated sequences through the real
detector. Prints one JSON object.

    python bench/bench_tracking.py [--frames N] [--sim-frames N] [--no-sim]

With the simulator it also runs the two real PLUS sequences in ../shared/data/plus
(no needle in them: every needle shown is false, every needle_lost alert noise).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace

import cv2
import numpy as np

from guidance.trajectory import GuidanceStage, compute_trajectory
from guidance.tracking import TrackStage
from guidance.types import Detection, Frame, FrameResult, NeedleDetection, TargetDetection

FPS = 30.0
SPACING = (0.08, 0.08)          # mm/px, a linear probe at ~4 cm depth on 512 px
SIZE = (512, 512)               # (h, w)


# --- synthetic scene with known truth --------------------------------------------

def true_surface(w: int = SIZE[1]) -> np.ndarray:
    xs = np.arange(20.0, w - 20.0, 1.0)
    return np.stack([xs, 380 + 18 * np.sin(xs / 80.0)], axis=1)


def true_needle(i: int, speed_mm_s: float = 3.0, static: bool = False) -> NeedleDetection:
    """Needle entering at 45 deg from the upper left, advancing at ``speed_mm_s``."""
    u = np.array([math.cos(math.radians(45)), math.sin(math.radians(45))])
    tip0 = np.array([40.0, 60.0]) + 60 * u
    adv_px = 0.0 if static else speed_mm_s / SPACING[0] * i / FPS
    tip = tip0 + adv_px * u
    tail = np.array([40.0, 60.0]) - 60 * u
    return NeedleDetection(tuple(tip), tuple(tail), 1.0)


class NoisyDetector:
    """Truth plus detector-like errors: tip noise larger along the shaft, rare outliers, misses."""

    def __init__(self, seed: int, along_sd_px=1.0, across_sd_px=0.5, tail_sd_px=2.0,
                 surface_sd_px=1.0, outlier_rate=0.01, miss_rate=0.03):
        self.rng = np.random.default_rng(seed)
        self.along, self.across, self.tail = along_sd_px, across_sd_px, tail_sd_px
        self.surface_sd, self.outlier_rate, self.miss_rate = surface_sd_px, outlier_rate, miss_rate
        self.surface = true_surface()

    def __call__(self, needle: NeedleDetection | None) -> Detection:
        rng = self.rng
        surf = self.surface + np.c_[np.zeros(len(self.surface)), rng.normal(0, self.surface_sd, len(self.surface))]
        target = TargetDetection("cartilage", surf, surf + [0, 25.0], 2.0)
        if needle is None or rng.random() < self.miss_rate:
            return Detection(None, target)
        if rng.random() < self.outlier_rate:   # a bright tendon taken for the needle
            tip = rng.uniform(50, 450, 2)
            return Detection(NeedleDetection(tuple(tip), tuple(tip + rng.uniform(-150, 150, 2)), 0.6), target)
        u = needle.direction
        n = np.array([-u[1], u[0]])
        tip = np.asarray(needle.tip_px) + rng.normal(0, self.along) * u + rng.normal(0, self.across) * n
        tail = np.asarray(needle.tail_px) + rng.normal(0, self.tail, 2)
        return Detection(NeedleDetection(tuple(tip), tuple(tail), 0.9), target)


def speckle(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 160, SIZE).astype(np.uint8), (0, 0), 1.2)


def render(base: np.ndarray, needle: NeedleDetection | None) -> np.ndarray:
    img = base.copy()
    if needle is not None:
        cv2.line(img, tuple(int(v) for v in needle.tail_px), tuple(int(v) for v in needle.tip_px), 250, 3)
    return img


def mm(vec_px) -> np.ndarray:
    return np.asarray(vec_px, float) * SPACING


def rms_jitter_mm(tips_px: np.ndarray) -> float:
    """RMS distance of the tip from its own mean position, in mm."""
    d = mm(tips_px - tips_px.mean(axis=0))
    return float(np.sqrt(np.mean(np.sum(d**2, axis=1))))


def rms_error_mm(tips_px: np.ndarray, truth_px: np.ndarray) -> float:
    d = mm(tips_px - truth_px)
    return float(np.sqrt(np.mean(np.sum(d**2, axis=1))))


def run_stages(frames, detections, track: bool = True, timed: bool = False):
    ts, gs = TrackStage(), GuidanceStage()
    out, times_ms = [], []
    for f, d in zip(frames, detections):
        r = FrameResult(f, detection=d)
        t0 = time.perf_counter()
        r = gs(ts(r)) if track else gs(r)
        times_ms.append((time.perf_counter() - t0) * 1000.0)
        out.append(r)
    return (out, times_ms) if timed else out


def synthetic_benchmarks(n_frames: int) -> dict:
    n_frames = max(n_frames, 270)   # room for five 10-frame gaps and a 2 s gap
    base = speckle()
    res: dict = {"spacing_mm": list(SPACING), "fps": FPS,
                 "detector_noise": "tip sd 1.0 px along / 0.5 px across shaft, tail 2 px, surface 1 px, "
                                   "1% outliers, 3% misses"}

    # (1) static needle jitter
    det = NoisyDetector(1)
    truth = [true_needle(0, static=True)] * n_frames
    frames = [Frame(render(base, truth[0]), i / FPS, i, i, SPACING) for i in range(n_frames)]
    dets = [det(t) for t in truth]
    out = run_stages(frames, dets)
    raw = np.array([d.needle.tip_px for d in dets[30:] if d.needle is not None and d.needle.confidence > 0.7])
    trk = np.array([r.needle.tip_px for r in out[30:] if r.needle is not None])
    res["static_jitter_mm"] = {"raw": round(rms_jitter_mm(raw), 4), "tracked": round(rms_jitter_mm(trk), 4)}

    # (2) intercept error during insertion while the tip is within 20 mm of the target
    det = NoisyDetector(2)
    truth = [true_needle(i) for i in range(n_frames)]
    frames = [Frame(render(base, t), i / FPS, i, i, SPACING) for i, t in enumerate(truth)]
    dets = [det(t) for t in truth]
    surf = true_surface()
    target_true = TargetDetection("cartilage", surf, surf + [0, 25.0])
    errs = {"tracked": [], "raw": []}
    for key, track in (("tracked", True), ("raw", False)):
        for t, r in zip(truth, run_stages(frames, dets, track=track)):
            tt = compute_trajectory(t, target_true, SPACING)
            if tt is None or tt.distance_mm > 20.0 or r.trajectory is None:
                continue
            errs[key].append(float(np.hypot(*mm(np.subtract(r.trajectory.intercept_px, tt.intercept_px)))))
    res["intercept_error_mm_within_20mm"] = {
        k: {"n": len(v), "mean": round(float(np.mean(v)), 3), "p95": round(float(np.percentile(v, 95)), 3)}
        for k, v in errs.items() if v}

    # (3) 10-frame gaps during insertion, and a 2 s gap
    det = NoisyDetector(3, outlier_rate=0.0, miss_rate=0.0)
    gaps = [(60 + 45 * k, 10) for k in range(5)]
    hidden = np.zeros(n_frames, bool)
    for start, length in gaps:
        hidden[start:start + length] = True
    dets = [det(None if hidden[i] else t) for i, t in enumerate(truth)]
    out = run_stages(frames, dets)
    recov = []
    for start, length in gaps:
        back = start + length
        for k in range(back, min(back + 30, n_frames)):
            r = out[k]
            ok = (r.track.state == "tracking" and r.needle is not None
                  and np.hypot(*mm(np.subtract(r.needle.tip_px, truth[k].tip_px))) < 1.0)
            if ok:
                recov.append(k - back + 1)
                break
        else:
            recov.append(None)
    res["gap10_recovery_frames"] = recov
    gap = int(2.0 * FPS)
    dets = [det(truth[i] if i < 60 or i >= 60 + gap else None) for i in range(60 + gap + 30)]
    out = run_stages(frames[:len(dets)], dets)
    during = out[60:60 + gap]
    coast_frames = sum(r.needle is not None for r in during)
    after_coast = sum(r.needle is not None for r in during if r.frame.timestamp_s - 59 / FPS > 0.5 + 1e-6)
    res["gap_2s"] = {"frames": gap, "coasting_frames_shown": coast_frames,
                     "frames_shown_after_coast_s": after_coast}

    # (4) time per frame: track + guidance (flow runs on missed frames)
    det = NoisyDetector(4, miss_rate=0.1)
    dets = [det(t) for t in truth]
    for _ in range(2):   # second pass measured (warm caches)
        out, times = run_stages(frames, dets, timed=True)
    t_all = np.array(times)
    missed = np.array([d.needle is None for d in dets])
    res["time_ms_per_frame"] = {"p50": round(float(np.median(t_all)), 3),
                                "p95": round(float(np.percentile(t_all, 95)), 3),
                                "mean": round(float(t_all.mean()), 3),
                                "missed_frames_p50": round(float(np.median(t_all[missed])), 3) if missed.any() else None}
    return res


# --- simulated sequences through the real detector ------------------------------------

def sim_available() -> str | None:
    try:
        import guidance.detect  # noqa: F401
        import guidance.sim  # noqa: F401
        from guidance.sim import SimConfig, Simulator  # noqa: F401
        from guidance.detect import load_detector  # noqa: F401
    except Exception as exc:  # not merged yet / broken: report why
        return f"{type(exc).__name__}: {exc}"
    return None


SIM_SEQUENCES = (("insertion", 1), ("insertion", 2), ("insertion", 3), ("steep", 1), ("out_of_plane", 2))


def sim_benchmarks(max_frames: int, sequences=SIM_SEQUENCES) -> dict:
    """The same figures on simulated sequences through the real detector (run once per frame).

    The intercept error is measured with the detector and with truth-perfect
    detections (the truth needle and surfaces fed to the same stages), which
    separates the tracking/trajectory part from the detector's, and is
    decomposed by swapping one detected quantity at a time into the truth.
    """
    from guidance.detect import load_detector
    from guidance.sim import SimConfig, Simulator

    detector = load_detector("auto")
    res: dict = {"detector": getattr(detector, "name", type(detector).__name__), "max_frames": max_frames}
    det_ms: list[float] = []

    def sequence(scenario: str, seed: int, static: bool = False, n_max: int = max_frames):
        sim = Simulator(SimConfig(scenario=scenario, seed=seed, width_px=SIZE[1], height_px=SIZE[0], fps=FPS))
        if static:
            # A still needle: every keyframe at the first pause's pose, no hand tremor, no probe
            # drift. Speckle, tissue motion and gain changes still vary from frame to frame.
            held = sim.plan.keys[1]
            sim.plan.keys = [replace(held, t_s=k.t_s) for k in sim.plan.keys]
            sim.plan.tremor = np.zeros_like(sim.plan.tremor)
            sim.drift_px[:] = sim.drift_px[0]
        frames, truths, dets = [], [], []
        for i in range(min(len(sim), n_max)):
            s = sim.render(i)
            f = Frame(s.image, float(s.t_s), i, i, tuple(s.spacing_mm))
            t0 = time.perf_counter()
            dets.append(detector.detect(s.image, f.spacing_mm))
            det_ms.append((time.perf_counter() - t0) * 1000)
            frames.append(f)
            truths.append(s.truth)
        return frames, truths, dets

    # (1) static needle
    frames, truths, dets = sequence("insertion", 1, static=True, n_max=min(max_frames, 150))
    sp = np.asarray(frames[0].spacing_mm)
    static = {}
    for key, track in (("raw", False), ("tracked", True)):
        tips = np.array([r.needle.tip_px if r.needle is not None else (np.nan, np.nan)
                         for r in run_stages(frames, dets, track=track)[15:]])
        ok = np.isfinite(tips).all(axis=1)
        # About the mean: counts a detector that settles on another tip position once as
        # "jitter" too; about a 0.5 s running mean: the frame-to-frame wobble a user sees.
        static[key] = {"frames": int(ok.sum()), "jitter_rms_mm": round(float(np.sqrt(np.mean(np.sum(
            ((tips[ok] - tips[ok].mean(axis=0)) * sp) ** 2, axis=1)))), 4) if ok.any() else None,
            "wobble_rms_mm": _wobble_mm((tips - tips[ok].mean(axis=0)) * sp, ok) if ok.any() else None}
    true_tip = truths[0]["needle"]["tip_px"] if truths[0].get("needle") else None
    res["static_needle"] = {"frames": len(frames), "true_tip_px": true_tip, **static}

    # (2) insertions: tip error and jitter, intercept error and its decomposition, the cone
    acc = _InterceptAccumulator()
    per_seq, times, gaps = {}, [], {}
    for scenario, seed in sequences:
        frames, truths, dets = sequence(scenario, seed)
        name = f"{scenario}_{seed}"
        per_seq[name] = _tip_figures(frames, truths, dets)
        runs = {"raw": run_stages(frames, dets, track=False), "tracked": run_stages(frames, dets)}
        perfect = [Detection(_truth_needle(t), _truth_target(t)) for t in truths]
        runs["perfect_raw"] = run_stages(frames, perfect, track=False)
        runs["perfect_tracked"] = run_stages(frames, perfect)
        per_seq[name]["intercept_error_mm_within_20mm"] = acc.add(frames, truths, dets, runs)
        # How much the drawn aim point jumps: its wobble about its own 0.5 s running mean, all frames.
        per_seq[name]["intercept_wobble_mm"] = {key: _aim_wobble_mm(runs[key], frames[0].spacing_mm)
                                                for key in ("raw", "tracked")}
        times += run_stages(frames, dets, timed=True)[1]
        gaps[name] = _gap_report(runs["tracked"], dets, np.asarray(frames[0].spacing_mm))
    res["spacing_mm"] = list(frames[0].spacing_mm)
    res["sequences"] = per_seq
    res["intercept_wobble_mm_mean_over_sequences"] = {
        key: round(float(np.mean([q["intercept_wobble_mm"][key] for q in per_seq.values()
                                  if q["intercept_wobble_mm"][key] is not None])), 3) for key in ("raw", "tracked")}
    res["intercept_error_mm_within_20mm"] = acc.summary()
    t_all = np.array(times)
    res["time_ms_per_frame"] = {"p50": round(float(np.median(t_all)), 3),
                                "p95": round(float(np.percentile(t_all, 95)), 3),
                                "mean": round(float(t_all.mean()), 3)}

    # (3) gaps: recovery after the detector sees the needle again, nothing shown after the coast
    res["gaps_in_detection"] = gaps

    # (4) no needle at all: every needle the detector reports is false; none may raise needle_lost
    frames, truths, dets = sequence("no_needle", 1)
    rs = run_stages(frames, dets)
    res["no_needle_scene"] = {"frames": len(frames), "false_detections": sum(d.needle is not None for d in dets),
                              "frames_needle_shown": sum(r.needle is not None for r in rs),
                              "needle_lost_alerts": _onsets(rs, "needle_lost")}
    res["needle_lost_alerts"] = {name: g.pop("needle_lost_alerts") for name, g in gaps.items()}
    res["detect_ms_p50"] = round(float(np.median(det_ms)), 1)
    return res


def _truth_needle(t: dict) -> NeedleDetection | None:
    n = t.get("needle")
    return None if n is None else NeedleDetection(tuple(n["tip_px"]), tuple(n["shaft_px"][0]), 1.0)


def _truth_target(t: dict) -> TargetDetection | None:
    g = t.get("target")
    if g is None:
        return None
    return TargetDetection(g["kind"], np.asarray(g["surface_px"], float), np.asarray(g["bone_px"], float),
                           g["cartilage_thickness_mm"])


def _tip_figures(frames, truths, dets) -> dict:
    """Tip error and jitter, raw and tracked, on one sequence."""
    spacing = np.asarray(frames[0].spacing_mm)
    runs = {"raw": run_stages(frames, dets, track=False), "tracked": run_stages(frames, dets)}
    true_tips = np.array([n.tip_px if (n := _truth_needle(t)) is not None else (np.nan, np.nan) for t in truths])
    ests = {key: np.array([r.needle.tip_px if r.needle is not None else (np.nan, np.nan) for r in rs])
            for key, rs in runs.items()}
    # Jitter: the tip error's wobble about its own 0.5 s running mean (bias and slow lag removed),
    # on the frames where both raw and tracked tips exist across the whole window. The sim's
    # needle is never still (tremor, probe drift), so this stands in for "static needle jitter".
    both = np.isfinite(true_tips).all(axis=1) & np.isfinite(ests["raw"]).all(axis=1) \
        & np.isfinite(ests["tracked"]).all(axis=1)
    out = {"frames": len(frames), "frames_with_true_needle": int(np.isfinite(true_tips[:, 0]).sum()),
           "frames_needle_shown": {}, "tip_error_rms_mm": {}, "tip_jitter_rms_mm": {}}
    for key in runs:
        err_mm = (ests[key] - true_tips) * spacing
        ok = np.isfinite(err_mm).all(axis=1)
        out["frames_needle_shown"][key] = int(ok.sum())
        out["tip_error_rms_mm"][key] = round(float(np.sqrt(np.mean(np.sum(err_mm[ok] ** 2, axis=1)))), 3) \
            if ok.any() else None
        out["tip_jitter_rms_mm"][key] = _wobble_mm(err_mm, both)
    return out


class _InterceptAccumulator:
    """Intercept errors against the simulator's truth while the true tip is within 20 mm of the target."""

    RUNS = ("raw", "tracked", "perfect_raw", "perfect_tracked")

    def __init__(self) -> None:
        self.err = {k: [] for k in self.RUNS}
        self.missing = {k: 0 for k in self.RUNS}   # truth has an intercept, the run has none
        self.swap = {"tip_across": [], "angle": [], "surface": []}
        self.angle_by_len: list[tuple[float, float]] = []
        self.kind_mismatch = 0
        self.cone_in: list[tuple[float, bool]] = []
        self.tracked_by: list[tuple[float, float, float]] = []   # (true distance mm, visible shaft px, error mm)

    def add(self, frames, truths, dets, runs) -> dict:
        seq = {k: [] for k in self.RUNS}
        for i, t in enumerate(truths):
            tt = t.get("trajectory")
            if not tt or tt["distance_mm"] > 20.0:
                continue
            sp = np.asarray(frames[i].spacing_mm)
            ti = np.asarray(tt["intercept_px"])
            for key in self.RUNS:
                traj = runs[key][i].trajectory
                if traj is None:
                    self.missing[key] += 1
                    continue
                e = float(np.hypot(*((np.asarray(traj.intercept_px) - ti) * sp)))
                self.err[key].append(e)
                seq[key].append(e)
            self._decompose(t, dets[i], sp, ti)
            traj = runs["tracked"][i].trajectory
            if traj is not None:
                shaft_px = float(np.hypot(*np.subtract(t["needle"]["tip_px"], t["needle"]["shaft_px"][0])))
                err_mm = float(np.hypot(*((np.asarray(traj.intercept_px) - ti) * sp)))
                self.tracked_by.append((tt["distance_mm"], shaft_px, err_mm))
            if traj is not None and traj.cone_px is not None:
                self.cone_in.append((tt["distance_mm"], _between(traj.cone_px, ti)))
        return {k: _stats(v) for k, v in seq.items()}

    def _decompose(self, truth: dict, det: Detection, sp, true_icpt) -> None:
        """Swap one detected quantity into the truth at a time; the intercept error each causes."""
        tn, tg = _truth_needle(truth), _truth_target(truth)

        def err(needle, target):
            tr = compute_trajectory(needle, target, tuple(sp))
            return None if tr is None else float(np.hypot(*((np.asarray(tr.intercept_px) - true_icpt) * sp)))

        if det.needle is not None:
            u_true, u_det = tn.direction, det.needle.direction
            tip_det, tip_true = np.asarray(det.needle.tip_px), np.asarray(tn.tip_px)
            # Tip moved across the shaft only (moving it along the line does not move the intercept).
            self.swap["tip_across"].append(err(NeedleDetection(tuple(tip_det), tuple(tip_det - 50 * u_true), 1), tg))
            self.swap["angle"].append(err(NeedleDetection(tuple(tip_true), tuple(tip_true - 50 * u_det), 1), tg))
            d_deg = math.degrees(math.atan2(u_true[0] * u_det[1] - u_true[1] * u_det[0], float(u_true @ u_det)))
            self.angle_by_len.append((float(np.hypot(*np.subtract(tn.tip_px, tn.tail_px))), abs(d_deg)))
        if det.target is not None:
            self.swap["surface"].append(err(tn, det.target))
            self.kind_mismatch += det.target.kind != truth["target"]["kind"]

    def summary(self) -> dict:
        lens = np.array(self.angle_by_len).reshape(-1, 2)
        bins = {}
        for lo, hi in ((0, 60), (60, 100), (100, 200), (200, 10_000)):
            m = (lens[:, 0] >= lo) & (lens[:, 0] < hi)
            if m.any():
                rms = float(np.sqrt(np.mean(lens[m, 1] ** 2)))
                bins[f"{lo}-{hi}px"] = {"n": int(m.sum()), "rms_deg": round(rms, 2)}
        cone = np.array(self.cone_in, dtype=float).reshape(-1, 2)
        by = np.array(self.tracked_by, dtype=float).reshape(-1, 3)
        by_distance = {f"{lo}-{hi}mm": _stats(list(by[(by[:, 0] >= lo) & (by[:, 0] < hi), 2]))
                       for lo, hi in ((0, 5), (5, 10), (10, 20.01))}
        by_shaft = {f"{lo}-{hi}px": _stats(list(by[(by[:, 1] >= lo) & (by[:, 1] < hi), 2]))
                    for lo, hi in ((0, 100), (100, 200), (200, 10_000))}
        return {
            **{k: _stats(v) for k, v in self.err.items()},
            "frames_without_intercept": self.missing,
            "tracked_by_true_distance": by_distance,
            "tracked_by_visible_shaft_length": by_shaft,
            "decomposition_one_detected_quantity_swapped_into_truth": {
                k: _stats([e for e in v if e is not None]) for k, v in self.swap.items()},
            "detector_angle_error_by_visible_shaft_length": bins,
            "surface_kind_differs_from_truth_frames": int(self.kind_mismatch),
            "cone_holds_true_intercept": {
                "all": round(float(cone[:, 1].mean()), 3) if len(cone) else None,
                "within_2mm": round(float(cone[cone[:, 0] < 2, 1].mean()), 3) if (cone[:, 0] < 2).any() else None,
                "beyond_2mm": round(float(cone[cone[:, 0] >= 2, 1].mean()), 3) if (cone[:, 0] >= 2).any() else None},
        }


def _between(cone_px, point) -> bool:
    """True when ``point`` lies between the cone's two lines (on the inner side of each)."""
    (a0, a1), (b0, b1) = [[np.asarray(p, float) for p in line] for line in cone_px]

    def side(p0, p1):
        d, w = p1 - p0, np.asarray(point, float) - p0
        return np.sign(d[0] * w[1] - d[1] * w[0])
    return bool(side(a0, a1) * side(b0, b1) <= 0)


def _aim_wobble_mm(results, spacing_mm) -> float | None:
    pts = np.array([r.trajectory.intercept_px if r.trajectory is not None else (np.nan, np.nan) for r in results])
    pts = pts * np.asarray(spacing_mm)
    ok = np.isfinite(pts).all(axis=1)
    return _wobble_mm(np.where(ok[:, None], pts, 0.0), ok)


def _onsets(results, alert: str) -> int:
    """How many times ``alert`` starts (what a user notices and a timeline marks)."""
    on = [alert in r.alerts for r in results]
    return int(sum(1 for prev, cur in zip([False] + on, on) if cur and not prev))


def _gap_report(rs, dets, spacing, min_gap: int = 10, coast_s: float = 0.5) -> dict:
    """Runs of >= ``min_gap`` frames where the detector saw no needle, after it had seen one.

    For each: frames from the detector's return until the track is ``tracking``
    within 0.5 mm of the detected tip, and over all gaps, how many frames
    beyond ``coast_s`` still showed a needle (must be 0).
    """
    seen = np.array([d.needle is not None for d in dets])
    gaps, shown_late, late_frames = [], 0, 0
    i = int(np.argmax(seen)) if seen.any() else len(seen)
    while i < len(seen):
        if seen[i]:
            i += 1
            continue
        j = i
        while j < len(seen) and not seen[j]:
            j += 1
        t_last = rs[i - 1].frame.timestamp_s
        for k in range(i, j):
            if rs[k].frame.timestamp_s - t_last > coast_s + 1e-6:
                late_frames += 1
                shown_late += rs[k].needle is not None
        if j - i >= min_gap and j < len(seen):
            rec = None
            for k in range(j, min(j + 30, len(rs))):
                rk, dk = rs[k], dets[k].needle
                if (rk.track.state == "tracking" and rk.needle is not None and dk is not None
                        and np.hypot(*(np.subtract(rk.needle.tip_px, dk.tip_px) * spacing)) < 0.5):
                    rec = k - j + 1
                    break
            gaps.append({"gap_frames": j - i, "track_recovered_within_frames": rec})
        i = j
    return {"gaps": gaps, "frames_beyond_coast": late_frames, "needle_shown_in_those_frames": int(shown_late),
            "needle_lost_alerts": _onsets(rs, "needle_lost")}


def _stats(v: list[float]) -> dict | None:
    if not v:
        return None
    return {"n": len(v), "mean": round(float(np.mean(v)), 3), "median": round(float(np.median(v)), 3),
            "p95": round(float(np.percentile(v, 95)), 3)}


def _wobble_mm(err_mm: np.ndarray, valid: np.ndarray, window: int = 15) -> float | None:
    """RMS of ``err_mm`` about its centred running mean, over frames whose whole window is valid."""
    k = np.ones(window)
    full = np.convolve(valid.astype(float), k, mode="same") >= window - 0.5
    e = np.where(valid[:, None], err_mm, 0.0)
    mean = np.stack([np.convolve(e[:, j], k, mode="same") / window for j in range(2)], axis=1)
    d = (err_mm - mean)[full]
    return round(float(np.sqrt(np.mean(np.sum(d**2, axis=1)))), 4) if len(d) else None


SHARED_PLUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "plus")


def real_benchmarks(folder: str = SHARED_PLUS) -> dict:
    """The real PLUS sequences (bone, spine phantom: no needle in them), through the full pipeline.

    Any needle is a false detection; a needle_lost alert there is noise a user would see.
    """
    from guidance.pipeline import run_offline
    from guidance.sources import open_source
    from guidance.stages import build_stages

    if not os.path.isdir(folder):
        return {"skipped": f"{folder} not found"}
    out = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".mha"):
            continue
        rs = list(run_offline(open_source(os.path.join(folder, name)), build_stages()))
        out[name] = {"frames": len(rs), "frames_false_needle_shown": sum(r.needle is not None for r in rs),
                     "frames_with_an_alert": sum(bool(r.alerts) for r in rs),
                     "needle_lost_alerts": _onsets(rs, "needle_lost")}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=360, help="frames per synthetic sequence")
    ap.add_argument("--sim-frames", type=int, default=240, help="frames per simulated sequence (detector is slow)")
    ap.add_argument("--no-sim", action="store_true")
    args = ap.parse_args(argv)
    report = {"load_avg": [round(v, 2) for v in os.getloadavg()], "cpus": os.cpu_count(),
              "synthetic": synthetic_benchmarks(args.frames)}
    why = "disabled (--no-sim)" if args.no_sim else sim_available()
    report["sim"] = {"skipped": why} if why else sim_benchmarks(args.sim_frames)
    report["real_plus_no_needle"] = {"skipped": why} if why else real_benchmarks()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
