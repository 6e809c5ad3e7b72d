"""Accuracy of detections against ground truth, both as contract JSON Lines.

Frames are matched by their ``frame`` number. Figures (see :func:`evaluate`):

- needle tip error (mm when the spacing is known, else px): median, p95, mean;
- the tip error along the true shaft, signed (negative: the tip is drawn short of
  the real one, so the needle is deeper than shown and the distance to go reads
  too long): median, p5, p95, and the share of found needles drawn more than
  :data:`TIP_OFF_MM` short of, or beyond, the real tip (with a known spacing);
- shaft angle error (degrees, direction tail -> tip): median, p95;
- needle recall on frames whose truth has a needle; false-positive rate on frames
  whose truth has none; and, as a second figure, recall on frames whose visible
  shaft is at least :data:`MIN_SHAFT_MM` long (a sliver of 1-2 mm at the frame's
  edge, which the simulator still counts as a needle, has no direction a reader
  could see);
- bone-surface mean distance (vertical, mm or px) over the columns both
  surfaces cover, and the fraction of true columns the prediction covers;
- cartilage thickness error (mm) and target-kind agreement.

The spacing comes from each truth line's optional ``spacing_mm`` field, else
from the ``spacing_mm`` argument (``--spacing``), else it is unknown and
lengths are in pixels.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .contract import read_jsonl
from .errors import InputError
from .geometry import resample_on_grid

MIN_SHAFT_MM = 2.0
"""Shortest visible shaft counted by ``needle_recall_shaft_2mm`` (about three lateral resolution cells)."""

TIP_OFF_MM = 1.0
"""A tip drawn farther than this along the shaft from the real one is counted as short or beyond."""

SURFACE_GAP_PX = 12.0
"""Surface points farther apart than this in x are a gap, not interpolated across."""


@dataclass
class _Acc:
    tip: list[float] = field(default_factory=list)
    tip_along: list[float] = field(default_factory=list)
    angle: list[float] = field(default_factory=list)
    bone: list[float] = field(default_factory=list)
    surface: list[float] = field(default_factory=list)
    coverage: list[float] = field(default_factory=list)
    thickness: list[float] = field(default_factory=list)
    kind_ok: list[bool] = field(default_factory=list)
    with_needle: int = 0
    found: int = 0
    with_long: int = 0
    found_long: int = 0
    without_needle: int = 0
    false_pos: int = 0
    with_target: int = 0
    target_found: int = 0
    frames: int = 0
    missing_pred: int = 0
    units: set = field(default_factory=set)


def _spacing(rec: dict, default):
    sp = rec.get("spacing_mm", default)
    if sp is None:
        return None
    if isinstance(sp, (int, float)):
        return (float(sp), float(sp))
    return (float(sp[0]), float(sp[1]))


def _angle_deg(n: dict) -> float:
    if n.get("angle_deg") is not None:
        return float(n["angle_deg"])
    (x0, y0), (x1, y1) = n["shaft_px"][0], n["shaft_px"][-1]
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


def _surface_distance(pred_pts, true_pts, sy: float) -> tuple[float, float] | None:
    """Mean |dy| (scaled by ``sy``) over shared integer columns, and the true columns' coverage."""
    t = np.asarray(true_pts, dtype=float).reshape(-1, 2)
    p = np.asarray(pred_pts, dtype=float).reshape(-1, 2)
    if len(t) < 2:
        return None
    grid = np.arange(math.ceil(t[:, 0].min()), math.floor(t[:, 0].max()) + 1, dtype=float)
    yt = resample_on_grid(t, grid, SURFACE_GAP_PX)
    yp = resample_on_grid(p, grid, SURFACE_GAP_PX) if len(p) >= 2 else np.full_like(grid, np.nan)
    have_t = np.isfinite(yt)
    both = have_t & np.isfinite(yp)
    if have_t.sum() == 0:
        return None
    cov = both.sum() / have_t.sum()
    if both.sum() == 0:
        return math.nan, 0.0
    return float(np.mean(np.abs(yp[both] - yt[both])) * sy), float(cov)


def _add_frame(acc: _Acc, pred: dict | None, truth: dict, spacing_mm) -> None:
    acc.frames += 1
    if pred is None:
        acc.missing_pred += 1
        pred = {}
    sp = _spacing(truth, spacing_mm)
    acc.units.add("mm" if sp is not None else "px")
    tn, pn = truth.get("needle"), pred.get("needle")
    if tn is not None:
        acc.with_needle += 1
        long_shaft = False
        if sp is not None and tn.get("shaft_px"):
            shaft_mm = np.subtract(tn["tip_px"], tn["shaft_px"][0], dtype=float) * np.asarray(sp)
            long_shaft = bool(np.hypot(*shaft_mm) >= MIN_SHAFT_MM)
        acc.with_long += long_shaft
        if pn is not None:
            acc.found += 1
            acc.found_long += long_shaft
            d = np.subtract(pn["tip_px"], tn["tip_px"], dtype=float)
            if sp is not None:
                d = d * np.asarray(sp)
            acc.tip.append(float(np.hypot(*d)))
            shaft = np.subtract(tn["tip_px"], tn["shaft_px"][0], dtype=float) if tn.get("shaft_px") else None
            if shaft is not None and sp is not None:
                shaft = shaft * np.asarray(sp)  # the direction in mm where pixels are not square
            if shaft is not None and np.hypot(*shaft) > 0:
                acc.tip_along.append(float(d @ shaft) / float(np.hypot(*shaft)))
            da = (_angle_deg(pn) - _angle_deg(tn) + 180.0) % 360.0 - 180.0
            acc.angle.append(abs(da))
    else:
        acc.without_needle += 1
        if pn is not None:
            acc.false_pos += 1
    tt, pt = truth.get("target"), pred.get("target")
    if tt is not None and tt.get("bone_px"):
        acc.with_target += 1
        if pt is not None and pt.get("bone_px"):
            acc.target_found += 1
            sy = sp[1] if sp is not None else 1.0
            r = _surface_distance(pt["bone_px"], tt["bone_px"], sy)
            if r is not None:
                if math.isfinite(r[0]):
                    acc.bone.append(r[0])
                acc.coverage.append(r[1])
            r = _surface_distance(pt.get("surface_px") or [], tt.get("surface_px") or [], sy)
            if r is not None and math.isfinite(r[0]):
                acc.surface.append(r[0])
            acc.kind_ok.append(pt.get("kind") == tt.get("kind"))
            if tt.get("cartilage_thickness_mm") is not None and pt.get("cartilage_thickness_mm") is not None:
                acc.thickness.append(abs(float(pt["cartilage_thickness_mm"]) - float(tt["cartilage_thickness_mm"])))
        else:
            acc.coverage.append(0.0)


def _stats(v: list[float]) -> dict | None:
    if not v:
        return None
    a = np.asarray(v, dtype=float)
    return {"median": round(float(np.median(a)), 4), "p95": round(float(np.percentile(a, 95)), 4),
            "mean": round(float(a.mean()), 4), "n": int(len(a))}


def _signed_stats(v: list[float]) -> dict | None:
    if not v:
        return None
    a = np.asarray(v, dtype=float)
    return {"median": round(float(np.median(a)), 4), "p5": round(float(np.percentile(a, 5)), 4),
            "p95": round(float(np.percentile(a, 95)), 4), "n": int(len(a))}


def _report(acc: _Acc) -> dict:
    unit = "mm" if acc.units == {"mm"} else "px"
    along = np.asarray(acc.tip_along, dtype=float)
    in_mm = unit == "mm" and len(along) > 0
    return {
        "frames": acc.frames,
        "frames_without_prediction": acc.missing_pred,
        "unit": unit,
        "tip_error": _stats(acc.tip),
        "tip_along_error": _signed_stats(acc.tip_along),
        "tip_short_rate": round(float(np.mean(along < -TIP_OFF_MM)), 4) if in_mm else None,
        "tip_beyond_rate": round(float(np.mean(along > TIP_OFF_MM)), 4) if in_mm else None,
        "angle_error_deg": _stats(acc.angle),
        "needle_recall": round(acc.found / acc.with_needle, 4) if acc.with_needle else None,
        "needle_frames": acc.with_needle,
        "needle_recall_shaft_2mm": round(acc.found_long / acc.with_long, 4) if acc.with_long else None,
        "needle_frames_shaft_2mm": acc.with_long,
        "false_positive_rate": round(acc.false_pos / acc.without_needle, 4) if acc.without_needle else None,
        "needle_free_frames": acc.without_needle,
        "bone_distance": _stats(acc.bone),
        "bone_coverage": round(float(np.mean(acc.coverage)), 4) if acc.coverage else None,
        "target_recall": round(acc.target_found / acc.with_target, 4) if acc.with_target else None,
        "surface_distance": _stats(acc.surface),
        "cartilage_thickness_error_mm": _stats(acc.thickness),
        "target_kind_agreement": round(float(np.mean(acc.kind_ok)), 4) if acc.kind_ok else None,
    }


def evaluate(pairs: Iterable[tuple[dict | None, dict]], *, spacing_mm=None) -> dict:
    """Figures over (prediction or None, truth) record pairs; see the module docstring.

    ``spacing_mm``: a number or (sx, sy), used for truth lines without their own.
    Lengths are in ``report["unit"]``: "mm" only when every frame's spacing is known.
    """
    acc = _Acc()
    if spacing_mm is not None and isinstance(spacing_mm, (int, float)):
        spacing_mm = (float(spacing_mm), float(spacing_mm))
    for pred, truth in pairs:
        _add_frame(acc, pred, truth, spacing_mm)
    if acc.units == {"mm", "px"}:  # mixed: report everything in px would be wrong too; say so
        acc.units = {"px"}
    return _report(acc)


# ----------------------------------------------------------------------------- files

def find_pairs(pred: str | Path, truth: str | Path) -> list[tuple[Path, Path]]:
    """(prediction file, truth file) pairs for two files or two folders.

    A truth folder is searched for ``truth.jsonl`` files; for ``TRUTH/REL/truth.jsonl``
    the prediction is ``PRED/REL.jsonl``, ``PRED/REL/pred.jsonl`` or the one other
    ``.jsonl`` file in ``PRED/REL/``.
    """
    pred, truth = Path(pred), Path(truth)
    if not truth.exists():
        raise InputError(f"{truth}: no such file or folder")
    if not pred.exists():
        raise InputError(f"{pred}: no such file or folder")
    if truth.is_file():
        if not pred.is_file():
            raise InputError(f"{pred}: expected a JSON Lines file to compare with the file {truth}")
        return [(pred, truth)]
    truths = sorted(truth.rglob("truth.jsonl"))
    if not truths:
        raise InputError(f"{truth}: no truth.jsonl found in this folder")
    if pred.is_file():
        if len(truths) != 1:
            raise InputError(f"{pred}: one prediction file for {len(truths)} truth files in {truth}; give a folder")
        return [(pred, truths[0])]
    out = []
    for t in truths:
        rel = t.parent.relative_to(truth)
        cands = [pred / rel / "pred.jsonl"]
        if str(rel) != ".":
            cands.insert(0, pred.joinpath(*rel.parts[:-1], rel.parts[-1] + ".jsonl"))
        found = next((c for c in cands if c.is_file()), None)
        if found is None and (pred / rel).is_dir():
            others = [p for p in sorted((pred / rel).glob("*.jsonl")) if p.name != "truth.jsonl"]
            if len(others) == 1:
                found = others[0]
        if found is None:
            raise InputError(f"{pred / rel}: no prediction for {t} (expected {cands[0]})")
        out.append((found, t))
    return out


def _records(pred_file: Path, truth_file: Path) -> Iterator[tuple[dict | None, dict]]:
    preds = {int(r["frame"]): r for r in read_jsonl(pred_file)}
    truths = list(read_jsonl(truth_file))
    # Scored as frames without a prediction, an empty or mismatched file would look like a quiet run
    # (no false positives at all): it is a wrong file or a failed run, so say so.
    if truths and not preds:
        raise InputError(f"{pred_file}: holds no predictions to compare with {truth_file}")
    if truths and not any(int(t["frame"]) in preds for t in truths):
        raise InputError(f"{pred_file}: none of its frame numbers ({_span(preds)}) is in {truth_file} "
                         f"({_span({int(t['frame']) for t in truths})}); is it the right pair of files?")
    yield from ((preds.get(int(t["frame"])), t) for t in truths)


def _span(frames) -> str:
    return f"frame {min(frames)}" if len(frames) == 1 else f"frames {min(frames)}-{max(frames)}"


def _count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def evaluate_paths(pred: str | Path, truth: str | Path, *, spacing_mm=None, progress: bool | None = None) -> dict:
    """:func:`evaluate` over files or folders (see :func:`find_pairs`), with a progress bar on stderr.

    ``progress=None`` shows the bar when stderr is a terminal and the run is long.
    """
    pairs = find_pairs(pred, truth)
    total = sum(_count_lines(t) for _, t in pairs)
    show = progress if progress is not None else (sys.stderr.isatty() and total >= 500)
    done = [0]

    def stream():
        for pf, tf in pairs:
            for pr, tr in _records(pf, tf):
                yield pr, tr
                done[0] += 1
                if show and (done[0] % 50 == 0 or done[0] == total):
                    _bar(done[0], total)

    report = evaluate(stream(), spacing_mm=spacing_mm)
    if show:
        sys.stderr.write("\n")
    report["sequences"] = len(pairs)
    return report


def _bar(done: int, total: int, width: int = 30) -> None:
    frac = done / total if total else 1.0
    n = int(round(frac * width))
    sys.stderr.write(f"\r[{'#' * n}{'.' * (width - n)}] {done}/{total} frames")
    sys.stderr.flush()


def format_report(report: dict) -> str:
    """The report as aligned text lines for a terminal."""
    u = report["unit"]

    def st(s, unit):
        if s is None:
            return "n/a"
        return f"median {s['median']:.3f} {unit}, p95 {s['p95']:.3f} {unit}, mean {s['mean']:.3f} {unit} (n={s['n']})"

    def along(s, unit):
        if s is None:
            return "n/a"
        return (f"median {s['median']:+.3f} {unit}, p5 {s['p5']:+.3f} {unit}, p95 {s['p95']:+.3f} {unit} "
                f"(- short of the tip, + beyond)")

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    lines = [
        f"frames                  {report['frames']} in {report.get('sequences', 1)} sequence(s)"
        + (f", {report['frames_without_prediction']} without a prediction" if report["frames_without_prediction"] else ""),
        f"tip error               {st(report['tip_error'], u)}",
        f"tip along the shaft     {along(report.get('tip_along_error'), u)}"
        + (f"; drawn > {TIP_OFF_MM:g} mm short {pct(report['tip_short_rate'])}, beyond {pct(report['tip_beyond_rate'])}"
           if report.get("tip_short_rate") is not None else ""),
        f"shaft angle error       {st(report['angle_error_deg'], 'deg')}",
        f"needle recall           {pct(report['needle_recall'])} of {report['needle_frames']} frames with a needle"
        + (f"; {pct(report['needle_recall_shaft_2mm'])} of {report['needle_frames_shaft_2mm']} with >= 2 mm of shaft"
           if report.get("needle_recall_shaft_2mm") is not None else ""),
        f"false positives         {pct(report['false_positive_rate'])} of {report['needle_free_frames']} needle-free frames",
        f"bone surface distance   {st(report['bone_distance'], u)}; coverage {pct(report['bone_coverage'])}",
        f"target surface distance {st(report['surface_distance'], u)}",
        f"cartilage thickness err {st(report['cartilage_thickness_error_mm'], 'mm')}",
        f"target recall           {pct(report['target_recall'])}; kind agreement {pct(report['target_kind_agreement'])}",
    ]
    return "\n".join(lines)
