"""Time the training tools on a long scripted session; prints one JSON object.

python bench/bench_training.py [--passes 60] [--fps 30]
"""

from __future__ import annotations

import argparse
import json
import time

from guidance.training.metrics import analyse
from guidance.training.practice import PracticeRun
from guidance.training.report import build_report
from guidance.training.scripted import Script, scripted_insertion
from guidance.training.session import Session


def _timed(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passes", type=int, default=60)
    ap.add_argument("--fps", type=float, default=30.0)
    args = ap.parse_args()
    angles = tuple(30.0 + 8.0 * (i % 2) for i in range(args.passes))  # each turn > 2.5 deg
    s = scripted_insertion(Script(pass_angles_deg=angles, fps=args.fps, noise_px=0.5))
    n = len(s.records)
    a, t_analyse = _timed(lambda: analyse(s.records, s.events))
    _, t_practice = _timed(lambda: PracticeRun(s.records, s.events))
    session = Session(s.records, s.events, s.metadata, s.image, "bench")
    html, t_report = _timed(lambda: build_report(session, analysis=a), repeat=1)
    print(json.dumps({"frames": n, "duration_s": round(a.metrics.duration_s, 1),
                      "redirections": a.metrics.redirections, "expected_redirections": s.truth["redirections"],
                      "analyse_s": round(t_analyse, 4), "analyse_us_per_frame": round(1e6 * t_analyse / n, 2),
                      "practice_checkpoints_s": round(t_practice, 4), "report_s": round(t_report, 3),
                      "report_kb": len(html) // 1024}))


if __name__ == "__main__":
    main()
