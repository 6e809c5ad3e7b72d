"""Run both detectors on the real frames in ../shared/data and save overlays to docs/real_overlays/.

    python bench/real_overlays.py [--model auto|PATH]

Frames: the PLUS in-vivo bone sequence (frames 0, 10, 20; 0.085 mm/px per its
config) and the two knee screenshots (imaging region found by
``guidance.region.find_imaging_region``; spacing from the README's depth
rulers). None of these frames holds a needle, so any needle drawn is a false
positive; the false needles over all frames of both PLUS sequences (the bone
and the spine phantom) are counted too. Prints one JSON object summarising
what each detector reported.
Overlay colours: bone surface orange, cartilage top (target surface) sky blue,
needle shaft green with the tip circled in vermilion, imaging region grey.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from guidance.detect import load_detector
from guidance.io.plus import read_sequence
from guidance.region import find_imaging_region
from guidance.types import ImagingRegion

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
OUT = REPO / "docs" / "real_overlays"

ORANGE, SKY, GREEN, VERMILION, GREY = (0, 159, 230), (233, 180, 86), (115, 158, 0), (0, 94, 213), (128, 128, 128)


def real_frames() -> list[tuple[str, np.ndarray, ImagingRegion | None, tuple[float, float]]]:
    out = []
    seq = read_sequence(DATA / "plus" / "BoneUltrasound_L14.igs.mha")
    for i in (0, 10, 20):
        img = np.asarray(seq.frame(i))
        img = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        out.append((f"plus_bone_f{i:02d}", img, find_imaging_region(img), (0.085, 0.085)))
    for name, sp in (("lumify", 0.070), ("clarius", 0.085)):
        img = cv2.imread(str(DATA / "knee" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        out.append((f"knee_{name}", img, find_imaging_region(img), (sp, sp)))
    return out


def _polyline(img, pts, colour, max_gap_px=12.0):
    pts = np.asarray(pts, float)
    if len(pts) < 2:
        return
    breaks = np.flatnonzero(np.diff(pts[:, 0]) > max_gap_px) + 1
    for piece in np.split(pts, breaks):
        if len(piece) > 1:
            cv2.polylines(img, [np.round(piece * 4).astype(np.int32).reshape(-1, 1, 2)], False, colour, 2,
                          cv2.LINE_AA, shift=2)


def draw(image_u8: np.ndarray, det, region: ImagingRegion | None, label: str) -> np.ndarray:
    out = cv2.cvtColor(image_u8, cv2.COLOR_GRAY2BGR)
    if region is not None:
        cv2.rectangle(out, (region.x_px, region.y_px),
                      (region.x_px + region.width_px - 1, region.y_px + region.height_px - 1), GREY, 1)
    t = det.target
    if t is not None:
        _polyline(out, t.bone_px, ORANGE)
        if t.kind == "cartilage":
            _polyline(out, t.surface_px, SKY)
    n = det.needle
    if n is not None:
        p0 = tuple(int(round(v)) for v in n.tail_px)
        p1 = tuple(int(round(v)) for v in n.tip_px)
        cv2.line(out, p0, p1, GREEN, 2, cv2.LINE_AA)
        cv2.circle(out, p1, 7, VERMILION, 2, cv2.LINE_AA)
    txt = label
    if t is not None:
        txt += f" | {t.kind}" + (f", cartilage {t.cartilage_thickness_mm:.1f} mm" if t.cartilage_thickness_mm else "")
    txt += " | needle: " + ("FALSE POSITIVE" if n is not None else "none")
    cv2.putText(out, txt, (8, out.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def all_plus_frames(dets, name: str) -> dict:
    """False needles over every frame of a PLUS sequence (neither holds a needle); a figure, no images.

    The spine phantom's spacing is not in its file: taken as the bone sequence's 0.085 mm/px.
    """
    seq = read_sequence(DATA / "plus" / name)
    out = {}
    for det in dets:
        hits = []
        for i in range(len(seq)):
            img = np.asarray(seq.frame(i))
            img = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            d = det.detect(img, spacing_mm=(0.085, 0.085), region=find_imaging_region(img))
            if d.needle is not None:
                length_mm = float(np.hypot(*np.subtract(d.needle.tip_px, d.needle.tail_px))) * 0.085
                hits.append({"frame": i, "confidence": round(d.needle.confidence, 3), "length_mm": round(length_mm, 1)})
        out["model" if det.name.startswith("model") else det.name] = {"frames": len(seq), "false_needles": hits}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="auto", help="auto: the committed detector (with its second opinion)")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"real data not found at {DATA}", file=sys.stderr)
        return 2
    dets = [load_detector("classical")]
    if args.model == "auto" or Path(args.model).is_file():
        dets.insert(0, load_detector(args.model))
    OUT.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, img, region, sp in real_frames():
        row = {"region_px": [region.x_px, region.y_px, region.width_px, region.height_px] if region else None}
        for det in dets:
            d = det.detect(img, spacing_mm=sp, region=region)
            key = "model" if det.name.startswith("model") else det.name
            cv2.imwrite(str(OUT / f"{name}_{key}.png"), draw(img, d, region, f"{name} {det.name}"))
            t = d.target
            w = region.width_px if region else img.shape[1]
            row[key] = {"needle_false_positive": d.needle is not None,
                        "target": None if t is None else {
                            "kind": t.kind, "bone_points": len(t.bone_px),
                            "bone_x_span_fraction": round(float(np.ptp(t.bone_px[:, 0]) / w), 3) if len(t.bone_px) else 0,
                            "cartilage_thickness_mm": None if t.cartilage_thickness_mm is None
                            else round(t.cartilage_thickness_mm, 2)}}
        summary[name] = row
    summary["plus_all_frames"] = all_plus_frames(dets, "BoneUltrasound_L14.igs.mha")
    summary["spine_phantom_all_frames"] = all_plus_frames(dets, "SpinePhantomFreehand.igs.mha")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
