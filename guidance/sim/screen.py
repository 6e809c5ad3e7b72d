"""A scanner's screen around the imaging region: black border, text, depth ruler.

A frame grabber sees the whole screen of the scanner (see
``../shared/data/knee/lumify.png``): the ultrasound image sits in a rectangle
surrounded by black, parameter text, a depth ruler with tick marks and labels,
logos and a grey bar. Training on frames with such surroundings teaches the
detector to ignore them.
"""

from __future__ import annotations

import cv2
import numpy as np

_LABELS = ("MI", "TIB", "TIS", "Frame Rate", "2D Gain", "Gain", "Depth", "Transducer", "Preset",
           "Power", "DR", "FR", "Freq", "Focus", "Res", "Gn", "C", "MSK", "Knee")
_VALUES = ("0.9", "0.1", "0.4", "30 Hz", "24 Hz", "50", "62%", "3.0 cm", "4.0 cm", "L12-4", "L15-7",
           "MSK", "-0.3 dB", "60", "12 MHz", "HGen", "B", "Nerve", "2.5cm", "Sup", "Gen")


def _text(img, rng, text, org, scale, grey):
    font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX]))
    cv2.putText(img, text, (int(org[0]), int(org[1])), font, float(scale), int(grey), 1, cv2.LINE_AA)


def draw_screen(rng: np.random.Generator, size_px: tuple[int, int], region: tuple[int, int, int, int],
                depth_mm: float) -> np.ndarray:
    """A (H, W) uint8 screen with chrome drawn everywhere outside ``region`` (x, y, w, h).

    The region itself is left black for the caller to paste the image into.
    """
    W, H = size_px
    x, y, w, h = region
    screen = np.full((H, W), int(rng.integers(0, 12)), np.uint8)
    grey = lambda: int(rng.integers(150, 256))  # noqa: E731
    scale = max(0.25, min(W, H) / 900.0) * rng.uniform(0.8, 1.3)
    # Parameter text in a column on one side and a title bar on top.
    col_x = int(rng.uniform(x + w + 4, max(x + w + 5, W - 40))) if rng.random() < 0.6 else int(rng.uniform(0, max(1, x - 30)))
    for k in range(int(rng.integers(0, 9))):
        yy = int(12 + k * (H / 10) * rng.uniform(0.7, 1.0))
        _text(screen, rng, str(rng.choice(_LABELS)), (col_x, yy), scale * 0.8, grey() * 0.7)
        _text(screen, rng, str(rng.choice(_VALUES)), (col_x, yy + int(14 * scale + 4)), scale, grey())
    if rng.random() < 0.6 and y > 8:
        _text(screen, rng, str(rng.choice(_VALUES)) + "  " + str(rng.choice(_LABELS)),
              (int(rng.uniform(0, W / 2)), int(rng.uniform(8, y))), scale, grey())
    # Depth ruler: dots every 5 mm, labels every 10 mm, left or right of the region.
    if rng.random() < 0.85:
        rx = (x - int(rng.integers(4, 20))) if rng.random() < 0.5 else (x + w + int(rng.integers(3, 20)))
        if rng.random() < 0.4:  # some screens put the ruler far at the edge
            rx = int(rng.integers(2, 8)) if rx < x else W - int(rng.integers(3, 10))
        rx = int(np.clip(rx, 1, W - 2))
        px_per_mm = h / depth_mm
        for mm in np.arange(0, depth_mm + 0.01, 5.0):
            ty = int(round(y + mm * px_per_mm))
            if ty >= H - 1:
                break
            major = mm % 10 == 0
            r = 2 if major else 1
            cv2.rectangle(screen, (rx - r, ty - r // 2), (rx + r, ty + r // 2), grey(), -1)
            if major and rng.random() < 0.8:
                lx = rx + 6 if rx < W - 30 else rx - 28
                _text(screen, rng, f"{int(mm // 10)}" + ("cm" if mm + 10 > depth_mm else ""),
                      (lx, ty + 4), scale * 0.8, grey())
    # A logo / orientation marker near a top corner of the region.
    if rng.random() < 0.6:
        cx = int(np.clip(x - rng.integers(5, 25), 8, W - 8))
        cy = int(np.clip(y + rng.integers(0, 15), 8, H - 8))
        rad = int(max(3, 9 * scale))
        cv2.circle(screen, (cx, cy), rad, int(rng.integers(60, 200)), -1, cv2.LINE_AA)
        _text(screen, rng, str(rng.choice(["P", "C", "M", "L"])), (cx - rad // 2, cy + rad // 2), scale * 0.7, 255)
    # A grey scale bar.
    if rng.random() < 0.3:
        bx = int(np.clip(x + w + rng.integers(20, 60), 0, W - 6))
        bar = np.linspace(255, 0, max(4, h // 3)).astype(np.uint8)[:, None]
        y0 = y + 2
        y1 = min(H, y0 + len(bar))
        screen[y0:y1, bx:bx + 5] = bar[: y1 - y0]
    screen[y:y + h, x:x + w] = 0
    return screen


_ANNOTATIONS = ("R KNEE", "L KNEE", "LAT", "MED", "SUP", "TRANS", "LONG", "Trochlea", "Suprapat", "Inj", "Knee")


def draw_overlays(rng: np.random.Generator, image: np.ndarray, region: tuple[int, int, int, int]) -> None:
    """Draw what scanners burn into the image itself (in place): focus marker, labels, calipers.

    These are bright, sharp and often linear: distractors a needle detector must not take for a needle.
    """
    x, y, w, h = region
    H, W = image.shape
    scale = max(0.25, min(w, h) / 700.0) * rng.uniform(0.8, 1.3)
    if rng.random() < 0.6:  # focal-zone marker: a small triangle at the region's side
        fy = int(y + rng.uniform(0.2, 0.8) * h)
        side = x + w - 2 if rng.random() < 0.6 else x + 1
        s = max(3, int(h / 60))
        d = -1 if side > x + w / 2 else 1
        pts = np.array([[side, fy], [side + d * s * 1.5, fy - s], [side + d * s * 1.5, fy + s]], np.int32)
        cv2.fillConvexPoly(image, pts, int(rng.integers(150, 256)), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 3))):  # annotation text inside the image
        tx = int(x + rng.uniform(0.02, 0.7) * w)
        ty = int(y + rng.uniform(0.08, 0.98) * h)
        _text(image, rng, str(rng.choice(_ANNOTATIONS)), (tx, ty), scale * 1.2, int(rng.integers(170, 256)))
    if rng.random() < 0.4:  # a distance caliper: two crosses and a dotted line
        p = np.array([x + rng.uniform(0.1, 0.9) * w, y + rng.uniform(0.1, 0.9) * h])
        q = np.array([x + rng.uniform(0.1, 0.9) * w, y + rng.uniform(0.1, 0.9) * h])
        grey = int(rng.integers(180, 256))
        arm = max(2, int(min(w, h) / 60))
        for c in (p, q):
            cx, cy = int(c[0]), int(c[1])
            cv2.line(image, (cx - arm, cy), (cx + arm, cy), grey, 1)
            cv2.line(image, (cx, cy - arm), (cx, cy + arm), grey, 1)
        n = int(np.hypot(*(q - p)) / 4)
        for t in np.linspace(0, 1, max(n, 2))[1:-1:2]:
            cx, cy = (p + t * (q - p)).astype(int)
            if 0 <= cx < W and 0 <= cy < H:
                image[cy, cx] = grey
