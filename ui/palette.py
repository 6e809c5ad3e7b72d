"""Qt colours and pens for guidance elements, from the core's Okabe-Ito palette.

Colours come from :mod:`guidance.overlay` (``ROLE_COLOURS``) so the live view,
the exported overlays and the player all speak the same colour language.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtCore, QtGui

from guidance.overlay import OKABE_ITO_RGB, ROLE_COLOURS


def colour(role: str, alpha: int = 255) -> QtGui.QColor:
    """The QColor for a guidance role ("needle", "path", "alert", ...) or a palette name."""
    name = ROLE_COLOURS.get(role, role)
    r, g, b = OKABE_ITO_RGB[name]
    return QtGui.QColor(r, g, b, alpha)


def css(role: str) -> str:
    """``rgb(r, g, b)`` for style sheets."""
    c = colour(role)
    return f"rgb({c.red()}, {c.green()}, {c.blue()})"


def pen(role: str, width: float = 2.0, *, dashed: bool = False, dash=(6.0, 4.0), alpha: int = 255) -> QtGui.QPen:
    """A cosmetic pen (width in screen pixels, whatever the zoom)."""
    p = pg.mkPen(colour(role, alpha), width=width)
    p.setCosmetic(True)
    p.setCapStyle(QtCore.Qt.PenCapStyle.FlatCap if dashed else QtCore.Qt.PenCapStyle.RoundCap)
    if dashed:
        p.setDashPattern(list(dash))
    return p


def halo_pen(width: float = 2.0, *, dashed: bool = False, dash=(6.0, 4.0)) -> QtGui.QPen:
    """The black outline drawn under a line so it reads on bright and dark tissue alike."""
    p = pen("halo", width + 2.5, alpha=200)
    if dashed:
        # Dash lengths are in pen widths: scale so the halo's dashes sit under the line's.
        k = width / (width + 2.5)
        p.setDashPattern([dash[0] * k, dash[1] * k])
        p.setCapStyle(QtCore.Qt.PenCapStyle.FlatCap)
    return p
