"""``guidance sim``: write a simulated sample sequence with its ground truth.

DIR/frames/00000.png ..., DIR/truth.jsonl (contract lines), DIR/meta.json.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from ..errors import InputError


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise InputError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 384x320")
    return int(m.group(1)), int(m.group(2))


def write_sample(out_dir: Path, *, scenario: str, seed: int, frames: int, size_px: tuple[int, int],
                 fps: float, depth_mm: float = 30.0, masks: bool = False, view: str | None = None,
                 needle_style: str = "specular") -> dict:
    """Render a sequence into ``out_dir``; returns the meta dict written to meta.json."""
    import cv2

    from ..contract import dumps
    from ..sim import SIM_VERSION, SimConfig, Simulator

    sim = Simulator(SimConfig(width_px=size_px[0], height_px=size_px[1], fps=fps, seed=seed,
                              scenario=scenario, depth_mm=depth_mm, n_frames=frames, view=view,
                              needle_style=needle_style))
    frames_dir = out_dir / "frames"
    try:
        frames_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot create ({exc.strerror})") from None
    for old in frames_dir.glob("*.png"):
        old.unlink()
    if masks:
        (out_dir / "masks").mkdir(exist_ok=True)
    with open(out_dir / "truth.jsonl", "w", encoding="utf-8") as fh:
        for f in sim.frames():
            cv2.imwrite(str(frames_dir / f"{f.index:05d}.png"), f.image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            if masks:
                packed = f.masks["needle"] | (f.masks["bone"] << 1) | (f.masks["cartilage"] << 2)
                cv2.imwrite(str(out_dir / "masks" / f"{f.index:05d}.png"), packed)
            fh.write(dumps(f.truth) + "\n")
    meta = {"simulator": "guidance.sim", "simulator_version": SIM_VERSION, "scenario": sim.scenario.name,
            "seed": seed, "frames": len(sim), "fps": fps, "size_px": list(size_px),
            "spacing_mm": list(sim.spacing_mm), "depth_mm": size_px[1] * sim.spacing_mm[1],
            "view": sim.anatomy.view, "probe_mhz": round(sim.probe.frequency_mhz, 2),
            "needle_gauge": sim.plan.gauge if sim.plan else None,
            **({"needle_style": needle_style} if needle_style != "specular" else {}),
            "masks": "masks/NNNNN.png bit 0 needle, bit 1 bone, bit 2 cartilage" if masks else None,
            "command": (f"guidance sim --scenario {sim.scenario.name} --seed {seed} --frames {len(sim)} "
                        f"--size {size_px[0]}x{size_px[1]} --fps {fps:g} --depth {depth_mm:g}"
                        + (f" --view {view}" if view else "")
                        + (f" --needle-style {needle_style}" if needle_style != "specular" else "")
                        + (" --masks" if masks else "") + f" --out {out_dir}")}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def _run(args) -> int:
    if args.frames <= 0:
        raise InputError(f"--frames {args.frames}: must be positive")
    if args.fps <= 0:
        raise InputError(f"--fps {args.fps}: must be positive")
    if not 5.0 <= args.depth <= 120.0:
        raise InputError(f"--depth {args.depth}: expected 5-120 mm")
    size = _size(args.size)
    if min(size) < 32:
        raise InputError(f"--size {args.size}: at least 32x32 px")
    meta = write_sample(Path(args.out), scenario=args.scenario, seed=args.seed, frames=args.frames,
                        size_px=size, fps=args.fps, depth_mm=args.depth, masks=args.masks, view=args.view,
                        needle_style=args.needle_style)
    print(f"wrote {meta['frames']} frames of '{meta['scenario']}' to {args.out}", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    from ..sim.anatomy import VIEWS
    from ..sim.needle import NEEDLE_STYLES
    from ..sim.scenarios import SCENARIOS

    p = subparsers.add_parser("sim", help="write a simulated knee injection sequence with ground truth",
                              description="Write a simulated sequence: DIR/frames/NNNNN.png, DIR/truth.jsonl "
                                          "(one contract line per frame with the true values), DIR/meta.json.")
    p.add_argument("--scenario", default="insertion",
                   help="one of: " + ", ".join(f"{k} ({v.description})" for k, v in SCENARIOS.items()))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--size", default="384x320", help="WIDTHxHEIGHT in pixels (default 384x320)")
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--depth", type=float, default=30.0, help="imaging depth in mm (default 30)")
    p.add_argument("--view", choices=VIEWS, default=None,
                   help="anatomy: trochlea (axial, V-shaped groove), condyle (convex), suprapatellar "
                        "(longitudinal, flat femur); default: drawn from the seed")
    p.add_argument("--needle-style", choices=NEEDLE_STYLES, default="specular",
                   help="the needle's echo: specular (a metal tube's walls and reverberation, default), "
                        "scatter (a cylinder of strong point scatterers, as Field II-style simulators make it), "
                        "walls (two equally bright walls, no ringing, as PyMUST makes a tube), "
                        "or coherent (those walls as continuous reflectors under steered plane waves: "
                        "faint and fringed unless a wave meets them square on, as in PyMUST's frames)")
    p.add_argument("--masks", action="store_true", help="also write masks/NNNNN.png (training labels)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_run)
