"""``guidance detect INPUT``: every frame through the pipeline, one JSON line per frame (CONTRACT.md)."""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError
from ._args import add_stage_options, open_output, source_options, stages_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "detect", help="detect needle and target in every frame of a file; JSON Lines out",
        description="Run detection, tracking and guidance over every frame of INPUT as fast as it goes "
                    "(no pacing, no dropping) and write one JSON object per frame (see CONTRACT.md).")
    p.add_argument("input", metavar="INPUT",
                   help="video (.mp4 .avi .mkv), image folder, image, PLUS sequence (.mha .mhd .nrrd), "
                        "DICOM file or recording (.usrec)")
    p.add_argument("--out", metavar="FILE", help="write the lines to FILE instead of standard output")
    add_stage_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..contract import dumps, result_to_record
    from ..pipeline import run_offline
    from ..sources import classify_spec, open_source

    kind = classify_spec(args.input)
    if kind in ("device", "igtl", "sim"):
        raise InputError(f"{args.input}: detect reads files; use 'guidance live --source {args.input}' for a live source")
    source = open_source(args.input, **source_options(args, realtime=False, loop=False))
    told = source.notice
    if told:  # a recording cut off or damaged: say so, then detect what is there
        print(f"guidance detect: {args.input}: {told}", file=sys.stderr)
    stages = stages_from_args(args)
    fh, finish = open_output(args.out)
    try:
        _write(run_offline(source, stages), fh, dumps, result_to_record)
        finish(True)
    except BaseException:
        finish(False)
        raise
    if source.notice and source.notice != told:  # found only at the end (a video shorter than its header says)
        print(f"guidance detect: {args.input}: {source.notice}", file=sys.stderr)
    return 0


def _write(results, fh, dumps, result_to_record) -> None:
    for result in results:
        fh.write(dumps(result_to_record(result)))
        fh.write("\n")
    fh.flush()
