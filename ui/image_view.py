"""One ultrasound image with its guidance overlay, in frame-pixel coordinates.

The image item is shifted by half a pixel so that view coordinates equal the
project's frame pixels (centre of the top-left pixel at 0, 0); overlay items
then take result coordinates as they are. Levels are fixed (0-255): never
auto-levels, so brightness means the same from frame to frame.
"""

from __future__ import annotations

import collections
import time

import pyqtgraph as pg
from PySide6 import QtCore, QtGui

from guidance.types import FrameResult

from .overlay_items import GuidanceOverlay

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False, background="k")


class ImageView(pg.GraphicsView):
    """Shows frames with a :class:`GuidanceOverlay`; reports clicks in frame pixels.

    Signals
    -------
    clicked_px(float, float)
        Left click on the image, in frame pixels (x, y).
    painted(float)
        After a repaint that put a new frame on screen: the monotonic time of the paint.
    """

    clicked_px = QtCore.Signal(float, float)
    painted = QtCore.Signal(float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent, background="k")
        self.vb = pg.ViewBox(lockAspect=True, invertY=True, enableMouse=False, enableMenu=False,
                             defaultPadding=0.0)
        self.setCentralItem(self.vb)
        # Smooth lines for the overlay; the image itself is drawn without smoothing (true pixels).
        self.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.image_item.setPos(-0.5, -0.5)
        self.image_item.setZValue(0)
        self.vb.addItem(self.image_item)
        self.overlay = GuidanceOverlay(self.vb)
        self.result: FrameResult | None = None
        self.zoom_to_region = False
        self._size: tuple[int, int] | None = None
        self._shown_rect: tuple[float, float, float, float] | None = None
        self._unpainted_seq: int | None = None
        self.paint_count = 0          # repaints that showed a new frame
        self.last_paint_latency_ms: float | None = None  # frame received -> on screen
        # Recent figures for the status bar and bench/bench_ui.py (GUI thread only).
        self.paint_ms: collections.deque[float] = collections.deque(maxlen=600)
        self.latency_ms: collections.deque[float] = collections.deque(maxlen=600)
        self.scene().sigMouseClicked.connect(self._on_click)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)

    # -- drawing -----------------------------------------------------------
    def show_result(self, result: FrameResult, *, overlay: bool = True) -> None:
        """Put ``result.frame`` on screen with its guidance (or without, when ``overlay`` is False)."""
        img = result.frame.image
        self.image_item.setImage(img, autoLevels=False, levels=(0, 255))
        h, w = img.shape
        self._size = (w, h)
        self.result = result
        self._fit(result)
        self.overlay.update(result)
        self.overlay.set_shown(overlay)
        self._unpainted_seq = result.frame.seq

    def set_zoom_to_region(self, on: bool) -> None:
        """Fill the view with the imaging region (a scanner's screen grab holds more than the image)."""
        self.zoom_to_region = bool(on)
        self._shown_rect = None
        if self.result is not None:
            self._fit(self.result)

    def _fit(self, result: FrameResult) -> None:
        w, h = self._size
        x0, y0, x1, y1 = -0.5, -0.5, w - 0.5, h - 0.5
        r = result.region
        if self.zoom_to_region and r is not None and (r.width_px, r.height_px) != (w, h):
            m = 0.03 * max(r.width_px, r.height_px)
            x0, y0 = max(r.x_px - m, -0.5), max(r.y_px - m, -0.5)
            x1, y1 = min(r.x_px + r.width_px + m, w - 0.5), min(r.y_px + r.height_px + m, h - 0.5)
        rect = (x0, y0, x1, y1)
        # Re-fit only for a real change: a region estimate that wobbles by a pixel must not shake the image.
        if self._shown_rect is None or max(abs(a - b) for a, b in zip(rect, self._shown_rect)) > 8.0:
            self._shown_rect = rect
            self.vb.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0.0)

    def paintEvent(self, ev: QtGui.QPaintEvent) -> None:
        t0 = time.perf_counter()
        super().paintEvent(ev)
        if self._unpainted_seq is not None and self.result is not None:
            now = time.monotonic()
            self._unpainted_seq = None
            self.paint_count += 1
            self.paint_ms.append((time.perf_counter() - t0) * 1000.0)
            if self.result.received_s > 0:
                self.last_paint_latency_ms = (now - self.result.received_s) * 1000.0
                self.latency_ms.append(self.last_paint_latency_ms)
            self.painted.emit(now)

    # -- coordinates -------------------------------------------------------
    def frame_to_widget(self, x_px: float, y_px: float) -> QtCore.QPoint:
        """Widget (viewport) position of a frame pixel: where to click to pick it."""
        scene_pt = self.vb.mapViewToScene(QtCore.QPointF(x_px, y_px))
        return self.mapFromScene(scene_pt)

    def _on_click(self, ev) -> None:
        if ev.button() != QtCore.Qt.MouseButton.LeftButton or self._size is None:
            return
        pt = self.vb.mapSceneToView(ev.scenePos())
        x, y = float(pt.x()), float(pt.y())
        w, h = self._size
        if -0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5:
            ev.accept()
            self.clicked_px.emit(x, y)
