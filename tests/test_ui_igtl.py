"""The live view on an OpenIGTLink stream from a real pyigtl server on loopback: images arrive
with the sender's spacing, and when the server goes away the no-signal banner says so."""

from __future__ import annotations

import signal
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("PySide6")
pyigtl = pytest.importorskip("pyigtl")
pytest.importorskip("guidance.io.igtl")

from ui.live_view import LiveWindow  # noqa: E402
from ui.settings import Settings, ini_settings  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ImageServer:
    """A pyigtl server sending one IMAGE at 30 Hz to whoever connects, as PLUS does."""

    def __init__(self, port: int, spacing=(0.2, 0.3)):
        self.server = pyigtl.OpenIGTLinkServer(port=port, local_server=True)
        y, x = np.mgrid[0:120, 0:160]
        self.image = ((x * 3 + y * 5) % 256).astype(np.uint8)
        self.matrix = np.diag([spacing[0], spacing[1], 1.0, 1.0])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            if self.server.is_connected():
                msg = pyigtl.ImageMessage(self.image[np.newaxis], ijk_to_world_matrix=self.matrix,
                                          device_name="Image_Reference")
                self.server.send_message(msg, wait=False)
            time.sleep(1 / 30)

    def stop(self):
        self._stop.set()
        self._thread.join(2)
        self.server.stop()


@pytest.fixture
def restore_signals():
    """pyigtl's server installs its own SIGINT/SIGTERM handlers: put ours back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_live_view_on_openigtlink_and_the_cable_pulled(qtbot, tmp_path, restore_signals):
    port = free_port()
    server = ImageServer(port)
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
