"""Interoperability commands: inspect PLUS and DICOM files, serve frames over OpenIGTLink.

- ``guidance plus-info FILE``: frames, size, orientation, spacing, timing,
  transforms and custom fields of a PLUS sequence (JSON).
- ``guidance dicom-info FILE|FOLDER``: the de-identified metadata of an
  ultrasound DICOM file or series (JSON); nothing identifying is printed.
- ``guidance igtl-send INPUT``: serve the frames of any input as OpenIGTLink
  IMAGE messages, as a PLUS server would (for trying ``guidance live --source
  igtl://...`` or 3D Slicer without a scanner).
- ``guidance igtl-results --source SPEC``: the live pipeline, publishing each
  result to 3D Slicer over OpenIGTLink (needle TRANSFORM, POINTs, STRING
  status; see :class:`guidance.io.igtl.IgtlResultSender`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ._args import add_stage_options, positive_float, spacing_arg, stages_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser("plus-info", help="describe a PLUS sequence file (.mha .mhd .nrrd) as JSON")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=_plus_info)

    p = subparsers.add_parser("dicom-info", help="de-identified metadata of an ultrasound DICOM file or series")
    p.add_argument("path", metavar="FILE|FOLDER")
    p.set_defaults(func=_dicom_info)

    p = subparsers.add_parser(
        "igtl-send", help="serve the frames of INPUT as OpenIGTLink IMAGE messages (like a PLUS server)",
        description="Serve the frames of INPUT (any input 'guidance detect' reads, or 'sim') as OpenIGTLink "
                    "IMAGE messages to every peer that connects, at the input's frame rate.")
    p.add_argument("input", metavar="INPUT")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=18944, help="TCP port (default 18944, PLUS's)")
    p.add_argument("--device", default="Image_Reference", help="device name of the IMAGE messages")
    p.add_argument("--fps", type=positive_float, default=None, help="frame rate (default: the input's, else 30)")
    p.add_argument("--spacing", type=spacing_arg, default=None, metavar="MM|SX,SY", help="pixel spacing to send")
    p.add_argument("--loop", action="store_true", help="start again at the end of a file")
    p.add_argument("--count", type=int, default=None, help="stop after this many frames")
    p.add_argument("--no-wait", action="store_true",
                   help="start sending at once (default: wait for the first peer, so a file is seen from its start)")
    p.set_defaults(func=_igtl_send)

    p = subparsers.add_parser(
        "igtl-results", help="run the live pipeline and publish results to 3D Slicer over OpenIGTLink",
        description="Grab frames from SPEC (e.g. igtl://127.0.0.1:18944 from a PLUS server), run the pipeline "
                    "and serve each result on HOST:PORT for 3D Slicer's OpenIGTLinkIF (connect as client): "
                    "TRANSFORM NeedleTipToImage, POINT Intercept/Target/TargetSurface, STRING GuidanceStatus "
                    "and GuidanceRecord. Prints one status line a second.")
    p.add_argument("--source", required=True, metavar="SPEC", help="any live source or file (see 'guidance live')")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=18945, help="TCP port for Slicer (default 18945)")
    p.add_argument("--units", choices=("px", "mm"), default="px",
                   help="coordinates sent: image pixels (PLUS's Image frame, default) or mm")
    p.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--loop", action="store_true", help="loop a file source")
    add_stage_options(p)
    p.set_defaults(func=_igtl_results)


def _plus_info(args: argparse.Namespace) -> int:
    from ..io.plus import describe, read_sequence

    with read_sequence(args.file) as seq:
        print(json.dumps(describe(seq), indent=2))
    return 0


def _dicom_info(args: argparse.Namespace) -> int:
    from ..io.dicom import DicomSource

    src = DicomSource(args.path)
    src.open()
    try:
        print(json.dumps(src.metadata, indent=2))
    finally:
        src.close()
    return 0


def _igtl_send(args: argparse.Namespace) -> int:
    from ..io.igtl import IgtlImageServer
    from ..sources import open_source

    options = {"realtime": False, "loop": args.loop}
    if args.spacing is not None:
        options["spacing_mm"] = args.spacing
    source = open_source(args.input, **options)
    with source, IgtlImageServer(args.host, args.port, device_name=args.device) as server:
        fps = args.fps or source.nominal_fps or 30.0
        print(f"serving {source.name} on igtl://{server.host}:{server.port} at {fps:.1f} fps "
              f"(device {args.device}); Ctrl-C stops", file=sys.stderr)
        if not args.no_wait:
            # Frames sent before anyone listens are lost: a short file would be over before
            # 3D Slicer connects. Wait for the first peer, as a user starting both expects.
            print("waiting for a peer to connect ...", file=sys.stderr, flush=True)
            while not server.wait_for_client(1.0):
                pass
        period = 1.0 / fps
        due = time.monotonic()
        sent = 0
        while args.count is None or sent < args.count:
            frame = source.read()
            if frame is None:
                print(f"{source.name}: end of input after {sent} frame(s)"
                      + ("" if args.loop else "; --loop starts it again"), file=sys.stderr)
                break
            due += period
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                due = time.monotonic()
            server.send_frame(frame)
            sent += 1
    return 0


def _igtl_results(args: argparse.Namespace) -> int:
    from ..io.igtl import IgtlResultSender
    from ..pipeline import LivePipeline
    from ..sources import open_source
    from ..sources.opencv import quiet_opencv_warnings
    from .live import watch

    quiet_opencv_warnings()
    options = {"realtime": True, "loop": args.loop}
    if args.spacing is not None:
        options["spacing_mm"] = args.spacing
    first = [open_source(args.source, **options)]  # a bad spec fails here, with one line

    def factory():
        return first.pop() if first else open_source(args.source, **options)

    with IgtlResultSender(args.host, args.port, units=args.units) as sender:
        print(f"results for 3D Slicer on igtl://{sender.host}:{sender.port}", file=sys.stderr)
        pipeline = LivePipeline(factory, stages_from_args(args), region=args.region)
        pipeline.add_consumer(sender.send)
        return watch(pipeline, prog="guidance igtl-results", source=args.source, duration_s=args.duration,
                     suffix=lambda: f" peers={sender.clients}")
