"""Self-contained HTML session report: metrics, plots, key frames, trend.

One file with inline CSS, inline SVG charts and base64 PNG frames (OpenCV):
it opens offline in any browser and can be mailed or archived as is. Only
whitelisted technical metadata appears (see :func:`guidance.training.session.safe_metadata`):
no patient data, no file paths.
"""

from __future__ import annotations

import base64
import math
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .. import __version__
from ..errors import InputError
from .metrics import SessionAnalysis, analyse, overall_score
from .progress_db import MeasurementRow
from .series import SessionSeries
from .session import Session, record_to_result, safe_metadata
from .svgplot import Chart

DISCLAIMER = "Not a cleared medical device: for research, training and engineering use only."

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1180px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:22px 0 8px;border-bottom:1px solid #ccc;padding-bottom:3px}
.note{color:#8a4b00;font-size:13px} .muted{color:#666;font-size:12px}
table{border-collapse:collapse;font-size:13px;background:white} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0} td.v{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.grid{display:flex;flex-wrap:wrap;gap:14px} .card{background:white;border:1px solid #ddd;padding:8px}
.card img{display:block;max-width:100%} .score{font-size:30px;font-weight:bold}
.good{color:#006b4f} .bad{color:#b34700}
"""

#: (field, label, unit, one-line definition; docs/metrics.md has the exact ones)
METRIC_ROWS = (
    ("time_to_target_s", "Time to target", "s", "first sight of the tip to the first frame the tip is at the target"),
    ("reached_target", "Reached target", "", "tip within the reach distance of the target, or past its surface"),
    ("first_pass_success", "First-pass success", "", "target reached before any withdrawal"),
    ("redirections", "Redirections", "", "withdrawals followed by a re-advance at a changed shaft angle"),
    ("withdrawals", "Withdrawals", "", "insertion depth fell by the withdrawal distance below its peak"),
    ("needle_visible_fraction", "Needle visible", "%", "frames with the needle detected, first to last sighting"),
    ("tip_lost_episodes", "Tip-lost episodes", "", "gaps in sight of the tip at least the minimum length"),
    ("tip_lost_total_s", "Tip lost, total", "s", "summed length of those gaps"),
    ("path_length_mm", "Tip path length", "{u}", "length of the smoothed tip path"),
    ("smoothness_ldlj", "Smoothness (LDLJ)", "", "log dimensionless jerk; closer to 0 is smoother"),
    ("final_tip_to_target_mm", "Final tip-to-target", "{u}", "at the last frame the tip was seen"),
    ("closest_tip_to_target_mm", "Closest approach", "{u}", "smallest tip-to-target distance"),
    ("tip_to_target_at_injection_mm", "Tip-to-target at injection", "{u}", "at the injection event"),
    ("min_tip_to_bone_mm", "Closest to bone", "{u}", "smallest tip-to-bone distance"),
    ("touched_bone", "Touched bone", "", "tip within the bone-touch distance of the bone surface"),
)


def _fmt_value(v, unit: str) -> str:
    if v is None:
        return "&mdash;"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if unit == "%":
        return f"{100 * v:.0f} %"
    if isinstance(v, float):
        v = 0.0 if abs(v) < 0.005 else v  # no "-0.00 mm"
        return f"{v:.2f} {unit}".strip()
    return f"{v} {unit}".strip()


def _png_b64(img: np.ndarray, max_width: int = 560) -> str:
    if img.shape[1] > max_width:
        f = max_width / img.shape[1]
        img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _simple_overlay(image: np.ndarray, record: dict) -> np.ndarray:
    """Fallback drawing when guidance.overlay is not available."""
    img = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    tg = record.get("target") or {}
    for key, col in (("bone_px", (167, 121, 204)), ("surface_px", (115, 158, 0))):
        if tg.get(key):
            cv2.polylines(img, [np.round(np.asarray(tg[key], float)).astype(np.int32)], False, col, 2, cv2.LINE_AA)
    nd = record.get("needle")
    if nd:
        (x0, y0), (x1, y1) = nd["shaft_px"]
        cv2.line(img, (round(x0), round(y0)), (round(x1), round(y1)), (233, 180, 86), 2, cv2.LINE_AA)
        cv2.circle(img, (round(x1), round(y1)), 6, (66, 228, 240), 2, cv2.LINE_AA)
    return img


def key_frame_image(session: Session, row: int) -> np.ndarray | None:
    """The recorded frame of ``row`` with its recorded guidance drawn over it (BGR)."""
    image = session.image(row)
    if image is None:
        return None
    record = session.records[row]
    try:
        from ..overlay import render_overlay
    except ImportError:
        return _simple_overlay(image, record)
    return render_overlay(record_to_result(record, image))


def path_image(session: Session, a: SessionAnalysis) -> np.ndarray:
    """The tip path over the image, coloured by time (dark blue early, yellow late)."""
    s = a.series
    rows = np.flatnonzero(s.seen)
    bg_row = a.key_frames.get("closest_approach", int(rows[-1]) if rows.size else 0)
    image = session.image(bg_row) if len(session) else None
    if image is None:
        pts = s.tip_px[rows] if rows.size else np.zeros((1, 2))
        w = int(max(64, np.nanmax(pts[:, 0]) + 40)) if rows.size else 320
        h = int(max(64, np.nanmax(pts[:, 1]) + 40)) if rows.size else 240
        img = np.full((h, w, 3), 30, np.uint8)
    else:
        img = (cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) * 0.6).astype(np.uint8)
    surf = s.surface_px[bg_row]
    surf = surf[~np.isnan(surf[:, 0])]
    if len(surf) >= 2:
        cv2.polylines(img, [np.round(surf).astype(np.int32)], False, (115, 158, 0), 2, cv2.LINE_AA)
    if rows.size >= 2:
        tips = np.round(s.tip_px[rows] * 16).astype(np.int32)
        ramp = cv2.applyColorMap(np.linspace(0, 255, len(rows)).astype(np.uint8)[:, None], cv2.COLORMAP_VIRIDIS)[:, 0]
        for k in range(len(rows) - 1):  # one segment per frame of the path (not per pixel)
            cv2.line(img, tuple(tips[k]), tuple(tips[k + 1]), tuple(int(c) for c in ramp[k]), 2, cv2.LINE_AA, 4)
        for r in a.metrics.redirection_details:
            if r.redirected and r.readvance_s is not None:
                k = int(np.argmin(np.abs(s.t_s[rows] - r.readvance_s)))
                cv2.circle(img, tuple(tips[k]), 6 * 16, (0, 94, 213), 2, cv2.LINE_AA, 4)
    return img


def distance_chart(a: SessionAnalysis) -> str:
    s, m = a.series, a.metrics
    u = m.units
    d = a.target_dist_mm
    top = float(np.nanmax(d)) if np.isfinite(d).any() else 10.0
    ch = Chart((0, max(float(s.t_s[-1]) if len(s) else 1.0, 1e-3)), (0, top * 1.05 + 1e-3),
               x_label="time (s)", y_label=f"tip to target ({u})", title="Tip distance to target over time")
    lost = ~s.seen
    edges = np.diff(np.concatenate([[0], lost.astype(np.int8), [0]]))
    for a0, b0 in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
        ch.band(s.t_s[a0], s.t_s[min(b0, len(s) - 1)], label="tip not seen")
    ch.hline(m.params.reach_mm, label=f"reach ({m.params.reach_mm:g} {u})")
    for r in m.redirection_details:
        if r.readvance_s is not None:
            ch.vline(r.readvance_s, colour="#D55E00" if r.redirected else "#999999",
                     label="redirect" if r.redirected else "re-advance")
    ch.line(s.t_s, d, label="tip to target")
    return ch.svg()


def visibility_chart(s: SessionSeries) -> str:
    ch = Chart((0, max(float(s.t_s[-1]) if len(s) else 1.0, 1e-3)), (0, 3), height=110,
               x_label="time (s)", title="Needle visibility (blue: detected, yellow: coasting, grey: not shown)")
    rows = ((s.seen, "#0072B2", 2, "detected"), (s.shown & ~s.seen, "#E69F00", 1, "coasting on prediction"),
            (~s.shown, "#999999", 0, "not shown"))
    dt = float(np.median(np.diff(s.t_s))) if len(s) > 1 else 0.0
    for mask, colour, lane, label in rows:
        edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
        for a0, b0 in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            ch.band(s.t_s[a0], s.t_s[b0 - 1] + dt, colour=colour, opacity=0.9, y_lo=lane + 0.15,
                    y_hi=lane + 0.85, label=label)
    return ch.svg(y_ticks=False)


def trend_chart(rows: Sequence[MeasurementRow]) -> str:
    days = [datetime.fromisoformat(r.measured_on) for r in rows]
    x = np.array([(d - days[0]).days for d in days], float)
    y = np.array([np.nan if r.median_thickness_mm is None else r.median_thickness_mm for r in rows], float)
    top = float(np.nanmax(y)) if np.isfinite(y).any() else 3.0
    ch = Chart((0, max(x[-1], 1.0)), (0, top * 1.25), height=200, x_label=f"days since {rows[0].measured_on}",
               y_label="median thickness (mm)", title=f"Cartilage thickness, knee {rows[0].knee_id}")
    ch.line(x, y, colour="#009E73")
    ch.points(x, y, colour="#009E73", labels=[f"{r.measured_on}: {_fmt_value(r.median_thickness_mm, 'mm')}"
                                                for r in rows])
    return ch.svg()


def build_report(session: Session, *, analysis: SessionAnalysis | None = None, trainee: str | None = None,
                 trend: Sequence[MeasurementRow] = (), title: str = "Needle guidance session report") -> str:
    """The report as one HTML string (no external resources)."""
    if len(session) == 0:
        raise InputError("the session has no frames: nothing to report")
    a = analysis or analyse(session.records, session.events, metadata=session.metadata)
    m = a.metrics
    u = m.units
    meta = safe_metadata(session.metadata)
    meta.setdefault("frames", m.frames)
    meta["duration_s"] = round(m.duration_s, 2)
    if session.session_id:
        meta["session_id"] = session.session_id
    if trainee:
        meta["trainee"] = trainee
    meta["report_software"] = f"guidance {__version__}"
    meta["report_generated_utc"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    score = overall_score(m)

    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
             f"<meta name='viewport' content='width=device-width'><style>{_CSS}</style></head><body>",
             f"<h1>{escape(title)}</h1><div class='note'>{escape(DISCLAIMER)}</div>"]
    if u == "px":
        parts.append("<p class='note'>Pixel spacing unknown: lengths are in pixels, not millimetres.</p>")
    cls = "good" if score >= 70 else "bad"
    parts.append(f"<h2>Summary</h2><div class='grid'><div class='card'><div class='muted'>overall score</div>"
                 f"<div class='score {cls}'>{score:.0f} / 100</div></div>")
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in meta.items())
    parts.append(f"<div class='card'><table><tr><th colspan=2>Session (technical metadata only)</th></tr>"
                 f"{rows}</table></div></div>")

    d = m.to_dict()
    mrows = "".join(f"<tr><td>{escape(label)}</td><td class='v'>{_fmt_value(d.get(key), unit.format(u=u))}</td>"
                    f"<td class='muted'>{escape(desc)}</td></tr>" for key, label, unit, desc in METRIC_ROWS)
    p = m.params
    parts.append(f"<h2>Metrics</h2><table><tr><th>metric</th><th>value</th><th>definition</th></tr>{mrows}</table>"
                 f"<p class='muted'>Thresholds: reach {p.reach_mm:g} {u}, bone touch {p.bone_touch_mm:g} {u}, "
                 f"withdrawal {p.withdraw_mm:g} {u}, re-advance {p.readvance_mm:g} {u}, redirection "
                 f"&gt; {p.redirect_deg:g}&deg; (medians over {p.sustain_s:g} s), tip lost &ge; {p.min_lost_s:g} s. "
                 f"Exact definitions: docs/metrics.md.</p>")
    if m.redirection_details:
        rr = "".join(f"<tr><td class='v'>{r.peak_s:.2f}</td><td class='v'>{r.trough_s:.2f}</td>"
                     f"<td class='v'>{_fmt_value(r.readvance_s, 's')}</td><td class='v'>{r.withdrawn_mm:.1f} {u}</td>"
                     f"<td class='v'>{_fmt_value(r.angle_change_deg, '°')}</td><td>{'redirection' if r.redirected else ('re-advance, same line' if r.readvance_s is not None else 'not re-advanced')}</td></tr>"
                     for r in m.redirection_details)
        parts.append("<h2>Withdrawals</h2><table><tr><th>deepest (s)</th><th>withdrawn to (s)</th>"
                     f"<th>re-advanced (s)</th><th>withdrawn</th><th>angle change</th><th>kind</th></tr>{rr}</table>")

    parts.append("<h2>Plots</h2><div class='grid'><div class='card'>" + distance_chart(a) + "<br>"
                 + visibility_chart(a.series) + "</div>"
                 f"<div class='card'><div class='muted'>Tip path over the image<br>"
                 f"(dark: early, yellow: late; orange rings: redirections)</div>"
                 f"<img alt='tip path' src='{_png_b64(path_image(session, a), 380)}'></div></div>")

    labels = {"first_sight": "First sight of the tip", "closest_approach": "Closest approach",
              "injection": "Injection"}
    cards = []
    for key, label in labels.items():
        row = a.key_frames.get(key)
        if row is None:
            cards.append(f"<div class='card'><b>{label}</b><div class='muted'>not in this session</div></div>")
            continue
        img = key_frame_image(session, row)
        t = a.series.t_s[row]
        dist = a.target_dist_mm[row]
        cap = f"t = {t:.2f} s, tip to target {dist:.1f} {u}" if math.isfinite(dist) else f"t = {t:.2f} s"
        body = (f"<img alt='{label}' src='{_png_b64(img, 340)}'>" if img is not None
                else "<div class='muted'>no frames in this session file</div>")
        cards.append(f"<div class='card'><b>{label}</b><br><span class='muted'>{cap}</span>{body}</div>")
    parts.append("<h2>Key frames (recorded guidance shown)</h2><div class='grid'>" + "".join(cards) + "</div>")

    if trend:
        parts.append("<h2>Follow-up: cartilage thickness trend</h2>" + trend_chart(trend))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: str | Path, html: str) -> Path:
    path = Path(path)
    try:
        path.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot write the report ({exc.strerror})") from None
    return path
