"""Contact sheet: simulated frames beside real knee and bone frames.

``python -m guidance.sim.contact_sheet [OUT.png] [--samples DIR]`` writes a grey
sheet: the top row holds the real images (``../shared/data/knee/*.png``
cropped to their imaging region, a frame of the PLUS bone sequence), the next
rows frames from each sample in ``replay_data/`` (or freshly simulated ones),
and the last row the joint-line view and randomised training samples.
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
TILE = (288, 240)  # (w, h) of each tile


def read_mha_frame(path: Path, index: int) -> np.ndarray | None:
    """One frame of an uncompressed or zlib-compressed MET_UCHAR MetaImage sequence (for the sheet only)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    key = b"ElementDataFile = LOCAL\n"
    at = raw.find(key)
    if at < 0:
        return None
    header = raw[:at].decode("latin-1")
    fields = dict(line.split(" = ", 1) for line in header.splitlines() if " = " in line)
    w, h, n = (int(v) for v in fields["DimSize"].split())
    data = raw[at + len(key):]
    if fields.get("CompressedData", "False").strip() == "True":
        data = zlib.decompress(data)
    frames = np.frombuffer(data, np.uint8)[: w * h * n].reshape(n, h, w)
    return frames[min(index, n - 1)]


def _fit(img: np.ndarray, label: str) -> np.ndarray:
    w, h = TILE
    scale = min(w / img.shape[1], h / img.shape[0])
    r = cv2.resize(img, (max(1, int(img.shape[1] * scale)), max(1, int(img.shape[0] * scale))),
                   interpolation=cv2.INTER_AREA)
    tile = np.zeros((h + 18, w), np.uint8)
    y0, x0 = (h - r.shape[0]) // 2, (w - r.shape[1]) // 2
    tile[18 + y0:18 + y0 + r.shape[0], x0:x0 + r.shape[1]] = r
    cv2.putText(tile, label, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 255, 1, cv2.LINE_AA)
    return tile


def build_sheet(samples_dir: Path | None) -> np.ndarray:
    from .simulator import SimConfig, Simulator
    from .training import make_sample

    real = []
    # Imaging regions of the two screenshots (x0, y0, x1, y1), read off the images.
    for name, (x0, y0, x1, y1) in (("lumify.png", (392, 147, 880, 572)), ("clarius.png", (108, 224, 692, 577))):
        img = cv2.imread(str(SHARED / "knee" / name), cv2.IMREAD_GRAYSCALE)
        if img is not None:
            real.append(_fit(img[y0:y1, x0:x1], f"REAL {name}"))
    bone = read_mha_frame(SHARED / "plus" / "BoneUltrasound_L14.igs.mha", 10)
    if bone is not None:
        real.append(_fit(bone[:, 175:645], "REAL PLUS bone L14"))
    rows = [real]
    names = ("insertion", "steep", "out_of_plane", "no_needle")
    for name in names:
        tiles = []
        folder = samples_dir / name if samples_dir else None
        if folder and (folder / "frames").is_dir():
            files = sorted((folder / "frames").glob("*.png"))
            for f in (files[len(files) // 5], files[len(files) // 2], files[-1]):
                tiles.append(_fit(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), f"sim {name} {f.stem}"))
        else:
            sim = Simulator(SimConfig(width_px=384, height_px=320, fps=15, seed=11, scenario=name, n_frames=60))
            for i in (12, 30, 59):
                tiles.append(_fit(sim.render(i).image, f"sim {name} {i}"))
        rows.append(tiles)
    joint = Simulator(SimConfig(width_px=384, height_px=320, fps=15, seed=2, scenario="insertion", n_frames=40,
                                view="joint_line")).render(35).image
    rows.append([_fit(joint, "sim joint_line view")]
                + [_fit(make_sample(s, (320, 256)).image, f"make_sample({s}) (training)") for s in (1, 2)])
    width = max(len(r) for r in rows)
    blank = np.zeros_like(rows[1][0])
    lines = [np.hstack(r + [blank] * (width - len(r))) for r in rows]
    return np.vstack(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", nargs="?", default=str(REPO / "docs" / "contact_sheet.png"))
    ap.add_argument("--samples", default=str(REPO / "replay_data"))
    a = ap.parse_args(argv)
    sheet = build_sheet(Path(a.samples) if a.samples else None)
    cv2.imwrite(a.out, sheet)
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
