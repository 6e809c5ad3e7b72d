"""``guidance eval PRED TRUTH``: detection accuracy against ground truth."""

from __future__ import annotations

import json

from ..errors import InputError


def _spacing(text: str) -> tuple[float, float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"--spacing {text!r}: expected MM or SX_MM,SY_MM") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or not all(v > 0 for v in vals):
        raise InputError(f"--spacing {text!r}: expected one or two positive numbers (mm per pixel)")
    return vals[0], vals[1]


def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="compare detections with ground truth (tip, angle, recall, false positives, surfaces)",
        description="Compare `guidance detect` output with truth.jsonl ground truth (same line format). "
                    "PRED and TRUTH are two JSON Lines files, or two folders: every TRUTH/REL/truth.jsonl is "
                    "compared with PRED/REL.jsonl or PRED/REL/pred.jsonl.")
    p.add_argument("pred", metavar="PRED", help="predictions: a .jsonl file or a folder")
    p.add_argument("truth", metavar="TRUTH", help="ground truth: a .jsonl file or a folder of truth.jsonl files")
    p.add_argument("--spacing", metavar="MM", help="pixel spacing MM or SX_MM,SY_MM for truth lines without spacing_mm")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from ..evaluate import evaluate_paths, format_report

    spacing = _spacing(args.spacing) if args.spacing else None
    report = evaluate_paths(args.pred, args.truth, spacing_mm=spacing,
                            progress=False if args.no_progress else None)
    print(json.dumps(report) if args.json else format_report(report))
    return 0
