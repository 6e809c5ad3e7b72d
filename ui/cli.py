"""``guidance demo`` and ``guidance ui``: the desktop app's subcommands.

Registered through the ``guidance.commands`` entry point so the core never
imports Qt. Qt itself is imported only when a command runs.
"""

from __future__ import annotations

import argparse

from guidance.errors import InputError


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT in pixels, e.g. 640x480") from None
    if w < 64 or h < 64:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 64x64 pixels")
    return w, h


def _spacing(text: str) -> tuple[float, float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected MM or SX_MM,SY_MM") from None
    if len(vals) == 1:
        vals *= 2
    if len(vals) != 2 or min(vals) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected one or two positive numbers (mm per pixel)")
    return vals[0], vals[1]


def register(subparsers) -> None:
    demo = subparsers.add_parser(
        "demo", help="open the live view on the built-in simulator (start here)",
        description="Live guidance on the built-in knee ultrasound simulator. Not a cleared medical device.")
    demo.add_argument("--scenario", default=None, help="simulator scenario (insertion, steep, out_of_plane, no_needle)")
    demo.add_argument("--seed", type=int, default=None, help="simulator seed")
    demo.add_argument("--fps", type=float, default=30.0, help="simulated frame rate (default 30)")
    demo.add_argument("--size", type=_size, default=(640, 480), help="simulated frame size WxH (default 640x480)")
    demo.add_argument("--model", default=None, help="detector: auto (default), classical, or an .onnx path")
    demo.add_argument("--quit-after", type=float, default=None, metavar="S", help="close after S seconds (smoke tests)")
    demo.set_defaults(func=_run_demo)

    ui = subparsers.add_parser(
        "ui", help="open the live view on any source, or the replay player",
        description="The live view on a source, or the replay player (--play). Not a cleared medical device.")
    ui.add_argument("--source", default=None, help="source spec: sim, a device index, a file, a recording, igtl://HOST:PORT "
                                                  "(default: the last one used)")
    ui.add_argument("--play", default=None, metavar="FILE", help="open FILE (a recording or any file) in the replay player")
    ui.add_argument("--spacing", type=_spacing, default=None, help="pixel spacing MM or SX_MM,SY_MM")
    ui.add_argument("--model", default=None, help="detector: auto (default), classical, or an .onnx path")
    ui.add_argument("--quit-after", type=float, default=None, metavar="S", help="close after S seconds (smoke tests)")
    ui.set_defaults(func=_run_ui)


def _sim_spec(args) -> str:
    if args.scenario and args.seed is not None:
        return f"sim:{args.scenario}:{args.seed}"
    if args.scenario:
        return f"sim:{args.scenario}:0"
    return f"sim:{args.seed}" if args.seed is not None else "sim"


def _run_demo(args) -> int:
    from .app import run_live

    if args.fps <= 0 or args.fps > 240:
        raise InputError(f"--fps {args.fps}: expected a frame rate between 0 and 240")
    options = {"fps": args.fps, "size_px": tuple(args.size)}
    return run_live(_sim_spec(args), source_options=options, detector=args.model, quit_after_s=args.quit_after)


def _run_ui(args) -> int:
    from guidance.sources.opencv import quiet_opencv_warnings

    from .app import run_live, run_player

    quiet_opencv_warnings()  # the live view says what is wrong; OpenCV's warnings per retry only bury it

    if args.play:
        return run_player(args.play, detector=args.model, quit_after_s=args.quit_after)
    spec = args.source
    if spec is None:
        from .settings import Settings

        spec = Settings().get_str("source/spec", "sim") or "sim"
    return run_live(spec, detector=args.model, spacing_mm=args.spacing, quit_after_s=args.quit_after)
