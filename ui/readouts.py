"""Large readouts beside the image, and the message strip above it.

Readouts sit beside the image, not on it, so the tissue stays unobstructed;
the distance to the target is the largest thing on screen. Alerts are steady
(no flashing, no sound): a coloured strip with plain words.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from guidance.overlay import ALERT_TEXT, aim_spread_mm, track_state
from guidance.types import FrameResult

from . import DISCLAIMER_SHORT
from .palette import css

ALERT_MESSAGES = {
    "near_bone": "NEAR BONE \u2014 tip within 2 mm of the bone surface",
    "off_target": "OFF TARGET \u2014 the path misses the picked target",
    "needle_lost": "NEEDLE LOST \u2014 guidance paused until the needle is seen again",
    "steep_needle": "STEEP NEEDLE \u2014 its tip may be deeper than drawn",
}


def alert_text(alerts) -> str:
    """The strip's text: one alert in full words; several in their short forms, so all of them fit."""
    alerts = list(alerts)
    if len(alerts) == 1:
        return ALERT_MESSAGES.get(alerts[0], alerts[0].upper())
    return "   |   ".join(ALERT_TEXT.get(a, a.upper()) for a in alerts)


STATE_TEXT = {"tracking": ("TRACKING", "surface"), "coasting": ("COASTING", "yellow"),
              "unconfirmed": ("UNCONFIRMED", "yellow"),  # seen in a frame or two: maybe a false detection
              "lost": ("LOST", "alert"), None: ("NOT SEEN", "white")}
DASH = "\u2014"


def _label(size_pt: int, bold: bool = False, colour: str = "white") -> QtWidgets.QLabel:
    lab = QtWidgets.QLabel(DASH)
    lab.setStyleSheet(f"color: {css(colour)}; font-size: {size_pt}pt; font-weight: {'bold' if bold else 'normal'};")
    lab.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.NoTextInteraction)
    return lab


def _caption(text: str) -> QtWidgets.QLabel:
    lab = QtWidgets.QLabel(text)
    lab.setStyleSheet("color: #b0b0b0; font-size: 11pt;")
    return lab


class ReadoutPanel(QtWidgets.QFrame):
    """Distance to target, tip depth, approach angle and tracking state, in large type."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setStyleSheet("ReadoutPanel { background: #101010; }")
        self.setFixedWidth(290)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(14, 12, 14, 12)
        lay.setSpacing(2)
        self.distance = _label(44, bold=True, colour="path")
        self.depth = _label(22, bold=True)
        self.angle = _label(22, bold=True)
        self.state = _label(16, bold=True)
        self.miss = _label(13)
        # always room for three lines (aim spread, miss of the picked target): the panel must not
        # re-flow (or clip) as the text changes
        self.miss.setFixedHeight(3 * QtGui.QFontMetrics(self._font_pt(13)).lineSpacing() + 8)
        for caption, widget in (("to target", self.distance), ("tip depth", self.depth),
                                ("approach angle", self.angle), ("needle", self.state), ("", self.miss)):
            if caption:
                lay.addWidget(_caption(caption))
            lay.addWidget(widget)
            lay.addSpacing(8)
        lay.addStretch(1)
        self.scale_note = _caption("")
        self.scale_note.setWordWrap(True)
        lay.addWidget(self.scale_note)
        self.spacing_note = _caption("")
        self.spacing_note.setWordWrap(True)
        lay.addWidget(self.spacing_note)
        self.source_note = _caption("")  # what the source is missing (a video cut off)
        self.source_note.setWordWrap(True)
        self.source_note.setStyleSheet("color: #e0a030; font-size: 10pt;")
        lay.addWidget(self.source_note)
        self.disclaimer = QtWidgets.QLabel(DISCLAIMER_SHORT)
        self.disclaimer.setStyleSheet("color: #909090; font-size: 9pt;")
        lay.addWidget(self.disclaimer)
        self.show_result(None)

    def show_result(self, result: FrameResult | None) -> None:
        """Fill the readouts from ``result``; None blanks them (no guidance to trust)."""
        tr = result.trajectory if result is not None else None
        if tr is None:
            self.distance.setText(DASH)
            self.depth.setText(DASH)
            self.angle.setText(DASH)
            reason = ""
            if result is not None and result.needle is not None:
                reason = ("the needle's path does not\nreach the target surface" if result.target is not None
                          else "no target surface seen")
            self.miss.setText(reason)
        else:
            # The number large, the unit smaller: it must fit and read at a glance from the table.
            number, unit = ((f"{tr.distance_mm:.1f}", "mm") if tr.distance_mm is not None
                            else (f"{tr.distance_px:.0f}", "px"))
            self.distance.setText(f"{number}<span style='font-size: 22pt;'>&nbsp;{unit}</span>")
            self.depth.setText(f"{tr.tip_depth_mm:.1f} mm" if tr.tip_depth_mm is not None else DASH)
            self.angle.setText(f"{tr.approach_deg:.0f}\u00b0")
            notes = []
            spread = aim_spread_mm(tr, result.frame.spacing_mm)
            if spread is not None:  # how surely the path lands: wide while little of the shaft is seen
                notes.append(f"path lands within \u00b1{spread:.1f} mm")
            if tr.miss_depth_mm is not None and tr.miss_lateral_mm is not None:
                depth = "deep" if tr.miss_depth_mm >= 0 else "shallow"
                side = "right" if tr.miss_lateral_mm >= 0 else "left"
                notes.append(f"misses the picked target by\n{abs(tr.miss_depth_mm):.1f} mm {depth}, "
                             f"{abs(tr.miss_lateral_mm):.1f} mm {side}")
            self.miss.setText("\n".join(notes))
        if result is None:
            text, role = DASH, "white"
        else:
            # the overlay's rule: LOST (in alert colour) only for a needle seen a moment ago
            state = (track_state(result.track, result.alerts) if result.track is not None
                     else ("tracking" if result.needle else None))
            text, role = STATE_TEXT.get(state, STATE_TEXT[None])
        self.state.setText(text)
        self.state.setStyleSheet(f"color: {css(role)}; font-size: 16pt; font-weight: bold;")
        no_scale = result is not None and result.frame.spacing_mm is None
        self.scale_note.setText("Pixel spacing unknown: distances in pixels. Set it with Ctrl+D." if no_scale else "")

    def _font_pt(self, size_pt: int) -> QtGui.QFont:
        font = QtGui.QFont(self.font())
        font.setPointSize(size_pt)
        return font

    def set_user_spacing(self, spacing_mm) -> None:
        """Say, permanently, when distances rest on a spacing the user typed in."""
        self.spacing_note.setText("" if spacing_mm is None else
                                  f"Spacing set by you: {spacing_mm[0]:.3f} \u00d7 {spacing_mm[1]:.3f} mm/px")

    def texts(self) -> dict[str, str]:
        """The readouts as plain text (the distance without its markup)."""
        distance = QtGui.QTextDocumentFragment.fromHtml(self.distance.text()).toPlainText().replace("\xa0", " ")
        return {"distance": distance, "depth": self.depth.text(), "angle": self.angle.text(),
                "state": self.state.text(), "miss": self.miss.text()}


class MessageStrip(QtWidgets.QLabel):
    """One line above the image: why guidance is hidden, or the current alerts.

    Always the same height, so the image never jumps when a message appears.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setFixedHeight(44)
        self.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        # A long message is cut, never allowed to widen the window (the image would jump).
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(0)
        self.kind = "none"
        self.set_message("none", "")

    def set_message(self, kind: str, text: str) -> None:
        """``kind``: "none", "info", "stale", "no_signal", "alert"."""
        if (kind, text) == (self.kind, self.text()):
            return
        self.kind = kind
        base = "font-size: 15pt; font-weight: bold; padding: 4px; border-radius: 4px;"
        style = {
            "none": "background: #101010; color: #808080;",
            "info": "background: #101010; color: #d0d0d0;",
            "stale": f"background: #2a2600; color: {css('yellow')}; border: 2px solid {css('yellow')};",
            "no_signal": f"background: #2a2600; color: {css('yellow')}; border: 2px solid {css('yellow')};",
            "alert": f"background: #2a1200; color: {css('alert')}; border: 2px solid {css('alert')};",
        }[kind]
        self.setStyleSheet(base + style)
        self.setText(text)
