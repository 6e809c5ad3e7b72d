"""Practice mode on recorded or simulated sessions (Qt-free logic).

The session plays with the guidance hidden; at checkpoints, chosen where the
needle has moved or turned enough since the last one (or marked by an
instructor with a ``checkpoint`` event), the trainee clicks the needle tip
and the target. Each click is scored against the reference: the simulator's
truth when given, else the recorded detections. The run ends with a score and
the worst answers to review. ``ui/practice.py`` is the panel that drives it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..types import Spacing
from .series import SessionSeries, event_kind, event_time_s, point_polyline_distance, series_from_records


@dataclass(frozen=True)
class PracticeParams:
    move_mm: float = 3.0
    """A checkpoint after the tip travelled this far since the last one..."""
    turn_deg: float = 8.0
    """...or the shaft turned this much (summed) since the last one."""
    min_gap_s: float = 1.0
    """No two checkpoints closer in time than this."""
    max_checkpoints: int = 8
    tolerance_mm: float = 5.0
    """A click this far (or farther) from the truth scores 0; on the spot scores 100."""


@dataclass(frozen=True)
class Checkpoint:
    row: int
    """Index into the session's records."""
    t_s: float
    reason: str
    """'moved', 'turned' or 'instructor'."""
    tip_px: tuple[float, float]
    """Reference tip."""
    target_point_px: tuple[float, float] | None
    """Reference target point when one was set, else the target is the surface."""
    surface_px: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros((0, 2)))


@dataclass(frozen=True)
class Answer:
    checkpoint: Checkpoint
    tip_click_px: tuple[float, float] | None
    target_click_px: tuple[float, float] | None
    tip_error_mm: float | None
    """None when the trainee did not click (counts as a miss)."""
    target_error_mm: float | None
    nearest_target_px: tuple[float, float] | None
    """The point of the target closest to the target click (for feedback)."""
    score: float

    @property
    def worst_error_mm(self) -> float:
        errs = [e for e in (self.tip_error_mm, self.target_error_mm)]
        return math.inf if any(e is None for e in errs) else max(errs)


@dataclass(frozen=True)
class PracticeResult:
    score: float
    answers: tuple[Answer, ...]
    units: str

    def worst(self, n: int = 3) -> list[Answer]:
        """The ``n`` answers to review first: lowest score, then largest error."""
        return sorted(self.answers, key=lambda a: (a.score, -a.worst_error_mm))[:n]

    def summary_metrics(self) -> dict:
        tips = [a.tip_error_mm for a in self.answers if a.tip_error_mm is not None]
        tgts = [a.target_error_mm for a in self.answers if a.target_error_mm is not None]
        return {"checkpoints": len(self.answers), "units": self.units,
                "median_tip_error_mm": round(float(np.median(tips)), 3) if tips else None,
                "median_target_error_mm": round(float(np.median(tgts)), 3) if tgts else None,
                "missed_clicks": sum((a.tip_error_mm is None) + (a.target_error_mm is None) for a in self.answers)}


def _cumulative_turn_deg(angle_deg: np.ndarray) -> np.ndarray:
    d = np.abs((np.diff(angle_deg) + 180.0) % 360.0 - 180.0)
    return np.concatenate([[0.0], np.cumsum(np.nan_to_num(d))])


def choose_checkpoints(records: Sequence[dict], events: Sequence[dict] = (), *,
                       spacing_mm: Spacing | None = None, params: PracticeParams = PracticeParams()
                       ) -> list[Checkpoint]:
    """Frames at which to stop and ask, from the reference records.

    Eligible frames show both the needle (seen, not coasting) and a target.
    Automatic checkpoints: walking forward from the first sighting, the first
    eligible frame at least ``min_gap_s`` after the previous checkpoint by
    which the tip has travelled ``move_mm`` or the shaft turned ``turn_deg``
    since it. Instructor events (``kind == "checkpoint"``) put one at the
    first eligible frame at or after the event and take precedence. At most
    ``max_checkpoints``, spread evenly when there are more.
    """
    s = series_from_records(records, spacing_mm)
    if len(s) == 0:
        return []
    has_target = ~np.all(np.isnan(s.surface_px[..., 0]), axis=1) | ~np.isnan(s.target_point_px[:, 0])
    ok = s.seen & has_target
    rows = np.flatnonzero(ok)
    if rows.size == 0:
        return []
    t = s.t_s[rows]
    tip = s.tip_px[rows] * s.scale_mm
    travel = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(tip, axis=0).T))])
    turn = _cumulative_turn_deg(s.angle_deg[rows])

    chosen: dict[int, str] = {}
    t_abs0 = float(records[0].get("t_s", 0.0))
    for ev in events or ():
        t_ev = event_time_s(ev, records) if event_kind(ev) == "checkpoint" else None
        if t_ev is not None:
            k = int(np.searchsorted(t, t_ev - t_abs0 - 1e-9))
            if k < rows.size:
                chosen[k] = "instructor"
    auto: dict[int, str] = {}
    a = 0
    while True:  # one pass per checkpoint, vectorized search for the next one
        later = (t - t[a] >= params.min_gap_s) & (np.arange(rows.size) > a)
        moved = later & (travel - travel[a] >= params.move_mm)
        turned = later & (turn - turn[a] >= params.turn_deg)
        hit = np.flatnonzero(moved | turned)
        if hit.size == 0:
            break
        k = int(hit[0])
        auto[k] = "turned" if turned[k] else "moved"
        a = k
    # instructor checkpoints win; drop automatic ones too close to them
    for k, why in auto.items():
        if all(abs(t[k] - t[j]) >= params.min_gap_s for j in chosen):
            chosen[k] = why
    keys = sorted(chosen)
    if len(keys) > params.max_checkpoints:
        inst = [k for k in keys if chosen[k] == "instructor"][:params.max_checkpoints]
        rest = [k for k in keys if chosen[k] != "instructor"]
        n_rest = params.max_checkpoints - len(inst)
        pick = [rest[int(i)] for i in np.linspace(0, len(rest) - 1, n_rest).round()] if n_rest > 0 else []
        keys = sorted(set(inst) | set(pick))
    out = []
    for k in keys:
        r = int(rows[k])
        tp = s.target_point_px[r]
        surf = s.surface_px[r]
        out.append(Checkpoint(row=r, t_s=float(s.t_s[r]), reason=chosen[k],
                              tip_px=(float(s.tip_px[r, 0]), float(s.tip_px[r, 1])),
                              target_point_px=None if np.isnan(tp[0]) else (float(tp[0]), float(tp[1])),
                              surface_px=surf[~np.isnan(surf[:, 0])]))
    return out


def score_answer(cp: Checkpoint, tip_click_px, target_click_px, spacing_mm: Spacing | None,
                 tolerance_mm: float = PracticeParams.tolerance_mm) -> Answer:
    """Score one checkpoint's two clicks (pixels) against its reference, in mm.

    Tip error: distance from the click to the reference tip. Target error:
    distance to the target point when one was set, else to the nearest point
    of the target surface. Each click scores ``100 * max(0, 1 - error / tolerance)``
    (a missing click 0); the answer scores their mean.
    """
    k = np.asarray(spacing_mm if spacing_mm is not None else (1.0, 1.0), float)
    tip_err = tgt_err = None
    nearest = None
    if tip_click_px is not None:
        tip_err = float(np.hypot(*((np.asarray(tip_click_px, float) - cp.tip_px) * k)))
    if target_click_px is not None:
        c = np.asarray(target_click_px, float)
        if cp.target_point_px is not None:
            nearest = cp.target_point_px
            tgt_err = float(np.hypot(*((c - cp.target_point_px) * k)))
        elif len(cp.surface_px):
            surf = cp.surface_px * k
            poly = surf[None] if len(surf) > 1 else np.repeat(surf[None], 2, axis=1)
            d, near = point_polyline_distance((c * k)[None], poly)
            tgt_err = float(d[0])
            nearest = (float(near[0, 0] / k[0]), float(near[0, 1] / k[1]))

    def pts(err):
        return 0.0 if err is None else 100.0 * max(0.0, 1.0 - err / tolerance_mm)

    return Answer(cp, None if tip_click_px is None else tuple(map(float, tip_click_px)),
                  None if target_click_px is None else tuple(map(float, target_click_px)),
                  tip_err, tgt_err, nearest, 0.5 * (pts(tip_err) + pts(tgt_err)))


class PracticeRun:
    """One practice run over a session: checkpoints in order, answers, final score.

    Parameters
    ----------
    records : sequence of dict
        The session's contract records, as recorded (what the trainee watches).
    events : sequence of dict
        Recorded events (``checkpoint`` events mark instructor checkpoints).
    truth : sequence of dict, optional
        Reference records (e.g. the simulator's truth), frame for frame; the
        recorded detections are the reference otherwise.
    """

    def __init__(self, records: Sequence[dict], events: Sequence[dict] = (), *, truth: Sequence[dict] | None = None,
                 spacing_mm: Spacing | None = None, params: PracticeParams = PracticeParams()):
        reference = truth if truth is not None else records
        if truth is not None and len(truth) != len(records):
            raise ValueError(f"truth has {len(truth)} records for {len(records)} recorded frames")
        self.records = records
        self.params = params
        self.series: SessionSeries = series_from_records(reference, spacing_mm)
        self.spacing_mm = self.series.spacing_mm
        self.reference = "truth" if truth is not None else "recorded detections"
        self.checkpoints = choose_checkpoints(reference, events, spacing_mm=spacing_mm, params=params)
        self.answers: list[Answer] = []

    @property
    def units(self) -> str:
        return "mm" if self.spacing_mm is not None else "px"

    @property
    def current(self) -> Checkpoint | None:
        i = len(self.answers)
        return self.checkpoints[i] if i < len(self.checkpoints) else None

    @property
    def finished(self) -> bool:
        return self.current is None

    def submit(self, tip_click_px, target_click_px) -> Answer:
        """Answer the current checkpoint (None for a click the trainee could not give)."""
        cp = self.current
        if cp is None:
            raise RuntimeError("the practice run is over")
        ans = score_answer(cp, tip_click_px, target_click_px, self.spacing_mm, self.params.tolerance_mm)
        self.answers.append(ans)
        return ans

    def result(self) -> PracticeResult:
        score = float(np.mean([a.score for a in self.answers])) if self.answers else 0.0
        return PracticeResult(score, tuple(self.answers), self.units)
