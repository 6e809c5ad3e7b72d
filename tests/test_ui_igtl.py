"""The live view on an OpenIGTLink stream from a real pyigtl server on loopback: images arrive
with the sender's spacing, and when the server goes away the no-signal banner says so."""

from __future__ import annotations


import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyigtl")
pytest.importorskip("guidance.io.igtl")

from igtl_server import ImageServer, free_port, restore_signals  # noqa: E402,F401 - a fixture
from ui.live_view import LiveWindow  # noqa: E402
from ui.settings import Settings, ini_settings  # noqa: E402


def test_live_view_on_openigtlink_and_the_cable_pulled(qtbot, tmp_path, restore_signals):
    port = free_port()
    server = ImageServer(port, shape=(120, 160))
    win = LiveWindow(Settings(ini_settings(tmp_path / "s.ini")))
    qtbot.addWidget(win)
    win.show()
    try:
        assert win.start(f"igtl://127.0.0.1:{port}")
        assert win.source_kind.currentData() == "igtl"
        qtbot.waitUntil(lambda: win.view.paint_count >= 5, timeout=20000)
        assert win.result.frame.spacing_mm == pytest.approx((0.2, 0.3))
        assert np.array_equal(win.view.image_item.image, server.image)
        server.stop()
        qtbot.waitUntil(lambda: win.strip.kind == "no_signal", timeout=15000)
        assert "NO SIGNAL" in win.strip.text()
        assert not win.view.overlay.shown
    finally:
        server.stop()
        win.close()
    assert win.worker is None
