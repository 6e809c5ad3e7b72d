"""Small inline-SVG charts for self-contained HTML reports (no plotting library).

Values are drawn as given; NaN breaks a line. Text is escaped.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np

_AX = "#444"
_GRID = "#ddd"


def _ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return np.array([lo])
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    return np.arange(math.ceil(lo / step) * step, hi + step * 1e-9, step)


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.1f}"


class Chart:
    """An x-y chart frame: add series, bands and markers, then :meth:`svg`."""

    def __init__(self, x_range, y_range, *, width=700, height=240, x_label="", y_label="", title=""):
        self.w, self.h = width, height
        self.ml, self.mr, self.mt, self.mb = 56, 16, 28 if title else 12, 40
        self.x0, self.x1 = map(float, x_range)
        self.y0, self.y1 = map(float, y_range)
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1.0
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1.0
        self.x_label, self.y_label, self.title = x_label, y_label, title
        self.items: list[str] = []

    def sx(self, x):
        return self.ml + (np.asarray(x, float) - self.x0) / (self.x1 - self.x0) * (self.w - self.ml - self.mr)

    def sy(self, y):
        return self.h - self.mb - (np.asarray(y, float) - self.y0) / (self.y1 - self.y0) * (self.h - self.mt - self.mb)

    def line(self, x, y, colour="#0072B2", width=2.0, label=""):
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = np.isfinite(x) & np.isfinite(y)
        edges = np.diff(np.concatenate([[0], ok.astype(np.int8), [0]]))
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            if b - a == 1:  # a lone sample: a dot, or it would not show at all
                self.items.append(f'<circle cx="{float(self.sx(x[a])):.1f}" cy="{float(self.sy(y[a])):.1f}" '
                                  f'r="{width}" fill="{colour}"/>')
                continue
            pts = " ".join(f"{px:.1f},{py:.1f}" for px, py in zip(self.sx(x[a:b]), self.sy(y[a:b])))
            self.items.append(f'<polyline fill="none" stroke="{colour}" stroke-width="{width}" '
                              f'stroke-linejoin="round" points="{pts}"><title>{escape(label)}</title></polyline>')

    def hline(self, y, colour="#009E73", dash="6 4", label=""):
        yy = float(self.sy(y))
        self.items.append(f'<line x1="{self.ml}" x2="{self.w - self.mr}" y1="{yy:.1f}" y2="{yy:.1f}" '
                          f'stroke="{colour}" stroke-dasharray="{dash}"/>')
        if label:
            self.items.append(f'<text x="{self.w - self.mr - 4}" y="{yy - 4:.1f}" text-anchor="end" '
                              f'font-size="11" fill="{colour}">{escape(label)}</text>')

    def vline(self, x, colour="#D55E00", label=""):
        xx = float(self.sx(x))
        self.items.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{self.mt}" y2="{self.h - self.mb}" '
                          f'stroke="{colour}" stroke-width="1.5"/>')
        if label:
            self.items.append(f'<text x="{xx + 3:.1f}" y="{self.mt + 11}" font-size="11" '
                              f'fill="{colour}">{escape(label)}</text>')

    def band(self, xa, xb, colour="#999", opacity=0.25, y_lo=None, y_hi=None, label=""):
        a, b = float(self.sx(xa)), float(self.sx(xb))
        top = self.mt if y_hi is None else float(self.sy(y_hi))
        bot = self.h - self.mb if y_lo is None else float(self.sy(y_lo))
        self.items.append(f'<rect x="{a:.1f}" y="{top:.1f}" width="{max(b - a, 0.8):.1f}" '
                          f'height="{bot - top:.1f}" fill="{colour}" fill-opacity="{opacity}">'
                          f'<title>{escape(label)}</title></rect>')

    def points(self, x, y, colour="#0072B2", r=3.5, labels=None):
        for i, (px, py) in enumerate(zip(self.sx(x), self.sy(y))):
            if math.isfinite(px) and math.isfinite(py):
                t = f"<title>{escape(labels[i])}</title>" if labels else ""
                self.items.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{r}" fill="{colour}">{t}</circle>')

    def svg(self, y_ticks=True) -> str:
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.w} {self.h}" '
               f'width="{self.w}" height="{self.h}" font-family="sans-serif" role="img" '
               f'aria-label="{escape(self.title)}">', f'<rect width="{self.w}" height="{self.h}" fill="white"/>']
        if self.title:
            out.append(f'<text x="{self.ml}" y="17" font-size="13" font-weight="bold">{escape(self.title)}</text>')
        for xv in _ticks(self.x0, self.x1):
            xx = float(self.sx(xv))
            out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{self.mt}" y2="{self.h - self.mb}" stroke="{_GRID}"/>')
            out.append(f'<text x="{xx:.1f}" y="{self.h - self.mb + 14}" font-size="11" text-anchor="middle">{_fmt(xv)}</text>')
        if y_ticks:
            for yv in _ticks(self.y0, self.y1, 4):
                yy = float(self.sy(yv))
                out.append(f'<line x1="{self.ml}" x2="{self.w - self.mr}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{_GRID}"/>')
                out.append(f'<text x="{self.ml - 6}" y="{yy + 4:.1f}" font-size="11" text-anchor="end">{_fmt(yv)}</text>')
        out.extend(self.items)
        out.append(f'<rect x="{self.ml}" y="{self.mt}" width="{self.w - self.ml - self.mr}" '
                   f'height="{self.h - self.mt - self.mb}" fill="none" stroke="{_AX}"/>')
        out.append(f'<text x="{(self.ml + self.w - self.mr) / 2:.0f}" y="{self.h - 6}" font-size="12" '
                   f'text-anchor="middle">{escape(self.x_label)}</text>')
        if self.y_label:
            out.append(f'<text transform="translate(14 {(self.mt + self.h - self.mb) / 2:.0f}) rotate(-90)" '
                       f'font-size="12" text-anchor="middle">{escape(self.y_label)}</text>')
        out.append("</svg>")
        return "\n".join(out)
