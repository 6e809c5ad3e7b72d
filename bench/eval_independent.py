"""`guidance detect` on a folder of independent frames, with its default tracking and with ``--no-track``.

    python bench/eval_independent.py [--frames 60] [--seed 4242] [--keep DIR]

Another tool's test set often comes as a folder of frames that are not a
sequence: one phantom with the needle posed anew in every frame, or unrelated
scenes. ``guidance detect`` tracks by default (the contract's "full detection
and tracking pipeline") and times a folder at 30 fps, so whatever the tracker
carries from frame to frame must not cost such a folder anything. Two folders
are written with their truth:

- ``phantom``: one anatomy (``--seed``), frames drawn at random from its four
  scenarios (a needle inserting, steep, rolling out of the plane, none);
- ``scenes``: every frame from another seed (another anatomy and depth).

Both are run through ``guidance detect`` with and without ``--no-track`` and
scored with ``guidance.evaluate``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from guidance.cli import main as cli_main
from guidance.contract import read_jsonl
from guidance.evaluate import evaluate
from guidance.sim import SimConfig, Simulator

SCENARIOS = ("insertion", "steep", "out_of_plane", "no_needle")
KEEP = ("needle_recall", "needle_recall_shaft_2mm", "false_positive_rate", "tip_error", "angle_error_deg",
        "bone_distance", "target_kind_agreement")


def write_folder(out: Path, picks: list[tuple[int, str, int]]) -> None:
    """Frames ``(seed, scenario, frame)`` of 512x512 simulated scenes as PNGs, with ``truth.jsonl``."""
    (out / "frames").mkdir(parents=True, exist_ok=True)
    sims: dict = {}
    with open(out / "truth.jsonl", "w") as fh:
        for k, (seed, scn, i) in enumerate(picks):
            sim = sims.setdefault((seed, scn), Simulator(SimConfig(width_px=512, height_px=512, seed=seed,
                                                                    scenario=scn, depth_mm=30.0)))
            sf = sim.render(i % len(sim))
            cv2.imwrite(str(out / "frames" / f"{k:05d}.png"), sf.image)
            fh.write(json.dumps({**sf.truth, "frame": k, "t_s": round(k / 30.0, 6),
                                 "spacing_mm": list(sf.spacing_mm)}) + "\n")


def score(folder: Path, track: bool) -> dict:
    truth = list(read_jsonl(folder / "truth.jsonl"))
    pred = folder / ("tracked.jsonl" if track else "alone.jsonl")
    spacing = f"{truth[0]['spacing_mm'][0]},{truth[0]['spacing_mm'][1]}"
    args = ["detect", str(folder / "frames"), "--out", str(pred), "--spacing", spacing]
    if cli_main(args + ([] if track else ["--no-track"])) != 0:
        raise SystemExit(f"guidance detect failed on {folder}")
    r = evaluate(list(zip(read_jsonl(pred), truth)))
    return {k: ([r[k]["median"], r[k]["p95"]] if isinstance(r[k], dict) else r[k]) for k in KEEP}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--seed", type=int, default=4242, help="the phantom's anatomy (and the draws' seed)")
    ap.add_argument("--keep", type=Path, help="write the folders here (else a temporary folder)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    phantom = [(args.seed, SCENARIOS[k % 4], int(rng.integers(0, 240))) for k in range(args.frames)]
    rng.shuffle(phantom)
    scenes = [(args.seed + 1 + k, SCENARIOS[k % 4], int(rng.integers(0, 240))) for k in range(args.frames)]
    out: dict = {"frames": args.frames, "seed": args.seed}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for name, picks in (("phantom", phantom), ("scenes", scenes)):
            write_folder(root / name, picks)
            out[name] = {"tracked (default)": score(root / name, True), "--no-track": score(root / name, False)}
            print(f"{name}: done", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
