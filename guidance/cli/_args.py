"""Parsing helpers shared by the subcommands (a leading underscore: not a command module)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from ..errors import InputError
from ..types import ImagingRegion


RULER = "ruler"


def spacing_arg(text: str) -> tuple[float, float] | str:
    """``MM`` or ``SX_MM,SY_MM`` -> (sx, sy) millimetres per pixel; ``ruler``: read the screen's depth ruler."""
    if text.strip().lower() == RULER:
        return RULER
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"spacing {text!r}: expected MM or SX_MM,SY_MM (positive millimetres "
                                         "per pixel) or 'ruler'")
    return (values[0], values[1])


def region_arg(text: str) -> ImagingRegion:
    """``X,Y,W,H`` in frame pixels -> ImagingRegion."""
    try:
        return ImagingRegion.parse(text)
    except Exception as exc:  # FrameFormatError: re-raised as an argparse error (one line, status 2)
        raise argparse.ArgumentTypeError(str(exc)) from None


def point_arg(text: str) -> tuple[float, float]:
    """``X,Y`` in frame pixels."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"point {text!r}: expected X,Y in pixels") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise argparse.ArgumentTypeError(f"point {text!r}: expected finite X,Y in pixels")
    return (x, y)


def size_arg(text: str) -> tuple[int, int]:
    """``WxH`` in pixels -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 640x480") from None
    if w < 8 or h < 8 or w > 16384 or h > 16384:
        raise argparse.ArgumentTypeError(f"size {text!r}: width and height must be 8 to 16384 pixels")
    return (w, h)


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return v


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive whole number")
    return v


def model_arg(text: str) -> str:
    """``auto``, ``classical`` or the path of an ONNX model (checked when loaded)."""
    return text


def add_stage_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose and tune the processing stages (shared by detect, live, bench)."""
    parser.add_argument("--spacing", type=spacing_arg, metavar="MM|SX,SY|ruler",
                        help="pixel spacing in mm per pixel (overrides the input's own); 'ruler': read it from "
                             "the scanner's depth ruler on a grabbed screen, when the input has none")
    parser.add_argument("--region", type=region_arg, metavar="X,Y,W,H",
                        help="imaging region in frame pixels (default: found automatically)")
    parser.add_argument("--model", type=model_arg, default="auto", metavar="PATH|classical|auto",
                        help="detector: an ONNX model file, the classical baseline, or auto (default)")
    parser.add_argument("--no-track", action="store_true",
                        help="treat every frame on its own (no tracking or smoothing)")
    parser.add_argument("--target", type=point_arg, metavar="X,Y",
                        help="target point in frame pixels (adds miss distances and an off-target alert)")


def source_options(args: argparse.Namespace, **options) -> dict:
    """Options for ``open_source``: the spacing when given as numbers."""
    if isinstance(args.spacing, tuple):
        options["spacing_mm"] = args.spacing
    return options


def stages_from_args(args: argparse.Namespace):
    from ..stages import build_stages

    return build_stages(detector=args.model, track=not args.no_track, target_point_px=args.target,
                        region=args.region, spacing_mm=args.spacing)


def open_output(out: str | None):
    """(file, finish(ok)) for JSON Lines output: stdout, or FILE written whole through FILE.partial.

    ``finish(True)`` puts FILE in place; ``finish(False)`` removes the partial file, so an input
    that turns out bad midway never leaves a FILE that looks complete.
    """
    if out is None:
        return sys.stdout, lambda ok: sys.stdout.flush()
    target = Path(out)
    if target.is_dir():  # found now, not after the whole input has been processed
        raise InputError(f"{target}: is a folder; give a file name")
    partial = target.with_name(target.name + ".partial")
    try:
        fh = open(partial, "w", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{target}: cannot write ({exc.strerror})") from None

    def finish(ok: bool) -> None:
        fh.close()
        try:
            if ok:
                os.replace(partial, target)
        except OSError as exc:
            raise InputError(f"{target}: cannot write ({exc.strerror})") from None
        finally:
            partial.unlink(missing_ok=True)
    return fh, finish
