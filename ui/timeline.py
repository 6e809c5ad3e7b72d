"""A timeline slider with event marks and a loop range."""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from .palette import colour
from .replay_data import Mark

MARK_ROLES = {"needle_lost": "yellow", "steep_needle": "yellow", "near_bone": "alert", "off_target": "alert",
              "alert": "alert",
              "injection": "sky_blue", "target": "white"}


class Timeline(QtWidgets.QSlider):
    """Horizontal frame slider; draws event marks above the groove and the loop range under it."""

    def __init__(self, parent=None) -> None:
        super().__init__(QtCore.Qt.Orientation.Horizontal, parent)
        self.setMinimumHeight(44)
        self.marks: list[Mark] = []
        self.loop_range: tuple[int, int] | None = None
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)

    def set_marks(self, marks: list[Mark]) -> None:
        self.marks = list(marks)
        self.setToolTip("\n".join(f"frame {m.index}: {m.label or m.kind}" for m in self.marks[:30]))
        self.update()

    def set_loop_range(self, loop: tuple[int, int] | None) -> None:
        self.loop_range = loop
        self.update()

    def _x_of(self, index: np.ndarray) -> np.ndarray:
        opt = QtWidgets.QStyleOptionSlider()
        self.initStyleOption(opt)
        groove = self.style().subControlRect(QtWidgets.QStyle.ComplexControl.CC_Slider, opt,
                                             QtWidgets.QStyle.SubControl.SC_SliderGroove, self)
        handle = self.style().subControlRect(QtWidgets.QStyle.ComplexControl.CC_Slider, opt,
                                             QtWidgets.QStyle.SubControl.SC_SliderHandle, self)
        x0 = groove.left() + handle.width() / 2
        x1 = groove.right() - handle.width() / 2
        span = max(self.maximum() - self.minimum(), 1)
        return x0 + (np.asarray(index, float) - self.minimum()) / span * (x1 - x0)

    def paintEvent(self, ev) -> None:
        super().paintEvent(ev)
        p = QtGui.QPainter(self)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        h = self.height()
        if self.loop_range is not None:
            a, b = self._x_of(self.loop_range)
            p.fillRect(QtCore.QRectF(a, h - 7, max(b - a, 2), 5), colour("blue"))
        if self.marks:
            xs = self._x_of([m.index for m in self.marks])
            for x, m in zip(xs, self.marks):  # a handful of marks: drawn one by one
                p.setPen(QtGui.QPen(colour(MARK_ROLES.get(m.kind, "white")), 3))
                p.drawLine(QtCore.QPointF(x, 2), QtCore.QPointF(x, 12))
        p.end()
