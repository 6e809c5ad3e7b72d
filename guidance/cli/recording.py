"""Recording commands: ``record``, ``replay``, ``info``, ``export`` and ``recording repair|import``.

See ``docs/recording-format.md`` for the file format.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

from ..errors import InputError
from ._args import (add_stage_options, open_output, positive_float, positive_int, source_options,
                    stages_from_args)


REC_HELP = "a .usrec recording (or a folder holding one), from 'guidance record' or the live view"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "record", help="record a live session losslessly to a .usrec file",
        description="Run the live pipeline on SPEC and record every processed frame, what was shown on it, "
                    "and the session metadata to a crash-safe .usrec file. Ctrl+C stops and closes the file.")
    p.add_argument("--source", required=True, metavar="SPEC", help="source spec: sim, a device index, a file, igtl://...")
    p.add_argument("--out", required=True, metavar="FILE_OR_DIR",
                   help="the new .usrec file, or a folder (a session_YYYYmmdd_HHMMSS.usrec is created in it)")
    p.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    p.add_argument("--frames", type=positive_int, metavar="N", help="stop after N recorded frames")
    p.add_argument("--quiet", action="store_true", help="no status line every second")
    add_stage_options(p)
    p.set_defaults(func=run_record)

    p = subparsers.add_parser(
        "replay", help="replay a recording headless: per-frame results as recorded or recomputed",
        description="Print one JSON line per frame of REC (as `guidance detect` does): the guidance as it was "
                    "shown live, or with --recompute the pipeline's output on the recorded frames now.")
    p.add_argument("recording", metavar="REC", help=REC_HELP)
    p.add_argument("--out", metavar="FILE", help="write the lines to FILE instead of standard output")
    p.add_argument("--realtime", action="store_true", help="pace frames by their recorded timestamps")
    p.add_argument("--speed", type=positive_float, default=1.0, help="speed factor with --realtime (default 1)")
    p.add_argument("--start", type=int, default=0, metavar="I", help="first frame position (default 0)")
    p.add_argument("--stop", type=int, default=None, metavar="I", help="stop before this position")
    p.add_argument("--recompute", action="store_true", help="run the pipeline on the recorded frames now")
    p.add_argument("--check", action="store_true",
                   help="with --recompute: compare with the recorded guidance; exit 1 if any frame differs")
    add_stage_options(p)
    p.set_defaults(func=run_replay)

    p = subparsers.add_parser("info", help="metadata, duration, frames, dropped frames and losses of a recording",
                              description="Describe a .usrec recording as JSON.")
    p.add_argument("recording", metavar="REC", help=REC_HELP)
    p.add_argument("--verify", action="store_true", help="also read every record and check its checksum")
    p.set_defaults(func=run_info)

    p = subparsers.add_parser("export", help="export a recording: MP4 with the guidance burnt in, PLUS sequence",
                              description="Export REC as a video with the overlay burnt in (for teaching and "
                                          "sharing) and/or a PLUS sequence for 3D Slicer.")
    p.add_argument("recording", metavar="REC", help=REC_HELP)
    p.add_argument("--mp4", metavar="OUT", help="write an MP4 video with the recorded guidance drawn on it")
    p.add_argument("--plus", metavar="OUT", help="write a PLUS sequence (.seq.nrrd or .mha) for 3D Slicer")
    p.add_argument("--no-overlay", action="store_true", help="MP4 of the plain frames")
    p.add_argument("--fps", type=positive_float, help="video frame rate (default: the recording's)")
    p.set_defaults(func=run_export)

    grp = subparsers.add_parser("recording", help="recording maintenance: repair, import",
                                description="Maintenance of .usrec recordings.")
    sub = grp.add_subparsers(dest="recording_command", metavar="ACTION", parser_class=type(grp))
    r = sub.add_parser("repair", help="rebuild the index and footer of a crashed or damaged recording",
                       description="Copy every intact record of REC to a new file with a fresh index and footer. "
                                   "Without --out, REC is replaced (via a temporary file and a rename) and the "
                                   "original kept as REC.orig.")
    r.add_argument("recording", metavar="REC", help=REC_HELP)
    r.add_argument("--out", metavar="FILE", help="write the repaired copy here instead of replacing REC")
    r.set_defaults(func=run_repair)
    r = sub.add_parser("import", aliases=["import-folder"], help="convert a file input to a .usrec recording",
                       description="Convert an image folder (replay_data/<name>/ with meta.json included), video, "
                                   "PLUS or DICOM file to a recording; --process adds the pipeline's results.")
    r.add_argument("input", metavar="INPUT")
    r.add_argument("out", metavar="OUT.usrec")
    r.add_argument("--fps", type=positive_float, help="frame rate for an image folder (default: meta.json's)")
    r.add_argument("--process", action="store_true", help="record the pipeline's result on every frame too")
    add_stage_options(r)
    r.set_defaults(func=run_import)
    grp.set_defaults(func=lambda args: (grp.print_help(), 2)[1])


# --- record ------------------------------------------------------------------------------------

def _record_path(out: str) -> Path:
    p = Path(out)
    # A name without a suffix ("--out session1") means a folder, as the help says.
    if p.is_dir() or out.endswith(os.sep) or (not p.suffix and not p.exists()):
        if not p.parent.is_dir():
            raise InputError(f"{p.parent}: no such folder")
        p.mkdir(exist_ok=True)
        return p / f"session_{datetime.now():%Y%m%d_%H%M%S}.usrec"
    if p.suffix.lower() != ".usrec":
        raise InputError(f"{p}: a recording file must end in .usrec (or give a folder)")
    if not p.parent.is_dir():
        raise InputError(f"{p.parent}: no such folder")
    return p


def run_record(args: argparse.Namespace) -> int:
    from ..pipeline import LivePipeline
    from ..recording import Recorder
    from ..recording.format import EVENT_SOURCE_NOTICE
    from ..recording.session_meta import describe_stages
    from ..sources import classify_spec, open_source

    from ..sources.opencv import quiet_opencv_warnings

    quiet_opencv_warnings()
    out = _record_path(args.out)
    opts = source_options(args, realtime=True, loop=False)
    kind = classify_spec(args.source)
    open_source(args.source, **opts)  # a bad spec fails here, before a file is created
    stages = stages_from_args(args)
    meta = {"source": args.source, "source_kind": kind, **describe_stages(stages),
            "spacing_mm": list(args.spacing) if isinstance(args.spacing, tuple) else args.spacing,
            "region_px": ([args.region.x_px, args.region.y_px, args.region.width_px, args.region.height_px]
                          if args.region else None),
            "target_point_px": list(args.target) if args.target else None}
    recorder = Recorder(out, meta).start()
    pipeline = LivePipeline(lambda: open_source(args.source, **opts), stages)
    shown_alerts: list[tuple[str, ...]] = [()]

    def record(result) -> None:  # the frame, then an event where each alert begins (timeline marks)
        recorder.submit(result)
        for alert in sorted(set(result.alerts) - set(shown_alerts[0])):
            recorder.add_event(alert, {"frame": result.frame.index})
        shown_alerts[0] = result.alerts

    pipeline.add_consumer(record)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # a polite kill still writes the footer
    t0 = time.monotonic()
    next_status = t0 + 1.0
    status = None
    try:
        pipeline.start()
        while True:
            time.sleep(0.05)
            status = pipeline.status()
            stats = recorder.stats
            now = time.monotonic()
            if recorder.error or status.state in ("ended", "error"):
                break
            if args.duration and now - t0 >= args.duration:
                break
            if args.frames and stats["frames_written"] + stats["queued"] >= args.frames:
                break
            if not args.quiet and now >= next_status:
                next_status += 1.0
                print(f"REC {now - t0:6.1f} s  {stats['frames_written']} frames  {stats['frames_dropped']} dropped  "
                      f"{stats['bytes_written'] / 1e6:.1f} MB  [{status.state}] {status.message}",
                      file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        pipeline.remove_consumer(record)
        pipeline.stop()
        if pipeline.source_notice:  # kept in the file: a trainee replaying it later is told too
            recorder.add_event(EVENT_SOURCE_NOTICE, {"message": pipeline.source_notice})
        stats = recorder.stop()
        signal.signal(signal.SIGTERM, previous)
        # The live pipeline shows the newest frame and skips any that went stale while one was being
        # processed: say so, or a folder of 40 frames recorded as 37 looks like a loss.
        live = pipeline.status()
        stats = {**stats, "source_frames": live.frames_received, "frames_skipped_live": live.frames_dropped,
                 "frames_bad": live.frames_bad}
    if stats["frames_written"] == 0 and not recorder.error:
        # A header-only file would look like a finished (empty) session: do not leave one.
        out.unlink(missing_ok=True)
        why = status.message.split("; retrying in")[0] if status is not None and status.message else ""
        print(f"guidance record: {why or f'{args.source}: no frame received'}; nothing recorded, "
              f"{out} not kept", file=sys.stderr)
        return 2
    print(json.dumps(stats), flush=True)
    if pipeline.source_notice:  # recorded what there was: say what was not there
        print(f"guidance record: {args.source}: {pipeline.source_notice}", file=sys.stderr)
    if recorder.error:
        print(f"guidance record: {recorder.error}", file=sys.stderr)
        return 1
    if status is not None and status.state == "error":
        print(f"guidance record: {status.message}", file=sys.stderr)
        return 2
    return 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


# --- replay ------------------------------------------------------------------------------------

def run_replay(args: argparse.Namespace) -> int:
    from ..contract import dumps
    from ..recording import RecordingReader
    from ..recording.golden import guidance_of
    from ..recording.replay import recording_notice

    reader = RecordingReader(args.recording)
    n = len(reader)
    if not n:  # as export: an empty output with status 0 would pass for a replay
        reader.close()
        damage = f" ({reader.lost_info.message})" if reader.lost_info.message else ""
        raise InputError(f"{args.recording}: the recording has no frames to replay{damage}")
    notice = recording_notice(reader)
    if notice:
        print(f"guidance replay: {args.recording}: {notice}", file=sys.stderr)
    if args.check and not args.recompute:
        raise InputError("--check compares recomputed guidance with the recorded one: add --recompute")
    if not 0 <= args.start < n:  # clipping would print nothing (or from frame 0) without a word
        raise InputError(f"{args.recording}: --start {args.start}: the recording has positions 0 to {n - 1}")
    if args.stop is not None and args.stop <= args.start:
        raise InputError(f"{args.recording}: --stop {args.stop} must be after --start {args.start}")
    out_fh, finish = open_output(args.out)
    differing = 0
    try:
        if args.recompute:
            for recorded, line in _recomputed(reader, args):
                out_fh.write(dumps(line) + "\n")
                if args.check and recorded is not None and guidance_of(recorded) != guidance_of(line):
                    differing += 1
        else:
            for i in _paced_positions(reader.timestamps_s, args.start, args.stop, args.realtime, args.speed):
                line = reader.record(i)
                if line is None:  # a frame recorded without results (imported)
                    f = reader.frame(i)
                    line = {"frame": f.index, "t_s": round(f.timestamp_s, 6), "needle": None, "target": None,
                            "trajectory": None, "recorded": False}
                out_fh.write(dumps(line) + "\n")
                if args.realtime:
                    out_fh.flush()
        finish(True)
    except BaseException:
        finish(False)
        raise
    finally:
        reader.close()
    if args.check:
        print(f"guidance replay: {differing} frames differ from the recorded guidance", file=sys.stderr)
        return 1 if differing else 0
    return 0


def _recomputed(reader, args):
    from ..contract import result_to_record
    from ..pipeline import run_offline
    from ..recording.replay import RecordingSource

    source = RecordingSource(str(reader.path), realtime=args.realtime, speed=args.speed, start=args.start,
                             stop=args.stop, **source_options(args))
    stages = stages_from_args(args)
    if args.check:
        from ..recording.session_meta import describe_stages

        now, then = describe_stages(stages).get("model_sha256"), reader.metadata.get("model_sha256")
        if now != then:
            print(f"guidance replay: note: the model differs from the recorded one ({then} -> {now}); "
                  "guidance may differ", file=sys.stderr)
    for result in run_offline(source, stages):
        pos = source.current
        yield (reader.record(pos) if pos is not None else None), result_to_record(result)


def _paced_positions(timestamps_s, start: int, stop: int | None, realtime: bool, speed: float):
    n = len(timestamps_s)
    start = min(max(start, 0), n)
    stop = n if stop is None else min(max(stop, start), n)
    t_wall0 = time.monotonic()
    t_rec0 = timestamps_s[start] if start < n else 0.0
    for i in range(start, stop):
        if realtime:
            wait = t_wall0 + (timestamps_s[i] - t_rec0) / speed - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        yield i


# --- info, export, repair, import ---------------------------------------------------------------

def run_info(args: argparse.Namespace) -> int:
    from ..recording import RecordingReader

    with RecordingReader(args.recording) as reader:
        info = reader.info()
        if args.verify:
            info["verify"] = reader.verify()
    print(json.dumps(info, indent=2))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..recording import RecordingReader

    if not args.mp4 and not args.plus:
        raise InputError(f"{args.recording}: nothing to export: give --mp4 OUT and/or --plus OUT")
    with RecordingReader(args.recording) as reader:
        if not len(reader):
            raise InputError(f"{args.recording}: the recording has no frames")
        if reader.lost_info.message:  # exported all the same: what was recovered is worth having
            print(f"guidance export: {args.recording}: {reader.lost_info.message}", file=sys.stderr)
        if args.mp4:
            n = export_mp4(reader, args.mp4, overlay=not args.no_overlay, fps=args.fps)
            print(f"{args.mp4}: {n} frames", file=sys.stderr)
        if args.plus:
            export_plus(reader, args.plus)
            print(f"{args.plus}: {len(reader)} frames", file=sys.stderr)
    return 0


def export_plus(reader, out: str) -> None:
    """The interop task's PLUS writer (3D Slicer); the hook for ``export --plus``."""
    try:
        from ..io.plus import export_recording_to_plus
    except ImportError as exc:
        raise InputError(f"{out}: PLUS export is not available in this build ({exc})") from None
    export_recording_to_plus(reader, out)


def export_mp4(reader, out: str, *, overlay: bool = True, fps: float | None = None) -> int:
    """Write the recording as an MP4 video, with the recorded guidance burnt in. Returns frames written."""
    import cv2
    import numpy as np

    render = _overlay_renderer() if overlay else None
    # One video frame per recorded frame at the mean recorded rate, so the video lasts as long as the
    # session: a live session records fewer frames than the source gave (stale ones are dropped).
    ts = np.asarray(reader.timestamps_s, dtype=float)
    span_s = float(ts[-1] - ts[0]) if len(ts) > 1 else 0.0
    fps = fps or ((len(ts) - 1) / span_s if span_s > 0 else 30.0)
    target = Path(out)
    if target.is_dir():
        raise InputError(f"{target}: is a folder; give the video's file name (e.g. session.mp4)")
    partial = target.with_name(target.stem + ".partial" + (target.suffix or ".mp4"))
    first = reader.frame(0)
    size = (first.width_px, first.height_px)
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise InputError(f"{target}: cannot write an MP4 video here")
    ok = False
    try:
        for i in range(len(reader)):
            frame = first if i == 0 else reader.frame(i)
            record = reader.record(i)
            if render is not None and record is not None:
                img = render(record, frame)
            else:
                img = cv2.cvtColor(frame.image, cv2.COLOR_GRAY2BGR)
            if (img.shape[1], img.shape[0]) != size:
                img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            writer.write(img)
        ok = True
    finally:
        writer.release()
        if ok:
            os.replace(partial, target)
        else:
            partial.unlink(missing_ok=True)
    return len(reader)


def _overlay_renderer():
    """record, frame -> BGR image with the guidance drawn (the tracking task's overlay)."""
    try:
        from ..overlay import render_overlay
        from ..training.session import record_to_result
    except ImportError as exc:
        print(f"guidance export: no overlay in this build ({exc}); exporting plain frames", file=sys.stderr)
        return None

    def render(record, frame):
        return render_overlay(record_to_result(record, frame.image, frame.spacing_mm))
    return render


def run_repair(args: argparse.Namespace) -> int:
    from ..recording import repair_recording

    summary = repair_recording(args.recording, args.out)
    print(json.dumps(summary, indent=2))
    return 0


def run_import(args: argparse.Namespace) -> int:
    from ..recording import import_to_recording

    spacing = args.spacing if isinstance(args.spacing, tuple) else None
    stages = stages_from_args(args) if args.process else None
    summary = import_to_recording(args.input, args.out, spacing_mm=spacing, fps=args.fps, stages=stages)
    print(json.dumps(summary))
    return 0


__all__ = ["register", "export_mp4", "export_plus"]
