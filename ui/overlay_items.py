"""Guidance drawn as scene items over the image (never burnt into its pixels).

Every item lives in the image's coordinates: frame pixels, x right, y down,
the centre of the top-left pixel at (0, 0) (see :class:`ui.image_view.ImageView`).
Items are created once and only their data changes per frame; each line has a
black halo underneath so it reads on bright and dark tissue alike.
"""

from __future__ import annotations

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from guidance.types import FrameResult

from .palette import colour, halo_pen, pen

# Layers the user can toggle (the names of guidance.overlay.ALL_LAYERS, where they overlap).
LAYERS: dict[str, str] = {
    "needle": "Needle and tip",
    "path": "Projected path",
    "cone": "Uncertainty cone",
    "target": "Target surface",
    "bone": "Bone and cartilage band",
    "intercept": "Intercept point",
    "target_point": "Picked target",
    "region": "Imaging region",
    "text": "Readouts",
    "alerts": "Alerts",
}
DEFAULT_OFF = frozenset({"region"})


def simplify(pts_px: np.ndarray, tolerance_px: float = 0.4) -> np.ndarray:
    """Drop points that change the drawn line by less than ``tolerance_px`` (Douglas-Peucker).

    A detected surface has a point every pixel or two; drawing a few dozen
    instead of hundreds keeps the paint cheap with no visible change.
    """
    if len(pts_px) < 8:
        return pts_px
    out = cv2.approxPolyDP(np.ascontiguousarray(pts_px, dtype=np.float32).reshape(-1, 1, 2), tolerance_px, False)
    return out.reshape(-1, 2).astype(float)


def _path_item(pen_: QtGui.QPen, z: float, brush: QtGui.QBrush | None = None) -> QtWidgets.QGraphicsPathItem:
    item = QtWidgets.QGraphicsPathItem()
    item.setPen(pen_)
    item.setBrush(brush if brush is not None else QtGui.QBrush(QtCore.Qt.BrushStyle.NoBrush))
    item.setZValue(z)
    return item


def band_path(surface_px: np.ndarray, bone_px: np.ndarray, *, max_thickness_px: float,
              step_px: float = 2.0) -> QtGui.QPainterPath | None:
    """The cartilage band: filled between the surface and the bone, only where they form one.

    Both lines are sampled on a common x grid; the band is drawn over the runs
    where the bone lies below the surface by less than ``max_thickness_px``, so
    a stray detection (a bone line jumping up to the skin) never floods the
    image with colour.
    """
    if len(surface_px) < 2 or len(bone_px) < 2:
        return None
    s = surface_px[np.argsort(surface_px[:, 0])]
    b = bone_px[np.argsort(bone_px[:, 0])]
    x0, x1 = max(s[0, 0], b[0, 0]), min(s[-1, 0], b[-1, 0])
    if x1 - x0 < step_px:
        return None
    x = np.arange(x0, x1 + 1e-9, step_px)
    ys = np.interp(x, s[:, 0], s[:, 1])
    yb = np.interp(x, b[:, 0], b[:, 1])
    ok = (yb > ys) & (yb - ys < max_thickness_px)
    # runs of consecutive valid samples: [start, stop) pairs
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(np.int8), [0]])))
    runs = [(a, z) for a, z in edges.reshape(-1, 2) if z - a >= 2]
    if not runs:
        return None
    path = QtGui.QPainterPath()
    for a, z in runs:  # a few runs per frame, each added as one polygon
        ring = np.concatenate([np.column_stack([x[a:z], ys[a:z]]), np.column_stack([x[a:z], yb[a:z]])[::-1]])
        path.addPath(pg.arrayToQPath(ring[:, 0], ring[:, 1], connect="all"))
        path.closeSubpath()
    return path


class HaloCurve:
    """A polyline over a black halo: two plain path items sharing one path.

    Plain ``QGraphicsPathItem``s rather than pyqtgraph curves: the overlay is
    a handful of short lines redrawn every frame, and the plain items paint in
    a fraction of the time.
    """

    def __init__(self, role: str, width: float, z: float, *, dashed: bool = False, dash=(6.0, 4.0),
                 connect: str = "all", alpha: int = 255, halo: bool = True) -> None:
        self.connect = connect
        self.alpha = alpha
        self.halo = _path_item(halo_pen(width, dashed=dashed, dash=dash), z)
        self.core = _path_item(pen(role, width, dashed=dashed, dash=dash, alpha=alpha), z + 0.1)
        self.items = (self.halo, self.core) if halo else (self.core,)
        self._pts = np.zeros((0, 2))

    def set_pen(self, role: str, width: float, *, dashed: bool = False, dash=(6.0, 4.0)) -> None:
        self.halo.setPen(halo_pen(width, dashed=dashed, dash=dash))
        self.core.setPen(pen(role, width, dashed=dashed, dash=dash, alpha=self.alpha))

    def set_points(self, pts_px) -> None:
        """``pts_px`` (N, 2) of (x, y) frame pixels; with ``connect="pairs"`` each two points make a segment."""
        pts = np.asarray(pts_px, dtype=float).reshape(-1, 2)
        self._pts = pts
        path = pg.arrayToQPath(pts[:, 0], pts[:, 1], connect=self.connect)
        for item in self.items:
            item.setPath(path)

    def points(self) -> np.ndarray:
        return self._pts

    def setVisible(self, on: bool) -> None:
        for item in self.items:
            item.setVisible(on)

    def isVisible(self) -> bool:
        return self.core.isVisible()


def _symbol_path(symbol: str, size: float) -> QtGui.QPainterPath:
    path = QtGui.QPainterPath()
    r = size / 2.0
    if symbol == "+":
        path.moveTo(-r, 0)
        path.lineTo(r, 0)
        path.moveTo(0, -r)
        path.lineTo(0, r)
    else:
        path.addEllipse(QtCore.QPointF(0, 0), r, r)
    return path


class Marker:
    """One point drawn as a screen-sized symbol (size in screen pixels, whatever the zoom)."""

    def __init__(self, role: str, z: float, *, symbol: str = "o", size: float = 14.0, width: float = 2.5,
                 filled: bool = False) -> None:
        shape = _symbol_path(symbol, size)
        self.halo = _path_item(halo_pen(width), z, pg.mkBrush(0, 0, 0, 160) if filled else None)
        self.core = _path_item(pen(role, width), z + 0.1, pg.mkBrush(colour(role)) if filled else None)
        self.items = (self.halo, self.core)
        for item in self.items:
            item.setPath(shape)
            # The symbol keeps its screen size; only its position follows the image.
            item.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self._pos: tuple[float, float] | None = None

    def set_pos(self, xy_px) -> None:
        self._pos = (float(xy_px[0]), float(xy_px[1]))
        for item in self.items:
            item.setPos(*self._pos)

    def pos(self) -> tuple[float, float] | None:
        return self._pos

    def setVisible(self, on: bool) -> None:
        for item in self.items:
            item.setVisible(on)

    def isVisible(self) -> bool:
        return self.core.isVisible()


class GuidanceOverlay:
    """All guidance items over one image, updated from a :class:`FrameResult`.

    Parameters
    ----------
    view : pyqtgraph.ViewBox
        The view holding the image; items are added to it.
    """

    def __init__(self, view: pg.ViewBox) -> None:
        self.band = QtWidgets.QGraphicsPathItem()
        self.band.setBrush(QtGui.QBrush(colour("surface", 40)))
        self.band.setPen(QtGui.QPen(QtCore.Qt.PenStyle.NoPen))
        self.band.setZValue(5)
        self.bone = HaloCurve("bone", 2.0, 6)
        self.surface = HaloCurve("surface", 2.5, 7)
        self.cone = HaloCurve("cone", 1.5, 8, dashed=True, dash=(3.0, 4.0), connect="pairs")
        self.path = HaloCurve("path", 2.5, 9, dashed=True, dash=(4.0, 3.0))
        # The shaft is drawn thin and see-through, without a halo: the needle's own echo
        # underneath is what the physician trusts, the line only says it was recognised.
        self.needle = HaloCurve("needle", 2.0, 10, alpha=170, halo=False)
        self.tip = Marker("tip", 11, size=20, width=2.5)
        self.intercept = Marker("intercept", 12, size=12, filled=True)
        self.target_point = Marker("target_point", 13, symbol="+", size=22, width=2.0)
        self.region = QtWidgets.QGraphicsRectItem()
        self.region.setPen(pen("region", 1.0))
        self.region.setZValue(4)
        self._layer_items = {
            "needle": [self.needle, self.tip], "path": [self.path], "cone": [self.cone],
            "target": [self.surface], "bone": [self.bone, self.band], "intercept": [self.intercept],
            "target_point": [self.target_point], "region": [self.region],
        }
        for group in self._layer_items.values():
            for el in group:
                for item in getattr(el, "items", (el,)):
                    view.addItem(item)
        self.layers = {name: name not in DEFAULT_OFF for name in LAYERS}
        self.shown = True
        self._has: dict[str, bool] = {}
        self._coasting = None
        self.picked_target_px: tuple[float, float] | None = None
        self.update(None)

    # -- visibility --------------------------------------------------------
    def set_layer(self, name: str, on: bool) -> None:
        self.layers[name] = bool(on)
        self._apply_visibility()

    def set_shown(self, on: bool) -> None:
        """Show or hide all guidance at once (hidden while guidance is stale or there is no signal)."""
        self.shown = bool(on)
        self._apply_visibility()

    def _apply_visibility(self) -> None:
        for layer, group in self._layer_items.items():
            for el in group:
                key = self._key(el)
                el.setVisible(self.shown and self.layers.get(layer, True) and self._has.get(key, False))

    def _key(self, el) -> str:
        return str(id(el))

    def _set_has(self, el, on: bool) -> None:
        self._has[self._key(el)] = bool(on)

    # -- data --------------------------------------------------------------
    def update(self, result: FrameResult | None) -> None:
        """Place every item where ``result`` says; items without data are hidden."""
        for group in self._layer_items.values():
            for el in group:
                self._set_has(el, False)
        if self.picked_target_px is not None:
            self.target_point.set_pos(self.picked_target_px)
            self._set_has(self.target_point, True)
        if result is not None:
            self._update_target(result)
            self._update_needle(result)
            region = result.region
            if region is not None and (region.width_px, region.height_px) != (result.frame.width_px,
                                                                                result.frame.height_px):
                self.region.setRect(region.x_px - 0.5, region.y_px - 0.5, region.width_px, region.height_px)
                self._set_has(self.region, True)
        self._apply_visibility()

    def _update_target(self, result: FrameResult) -> None:
        target = result.target
        if target is None:
            return
        surface_full = np.asarray(target.surface_px, dtype=float).reshape(-1, 2)
        bone_full = np.asarray(target.bone_px, dtype=float).reshape(-1, 2)
        surface, bone = simplify(surface_full), simplify(bone_full)
        if len(surface) >= 2:
            self.surface.set_pen("surface" if target.kind == "cartilage" else "bone", 2.5)
            self.surface.set_points(surface)
            self._set_has(self.surface, True)
        if target.kind == "cartilage" and len(bone) >= 2:
            self.bone.set_points(bone)
            self._set_has(self.bone, True)
            path = band_path(surface_full, bone_full, max_thickness_px=0.12 * result.frame.height_px)
            if path is not None:
                self.band.setPath(path)
                self._set_has(self.band, True)

    def _update_needle(self, result: FrameResult) -> None:
        needle = result.needle
        if needle is None:
            return
        coasting = result.track is not None and result.track.state == "coasting"
        if coasting != self._coasting:  # a coasting (predicted) needle is drawn dashed
            self.needle.set_pen("needle", 2.0, dashed=coasting, dash=(4.0, 2.0))
            self._coasting = coasting
        self.needle.set_points([needle.tail_px, needle.tip_px])
        self.tip.set_pos(needle.tip_px)
        self._set_has(self.needle, True)
        self._set_has(self.tip, True)
        tr = result.trajectory
        if tr is None:
            return
        self.path.set_points([needle.tip_px, tr.intercept_px])
        self.intercept.set_pos(tr.intercept_px)
        self._set_has(self.path, True)
        self._set_has(self.intercept, True)
        if tr.cone_px is not None:
            (a0, a1), (b0, b1) = tr.cone_px
            self.cone.set_points([a0, a1, b0, b1])
            self._set_has(self.cone, True)
        if tr.target_point_px is not None and self.picked_target_px is None:
            self.target_point.set_pos(tr.target_point_px)
            self._set_has(self.target_point, True)

    def visible_items(self) -> dict[str, bool]:
        """Which elements are on screen now (for tests and the snapshot legend)."""
        names = ("band", "bone", "surface", "cone", "path", "needle", "tip", "intercept", "target_point", "region")
        return {n: getattr(self, n).isVisible() for n in names}
