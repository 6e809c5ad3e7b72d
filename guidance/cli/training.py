"""``guidance report``, ``guidance progress``, ``guidance measure``: training and follow-up.

Reports and the progress database never show patient data: technical
metadata only, sessions named by a content fingerprint, knees and trainees by
pseudonymous IDs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..errors import InputError
from ._args import RULER, spacing_arg


def _default_db() -> Path:
    from ..training.progress_db import DEFAULT_DB
    return Path(os.environ.get("GUIDANCE_PROGRESS_DB") or DEFAULT_DB)


def _no_ruler(value):
    if value == RULER:
        raise InputError("--spacing ruler: only `guidance measure` reads a depth ruler; give MM or SX_MM,SY_MM")
    return value


def register(sub) -> None:
    p = sub.add_parser("report", help="score a recorded session and write a self-contained HTML report",
                       description="Score a recorded injection (time to target, redirections, path, ...) and "
                                   "write one HTML file with metrics, plots and key frames. No patient data.")
    p.add_argument("recording", help="a recording (.usrec), contract JSON Lines (.jsonl), or any input `guidance detect` reads (run through the pipeline now)")
    p.add_argument("--detector", default="auto", help="detector for inputs that are not recordings")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--spacing", type=spacing_arg, metavar="MM|SX,SY",
                   help="pixel spacing (mm per pixel) when the recording has none")
    p.add_argument("--trainee", help="trainee ID: also store the score in the progress database")
    p.add_argument("--knee", help="knee ID: show its cartilage thickness trend from the database")
    p.add_argument("--db", type=Path, help="progress database (default $GUIDANCE_PROGRESS_DB or ~/.local/share/...)")
    p.add_argument("--json", action="store_true", help="also print the metrics as one JSON object")
    p.set_defaults(func=_report)

    p = sub.add_parser("progress", help="a trainee's scores over time")
    p.add_argument("trainee", help="trainee ID")
    p.add_argument("--db", type=Path, help="progress database")
    p.add_argument("--json", action="store_true", help="print JSON Lines instead of a table")
    p.set_defaults(func=_progress)

    p = sub.add_parser("measure", help="cartilage thickness (median and along the surface, mm) for follow-up",
                       description="Measure cartilage thickness with the target detector on an image, a recording "
                                   "or any input `guidance detect` reads; with --knee, store it for the trend.")
    p.add_argument("input", help="image, recording, video, PLUS or DICOM file")
    p.add_argument("--knee", help="pseudonymous knee ID: store the result in the database")
    p.add_argument("--date", help="measurement date YYYY-MM-DD (default today)")
    p.add_argument("--db", type=Path, help="progress database")
    p.add_argument("--spacing", type=spacing_arg, metavar="MM|SX,SY|ruler",
                   help="pixel spacing in mm per pixel (overrides the input's own); 'ruler': read it from the "
                        "scanner's depth ruler on a grabbed screen when the input has none")
    p.add_argument("--detector", default="auto", help="'auto', 'classical' or a model path")
    p.add_argument("--max-frames", type=int, default=30, help="frames sampled from a sequence (default 30)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_measure)


def _report(args) -> int:
    from ..training.metrics import analyse, overall_score
    from ..training.progress_db import ProgressDB, check_id
    from ..training.report import build_report, write_report
    from ..training.session import load_session

    if args.trainee:
        check_id(args.trainee, "trainee")
    if args.knee:
        check_id(args.knee, "knee")
    session = load_session(args.recording, detector=args.detector, spacing_mm=_no_ruler(args.spacing))
    a = analyse(session.records, session.events, spacing_mm=_no_ruler(args.spacing), metadata=session.metadata)
    trend = []
    db = None
    if args.trainee or args.knee:
        db = ProgressDB(args.db or _default_db())
    try:
        if args.knee:
            trend = db.measurements(args.knee)
        html = build_report(session, analysis=a, trainee=args.trainee, trend=trend)
        out = write_report(args.out, html)
        score = overall_score(a.metrics)
        if args.trainee:
            db.add_session(args.trainee, score, metrics=_summary(a.metrics), kind="performed",
                           source_name=f"session {session.session_id}")
    finally:
        if db is not None:
            db.close()
    if args.json:
        print(json.dumps({"score": round(score, 1), **_summary(a.metrics)}))
    print(f"report written to {out} (score {score:.0f}/100)", file=sys.stderr)
    return 0


def _summary(m) -> dict:
    d = m.to_dict()
    d.pop("params", None)
    d.pop("redirection_details", None)
    return d


def _progress(args) -> int:
    from ..training.progress_db import ProgressDB, check_id

    check_id(args.trainee, "trainee")
    path = args.db or _default_db()
    if not Path(path).exists():
        raise InputError(f"{path}: no progress database yet (scores are stored by `guidance report --trainee`)")
    with ProgressDB(path) as db:
        rows = db.sessions(args.trainee)
    if not rows:
        raise InputError(f"{path}: no sessions for trainee {args.trainee!r}")
    if args.json:
        for r in rows:
            print(json.dumps({"recorded_at": r.recorded_at, "kind": r.kind, "score": r.score,
                              **{k: r.metrics.get(k) for k in ("redirections", "time_to_target_s",
                                                               "final_tip_to_target_mm")}}))
        return 0
    print(f"trainee {args.trainee}: {len(rows)} session(s)")
    print(f"{'date (UTC)':<20} {'kind':<10} {'score':>6}  {'redir':>5} {'t->target':>9}  bar")
    for r in rows:
        red = r.metrics.get("redirections")
        ttt = r.metrics.get("time_to_target_s")
        bar = "#" * int(round(r.score / 5))
        print(f"{r.recorded_at[:19].replace('T', ' '):<20} {r.kind:<10} {r.score:>6.1f}  "
              f"{'-' if red is None else red:>5} {'-' if ttt is None else f'{ttt:.1f} s':>9}  {bar}")
    if len(rows) >= 2:
        print(f"change since first: {rows[-1].score - rows[0].score:+.1f}")
    return 0


def _measure(args) -> int:
    from ..training.measure import measure_input
    from ..training.progress_db import ProgressDB, check_date, check_id

    if args.knee:
        check_id(args.knee, "knee")
    day = check_date(args.date) if args.knee or args.date else None
    res = measure_input(args.input, spacing_mm=args.spacing, detector=args.detector,
                        max_frames=args.max_frames)
    if args.knee:
        with ProgressDB(args.db or _default_db()) as db:
            db.add_measurement(args.knee, day, res.median_mm, res.profile_list(),
                               source_name=res.source_name, detector=res.detector)
    if args.json:
        print(json.dumps({"knee": args.knee, "date": day, **res.to_dict()}))
    else:
        print(res.summary())
        if args.knee:
            print(f"stored for knee {args.knee} on {day}")
    return 0
