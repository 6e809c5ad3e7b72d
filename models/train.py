"""Train the needle-and-target segmentation model on simulated frames, export it to ONNX.

Reproduce the committed model (CPU, about 40 minutes on 2 cores)::

    python models/train.py --seed 0 --out models/needle_target.onnx

Data: ``guidance.sim.training.make_sample(seed, size_px=(256, 256))`` (strongly
domain-randomised knee scenes with and without a needle), rendered once into a
cache by worker processes (rendered again when the code that renders them has
changed since), then augmented on the fly (left-right flip, gain, gamma).
Targets are built from each sample's truth (contract fields), so they mean
exactly what the post-processing reads:

- ``needle``: the shaft from tail to tip, 3 px wide;
- ``bone``: a Gaussian ridge (sigma 1 px) on the bone surface, per column;
- ``cartilage``: the band between the cartilage top and the bone;
- ``tip``: a Gaussian spot (sigma 1.5 px) on the tip.

The network is a small U-Net of depthwise-separable convolutions; the exported
graph includes the sigmoid (input ``image`` 1x1x256x256, grey / 255; output
``probs`` 1x4x256x256). The export pads the skip connections' channels with
zeros to multiples of 16 (``models/align_channels.py``): same outputs, no
layout reorders in onnxruntime.

Requires the ``train`` extra (torch, onnx).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "models"))

SIZE = 256
CHANNELS = ("needle", "bone", "cartilage", "tip")
TRAIN_SEED0 = 100_000
VAL_SEED0 = 900_000


# ----------------------------------------------------------------------------- targets

def _polyline_rows(points, size: int, max_gap_px: float = 6.0) -> np.ndarray:
    """y of an x-ordered polyline at each integer column (NaN where absent)."""
    from guidance.geometry import resample_on_grid

    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    if len(pts) < 2:
        return np.full(size, np.nan)
    return resample_on_grid(pts, np.arange(size, dtype=float), max_gap_px)


def make_targets(truth: dict, size: int = SIZE) -> np.ndarray:
    """(4, size, size) float32 targets in [0, 1] from one contract truth line."""
    import cv2

    out = np.zeros((4, size, size), np.float32)
    rows = np.arange(size, dtype=np.float32)[:, None]
    n = truth.get("needle")
    if n is not None:
        tail, tip = np.asarray(n["shaft_px"][0], float), np.asarray(n["tip_px"], float)
        sh = 4  # sub-pixel line ends (fixed point, 4 fractional bits)
        p0 = tuple(int(v) for v in np.round((tail + 0.5) * (1 << sh) - 0.5 * (1 << sh)))
        p1 = tuple(int(v) for v in np.round((tip + 0.5) * (1 << sh) - 0.5 * (1 << sh)))
        img = np.zeros((size, size), np.uint8)
        cv2.line(img, p0, p1, 255, thickness=3, lineType=cv2.LINE_8, shift=sh)
        out[0] = img > 0
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        out[3] = np.exp(-((xx - tip[0]) ** 2 + (yy - tip[1]) ** 2) / (2 * 1.5 ** 2))
    t = truth.get("target")
    if t is not None and t.get("bone_px"):
        yb = _polyline_rows(t["bone_px"], size)
        ok = np.isfinite(yb)
        g = np.exp(-((rows - np.nan_to_num(yb)[None, :]) ** 2) / (2 * 1.0 ** 2))
        out[1] = np.where(ok[None, :], g, 0.0)
        if t.get("kind") == "cartilage" and t.get("surface_px"):
            yt = _polyline_rows(t["surface_px"], size)
            okc = ok & np.isfinite(yt)
            band = (rows >= np.nan_to_num(yt, nan=1e9)[None, :]) & (rows < np.nan_to_num(yb, nan=-1e9)[None, :])
            out[2] = band & okc[None, :]
    return out


_WORKER: dict = {}  # what a rendering worker process loads once (the PyMUST needle library)


def _init_worker(pymust_needles: Path | None) -> None:
    if pymust_needles is not None:
        from pymust_needles import NeedleLibrary

        _WORKER["library"] = NeedleLibrary(pymust_needles)


def render_sample(seed: int, needle_styles: bool | dict = False, distractors: float = 0.0,
                  pymust_share: float = 0.0, shadowless_bone: float = 0.0,
                  bright_fascias: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (S,S), targets uint8 (4,S,S) scaled to 0..255) for one training seed.

    With ``pymust_share`` > 0 that share of the samples (on its own random
    stream) are needle-free scenes given a needle imaged by PyMUST
    (``models/pymust_needles.py``, loaded by the worker's initialiser).
    """
    from guidance.sim.training import make_sample

    extra = {}
    if pymust_share > 0 and np.random.default_rng([seed, 0x9A57]).random() < pymust_share:
        extra = {"scenario": "no_needle", "add_needle": _WORKER["library"]}
    sf = make_sample(seed, size_px=(SIZE, SIZE), needle_styles=needle_styles, distractors=distractors,
                     shadowless_bone=shadowless_bone, bright_fascias=bright_fascias, **extra)
    img = np.asarray(sf.image, np.uint8)
    if img.shape != (SIZE, SIZE):
        raise RuntimeError(f"make_sample({seed}) gave an image of shape {img.shape}, expected {(SIZE, SIZE)}")
    tg = make_targets(sf.truth, SIZE)
    return img, np.round(tg * 255).astype(np.uint8)


def recipe_fingerprint(pymust_needles: Path | None = None) -> str:
    """SHA-256 of what renders the samples: the simulator's code, the modules it uses, the
    targets' code and, when used, the PyMUST needle library's code and files.

    A cache made by other code (a fix to the simulator, a re-made library) is
    rendered again rather than silently trained on.
    """
    import hashlib
    import inspect

    h = hashlib.sha256()
    files = sorted((REPO / "guidance" / "sim").glob("*.py"))
    files += [REPO / "guidance" / m for m in ("geometry.py", "contract.py", "types.py")]
    if pymust_needles is not None:
        files += [REPO / "models" / "pymust_needles.py", REPO / "bench" / "pymust_frames.py"]
        files += sorted(p for p in Path(pymust_needles).rglob("*") if p.is_file())
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    for fn in (_polyline_rows, make_targets, render_sample):
        h.update(inspect.getsource(fn).encode())
    return h.hexdigest()


def build_cache(path: Path, seeds: list[int], workers: int, needle_styles: bool | dict = False,
                distractors: float = 0.0, pymust_needles: Path | None = None,
                pymust_share: float = 0.0, shadowless_bone: float = 0.0,
                bright_fascias: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    recipe = recipe_fingerprint(pymust_needles if pymust_share > 0 else None)
    if path.is_file():
        z = np.load(path)
        if ("recipe" in z.files and str(z["recipe"]) == recipe and len(z["images"]) == len(seeds)
                and int(z["seed0"]) == seeds[0]):
            print(f"cache {path}: {len(seeds)} samples", flush=True)
            return z["images"], z["targets"]
        print(f"cache {path} was made by other code or for other seeds: rendering it again", flush=True)
    t0 = time.time()
    images = np.zeros((len(seeds), SIZE, SIZE), np.uint8)
    targets = np.zeros((len(seeds), 4, SIZE, SIZE), np.uint8)
    ctx = get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(pymust_needles if pymust_share > 0 else None,)) as pool:
        render = partial(render_sample, needle_styles=needle_styles, distractors=distractors,
                         pymust_share=pymust_share, shadowless_bone=shadowless_bone,
                         bright_fascias=bright_fascias)
        for i, (img, tg) in enumerate(pool.imap(render, seeds, chunksize=8)):
            images[i], targets[i] = img, tg
            if (i + 1) % 250 == 0 or i + 1 == len(seeds):
                el = time.time() - t0
                print(f"rendered {i + 1}/{len(seeds)} samples in {el:.0f} s "
                      f"(eta {el / (i + 1) * (len(seeds) - i - 1):.0f} s)", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=images, targets=targets, seed0=seeds[0], recipe=recipe)
    return images, targets


# ----------------------------------------------------------------------------- network

def build_net(width: int = 1, leaky: float = 0.05, channels: tuple = (8, 16, 24, 48, 64)):
    import torch
    from torch import nn

    def cbr(cin, cout, k=3, s=1, groups=1, dil=1):
        return [nn.Conv2d(cin, cout, k, s, padding=dil * (k // 2), dilation=dil, groups=groups, bias=False),
                nn.BatchNorm2d(cout), nn.LeakyReLU(leaky, inplace=True) if leaky else nn.ReLU(inplace=True)]

    class DS(nn.Sequential):
        """Depthwise 3x3 (optionally strided/dilated) then pointwise 1x1."""

        def __init__(self, cin, cout, s=1, dil=1):
            super().__init__(*cbr(cin, cin, 3, s, groups=cin, dil=dil), *cbr(cin, cout, 1))

    class Net(nn.Module):
        def __init__(self, c=tuple(channels)):
            super().__init__()
            c = tuple(v * width for v in c)
            self.stem = nn.Sequential(*cbr(1, c[0], 3))                               # 256
            self.e1 = nn.Sequential(DS(c[0], c[1], 2), DS(c[1], c[1]))                # 128
            self.e2 = nn.Sequential(DS(c[1], c[2], 2), DS(c[2], c[2]))                # 64
            self.e3 = nn.Sequential(DS(c[2], c[3], 2), DS(c[3], c[3]))                # 32
            self.e4 = nn.Sequential(DS(c[3], c[4], 2), DS(c[4], c[4], dil=2), DS(c[4], c[4], dil=4))  # 16
            self.d3 = DS(c[4] + c[3], c[3])
            self.d2 = DS(c[3] + c[2], c[2])
            self.d1 = DS(c[2] + c[1], c[1])
            self.d0 = DS(c[1] + c[0], c[0])
            self.head = nn.Conv2d(c[0], 4, 1)
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)

        def forward(self, x):
            s0 = self.stem(x)
            s1 = self.e1(s0)
            s2 = self.e2(s1)
            s3 = self.e3(s2)
            s4 = self.e4(s3)
            y = self.d3(torch.cat([self.up(s4), s3], 1))
            y = self.d2(torch.cat([self.up(y), s2], 1))
            y = self.d1(torch.cat([self.up(y), s1], 1))
            y = self.d0(torch.cat([self.up(y), s0], 1))
            return self.head(y)  # logits

    return Net()


def _weighted_bce(logit, target, k: float):
    """BCE on a soft target, weighted toward the structure (1 + k x target)."""
    import torch.nn.functional as F

    return (F.binary_cross_entropy_with_logits(logit, target, reduction="none") * (1.0 + k * target)).mean()


def loss_fn(logits, target):
    import torch
    import torch.nn.functional as F

    # needle: BCE with positives up-weighted plus soft Dice (a thin structure in a large frame)
    ln = F.binary_cross_entropy_with_logits(logits[:, 0], target[:, 0], pos_weight=torch.tensor(4.0))
    p = torch.sigmoid(logits[:, 0])
    inter = (p * target[:, 0]).sum((1, 2))
    denom = p.sum((1, 2)) + target[:, 0].sum((1, 2))
    has = (target[:, 0].sum((1, 2)) > 0).float()
    dice = ((1 - (2 * inter + 1) / (denom + 1)) * has).sum() / has.sum().clamp(min=1)
    # bone ridge and tip spot: BCE on soft targets, weighted toward the structure
    lb = _weighted_bce(logits[:, 1], target[:, 1], 8.0)
    lc = F.binary_cross_entropy_with_logits(logits[:, 2], target[:, 2], pos_weight=torch.tensor(2.0))
    lt = _weighted_bce(logits[:, 3], target[:, 3], 30.0)
    return ln + 0.5 * dice + lb + 0.5 * lc + lt, {"needle": ln.item(), "dice": dice.item(), "bone": lb.item(),
                                                  "cart": lc.item(), "tip": lt.item()}


def loss_keeping_needle(logits, target, teacher_probs):
    """Bone and cartilage learnt from the truth, needle and tip kept to a teacher's maps.

    For a fine-tune that must teach the target outputs something new without
    moving the needle outputs, on which the detector's rules were chosen: the
    needle and tip channels are distilled from ``teacher_probs`` (the starting
    network's probabilities on the same input), weighted toward the structure.
    """
    import torch
    import torch.nn.functional as F

    ln = _weighted_bce(logits[:, 0], teacher_probs[:, 0], 8.0)
    lt = _weighted_bce(logits[:, 3], teacher_probs[:, 3], 30.0)
    lb = _weighted_bce(logits[:, 1], target[:, 1], 8.0)
    lc = F.binary_cross_entropy_with_logits(logits[:, 2], target[:, 2], pos_weight=torch.tensor(2.0))
    return 2.0 * ln + lb + 0.5 * lc + 2.0 * lt, {"needle_kept": ln.item(), "bone": lb.item(), "cart": lc.item(),
                                               "tip_kept": lt.item()}


def augment(rng: np.random.Generator, img: np.ndarray, tg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left-right flip, gain and gamma: the probe can face either way, scanners differ in gain."""
    x = img.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        x, tg = x[:, ::-1], tg[:, :, ::-1]
    x = np.clip(x * rng.uniform(0.75, 1.3), 0, 1) ** rng.uniform(0.7, 1.4)
    return np.ascontiguousarray(x), np.ascontiguousarray(tg)


def mine_hard_negatives(net, images: np.ndarray, targets: np.ndarray, pool: int) -> np.ndarray:
    """Indices of the ``pool`` samples where ``net`` sees the most needle away from the true shaft.

    False needle mass: the sum of needle probabilities above 0.5 farther than 3 px
    from the true shaft (a tissue streak, a fascia, a burnt-in caliper taken for a
    needle). Fine-tuning on these, with their true targets, teaches what is not a needle.
    """
    import cv2
    import torch

    net.eval()
    mass = np.zeros(len(images))
    kernel = np.ones((7, 7), np.uint8)
    with torch.no_grad():
        for i in range(0, len(images), 32):
            x = torch.from_numpy(images[i:i + 32].astype(np.float32)[:, None] / 255.0)
            p = torch.sigmoid(net(x)[:, 0]).numpy()
            for k in range(len(p)):
                near = cv2.dilate((targets[i + k, 0] > 127).astype(np.uint8), kernel) > 0
                mass[i + k] = float(np.where((p[k] > 0.5) & ~near, p[k], 0.0).sum())
    order = np.argsort(-mass)[:pool]
    print(f"hard negatives: {int((mass > 0).sum())} of {len(images)} samples show needle away from the shaft; "
          f"pool of {len(order)} with false mass >= {mass[order[-1]]:.1f} px", flush=True)
    return order


# ----------------------------------------------------------------------------- export

def export_onnx(net, path: Path) -> bool:
    """Export ``net`` with the sigmoid to ``path``; True when its skip channels could be aligned."""
    import torch

    class WithSigmoid(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, image):
            return torch.sigmoid(self.m(image))

    net.eval()
    dummy = torch.zeros(1, 1, SIZE, SIZE)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(WithSigmoid(net), dummy, str(path), input_names=["image"], output_names=["probs"],
                      opset_version=17, dynamo=False, do_constant_folding=True)
    import onnx

    from align_channels import align_channels  # models/align_channels.py: same graph, faster layout

    try:
        onnx.save(align_channels(onnx.load(str(path))), str(path))
    except ValueError as exc:  # a changed architecture: keep the plain export rather than lose the run
        onnx.checker.check_model(onnx.load(str(path)))
        print(f"warning: {path} exported without channel alignment ({exc})", flush=True)
        return False
    return True


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--val", type=int, default=160)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "knee-guidance"
    ap.add_argument("--cache", type=Path, default=cache_dir / "train_seed{seed}_{samples}.npz")
    ap.add_argument("--out", type=Path, default=REPO / "models" / "needle_target.onnx")
    ap.add_argument("--checkpoint", type=Path, default=cache_dir / "last.pt")
    ap.add_argument("--init", type=Path, default=None, help="start from this checkpoint's weights")
    ap.add_argument("--leaky", type=float, default=0.05,
                    help="LeakyReLU slope (0: plain ReLU; the first stage of the committed model used 0)")
    ap.add_argument("--channels", type=int, nargs=5, default=[8, 16, 24, 48, 64],
                    help="channels at the 5 resolutions (256, 128, 64, 32, 16 px); the committed model's are the "
                         "default. onnxruntime pads them to its channel block (16 on AVX-512 CPUs) anyway")
    ap.add_argument("--hard-frac", type=float, default=0.0,
                    help="fraction of each batch drawn from the hard-negative pool (0: none)")
    ap.add_argument("--hard-pool", type=int, default=600,
                    help="size of the hard-negative pool: the training samples where the starting "
                         "weights see the most needle outside the true shaft")
    ap.add_argument("--freeze-bn", action="store_true",
                    help="BatchNorm layers keep their running statistics while fine-tuning (for --init from "
                         "models/onnx_to_checkpoint.py, whose statistics stand for the folded export)")
    ap.add_argument("--needle-styles", action="store_true",
                    help="make 35 %% of the needles of point scatterers, as Field II-style simulators do "
                         "(make_sample(needle_styles=True)); the cache file name says so")
    ap.add_argument("--style-mix", default=None, metavar="STYLE=SHARE,...",
                    help="each needle style's share of the needles, e.g. scatter=0.25,walls=0.3 (the rest "
                         "specular; make_sample(needle_styles={...})); the cache file name says so")
    ap.add_argument("--distractors", type=float, default=0.0, metavar="SHARE",
                    help="give this share of the samples 1-3 needle-like oblique tissue strands "
                         "(make_sample(distractors=...)); the cache file name says so")
    ap.add_argument("--pymust-needles", type=Path, default=None, metavar="DIR",
                    help="needles imaged by PyMUST (models/pymust_needles.py make --out DIR)")
    ap.add_argument("--pymust-share", type=float, default=0.0, metavar="SHARE",
                    help="give this share of the samples a needle from --pymust-needles instead of their own "
                         "scene (a needle-free one); the cache file name says so")
    ap.add_argument("--shadowless-bone", type=float, default=0.0, metavar="SHARE",
                    help="that share of the samples has a bone with no shadow, the tissue above mirrored under it "
                         "(make_sample(shadowless_bone=...)); the cache file name says so")
    ap.add_argument("--bright-fascias", type=float, default=0.0, metavar="SHARE",
                    help="that share of the samples has 1-3 fasciae as bright as the bone, with no shadow "
                         "(make_sample(bright_fascias=...)); the cache file name says so")
    ap.add_argument("--keep-needle", action="store_true",
                    help="distil the needle and tip outputs from the --init network (loss_keeping_needle): "
                         "teach the target outputs without moving the needle's")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="time budget: the learning-rate schedule runs over it when it ends before --steps")
    args = ap.parse_args(argv)

    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t_start = time.time()

    seeds = [TRAIN_SEED0 + args.seed * 1_000_000 + i for i in range(args.samples)]
    cache = Path(str(args.cache).format(samples=args.samples, seed=args.seed))
    styles = args.needle_styles
    if args.style_mix:
        styles = {k: float(v) for k, v in (kv.split("=") for kv in args.style_mix.split(","))}
        cache = cache.with_name(cache.stem + "_" + "_".join(f"{k}{v:g}" for k, v in styles.items()) + ".npz")
    elif args.needle_styles:
        cache = cache.with_name(cache.stem + "_styles.npz")
    if args.distractors:
        cache = cache.with_name(cache.stem + f"_strands{args.distractors:g}.npz")
    if args.pymust_share:
        if args.pymust_needles is None:
            ap.error("--pymust-share needs --pymust-needles DIR")
        cache = cache.with_name(cache.stem + f"_pymust{args.pymust_share:g}.npz")
    if args.shadowless_bone:
        cache = cache.with_name(cache.stem + f"_shadowless{args.shadowless_bone:g}.npz")
    if args.bright_fascias:
        cache = cache.with_name(cache.stem + f"_fascias{args.bright_fascias:g}.npz")
    if args.keep_needle and args.init is None:
        ap.error("--keep-needle needs --init: the network whose needle outputs it keeps")
    extra = {"pymust_needles": args.pymust_needles, "pymust_share": args.pymust_share,
             "shadowless_bone": args.shadowless_bone, "bright_fascias": args.bright_fascias}
    images, targets = build_cache(cache, seeds, args.workers, styles, args.distractors, **extra)
    vimg, vtg = build_cache(cache.with_name(cache.stem + "_val.npz"),
                            [VAL_SEED0 + i for i in range(args.val)], args.workers, styles, args.distractors, **extra)
    print(f"data ready in {time.time() - t_start:.0f} s", flush=True)

    net = build_net(leaky=args.leaky, channels=tuple(args.channels))
    if args.init is not None:
        net.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=False)["state"])
        print(f"initialised from {args.init}", flush=True)
    teacher = None
    if args.keep_needle:
        teacher = copy.deepcopy(net).eval()
        for p_ in teacher.parameters():
            p_.requires_grad_(False)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"network: {n_params} parameters", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    vx = torch.from_numpy(vimg.astype(np.float32)[:, None] / 255.0)
    vy = torch.from_numpy(vtg.astype(np.float32) / 255.0)
    if teacher is not None:  # the teacher is frozen: its needle map on the validation set once
        with torch.no_grad():
            teacher_val = torch.cat([torch.sigmoid(teacher(vx[i:i + 16]))[:, 0] for i in range(0, len(vx), 16)])

    hard = mine_hard_negatives(net, images, targets, args.hard_pool) if args.hard_frac > 0 else None
    n_hard = int(round(args.hard_frac * args.batch)) if hard is not None else 0

    t_train = time.time()
    log_every = 50
    running = {}
    step = 0
    budget_s = args.max_minutes * 60 if args.max_minutes else float("inf")
    progress = 0.0
    for step in range(1, args.steps + 1):
        # warm-up then cosine decay over the run; the run is the step count or the time budget,
        # whichever ends first (on a shared machine the step rate varies), so the rate always anneals
        progress = max((step - 1) / args.steps, (time.time() - t_train) / budget_s)
        if progress >= 1.0:
            print(f"time budget of {args.max_minutes} min reached at step {step - 1}", flush=True)
            step -= 1
            break
        lr = args.lr * (progress / 0.05 if progress < 0.05 else 0.5 * (1 + math.cos(math.pi * (progress - 0.05) / 0.95)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = rng.integers(0, len(images), args.batch)
        if n_hard:
            idx[:n_hard] = hard[rng.integers(0, len(hard), n_hard)]
        pairs = [augment(rng, images[i], targets[i].astype(np.float32) / 255.0) for i in idx]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None])
        y = torch.from_numpy(np.stack([p[1] for p in pairs]))
        net.train()
        if args.freeze_bn:  # keep the statistics the starting weights were made with (onnx_to_checkpoint.py)
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        logits = net(x)
        if teacher is not None:
            with torch.no_grad():
                kept = torch.sigmoid(teacher(x))
            loss, parts = loss_keeping_needle(logits, y, kept)
        else:
            loss, parts = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for k, v in parts.items():
            running[k] = running.get(k, 0.0) + v / log_every
        if step % log_every == 0:
            el = time.time() - t_train
            print(f"step {step}/{args.steps} " + " ".join(f"{k} {v:.4f}" for k, v in running.items())
                  + f" lr {lr:.2e} {el / step:.2f} s/step progress {100 * progress:.0f}%",
                  flush=True)
            running = {}
        if step % 250 == 0 or step == args.steps:
            net.eval()
            with torch.no_grad():
                vl, pn = [], []
                for i in range(0, len(vx), 16):
                    logits = net(vx[i:i + 16])
                    vl.append(loss_fn(logits, vy[i:i + 16])[0].item())
                    pn.append(torch.sigmoid(logits[:, 0]))
                if teacher is not None:  # how far the needle map has moved from the teacher's, where either sees one
                    pn = torch.cat(pn)
                    drift = (pn - teacher_val).abs()[(pn > 0.1) | (teacher_val > 0.1)].mean().item()
            print(f"val loss {np.mean(vl):.4f} at step {step}"
                  + (f", needle map moved {drift:.4f} from --init's" if teacher is not None else ""), flush=True)
            args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"step": step, "state": net.state_dict(), "args": vars(args)}, args.checkpoint)

    torch.save({"step": step, "state": net.state_dict(), "args": vars(args)}, args.checkpoint)
    aligned = export_onnx(net, args.out)
    info = {"seed": args.seed, "samples": args.samples, "steps_done": step, "steps": args.steps,
            "batch": args.batch, "lr": args.lr, "parameters": n_params, "channels": list(args.channels),
            "init": str(args.init) if args.init else None, "hard_frac": args.hard_frac, "hard_pool": args.hard_pool,
            "needle_styles": args.needle_styles, "style_mix": args.style_mix, "distractors": args.distractors,
            "pymust_needles": str(args.pymust_needles) if args.pymust_share else None,
            "pymust_share": args.pymust_share, "freeze_bn": args.freeze_bn,
            "shadowless_bone": args.shadowless_bone, "bright_fascias": args.bright_fascias,
            "keep_needle": args.keep_needle,
            "train_minutes": round((time.time() - t_train) / 60, 1),
            "total_minutes": round((time.time() - t_start) / 60, 1),
            "onnx_bytes": os.path.getsize(args.out), "channels_aligned_to": 16 if aligned else None}
    args.out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"exported {args.out} ({info['onnx_bytes'] / 1e6:.2f} MB): {json.dumps(info)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
