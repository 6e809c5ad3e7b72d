"""Creating the Qt application and opening the windows."""

from __future__ import annotations

import os
import sys

from guidance.errors import GuidanceError


def check_display() -> None:
    """Fail with one clear line, rather than a Qt abort, when there is no screen to show on."""
    if sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM") \
            and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise GuidanceError("no display found (DISPLAY / WAYLAND_DISPLAY unset); "
                            "run on a desktop, or set QT_QPA_PLATFORM=offscreen for a headless run")


def check_qt() -> None:
    """Refuse a Qt binding known to crash here, with the fix, rather than crash mid-procedure.

    PySide6 6.12.0 on CPython < 3.12 drops a reference to None on every call
    of a method returning nothing (measured: ``sys.getrefcount(None)`` falls by
    one per ``QLabel.setText``); None's count reaches zero within minutes and
    the interpreter aborts. 6.11.3 is fine.
    """
    import PySide6

    if PySide6.__version__.startswith("6.12.0") and sys.version_info < (3, 12):
        raise GuidanceError(f"PySide6 {PySide6.__version__} crashes on Python {sys.version_info.major}."
                            f"{sys.version_info.minor} (reference-count bug); install PySide6-Essentials==6.11.3")


def ensure_app():
    """The running QApplication, created (with our names and a dark style) if needed."""
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance()
    if app is None:
        check_qt()
        check_display()
        app = QtWidgets.QApplication(sys.argv[:1])
        app.setOrganizationName("KneeGuidance")
        app.setApplicationName("guidance-ui")
        apply_style(app)
    return app


def apply_style(app) -> None:
    """Dark Fusion style: the image stays the brightest thing on screen in a dimmed room."""
    from PySide6 import QtGui

    app.setStyle("Fusion")
    pal = QtGui.QPalette()
    for role, colour in ((QtGui.QPalette.ColorRole.Window, "#1b1b1b"), (QtGui.QPalette.ColorRole.WindowText, "#e0e0e0"),
                         (QtGui.QPalette.ColorRole.Base, "#121212"), (QtGui.QPalette.ColorRole.Text, "#e0e0e0"),
                         (QtGui.QPalette.ColorRole.Button, "#2a2a2a"), (QtGui.QPalette.ColorRole.ButtonText, "#e0e0e0"),
                         (QtGui.QPalette.ColorRole.Highlight, "#0072b2"), (QtGui.QPalette.ColorRole.ToolTipBase, "#2a2a2a"),
                         (QtGui.QPalette.ColorRole.ToolTipText, "#e0e0e0")):
        pal.setColor(role, QtGui.QColor(colour))
    app.setPalette(pal)


def run_live(spec: str, *, source_options: dict | None = None, detector: str | None = None,
             spacing_mm=None, quit_after_s: float | None = None) -> int:
    """Open the live view on ``spec`` and run until the window closes."""
    from PySide6 import QtCore

    from guidance.sources import open_source

    from .live_view import LiveWindow

    open_source(spec, realtime=True, **(source_options or {}))  # a bad spec: one line, exit 2
    app = ensure_app()
    win = LiveWindow(source_options=source_options, detector=detector)
    if spacing_mm is not None:
        win.remember_spacing(spec, spacing_mm)
    win.show()
    if not win.start(spec):
        win.close()
        return 2
    if quit_after_s is not None:
        QtCore.QTimer.singleShot(int(quit_after_s * 1000), win.close)
    return int(app.exec() or 0)


def run_player(path: str | None, *, detector: str | None = None, quit_after_s: float | None = None) -> int:
    from PySide6 import QtCore

    from .player import PlayerWindow

    app = ensure_app()
    win = PlayerWindow(detector=detector)
    if path:
        win.open(path)  # raises GuidanceError for a bad file, before the loop starts
    win.show()
    if quit_after_s is not None:
        QtCore.QTimer.singleShot(int(quit_after_s * 1000), win.close)
    return int(app.exec() or 0)
