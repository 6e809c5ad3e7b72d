"""A stand-in PLUS server for the OpenIGTLink tests: real pyigtl on loopback, not our own sender."""

from __future__ import annotations

import signal
import socket
import threading
import time

import numpy as np
import pyigtl
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def restore_signals():
    """pyigtl's server installs its own SIGINT/SIGTERM handlers: put ours back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def pattern(seed: int, h=48, w=64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 3 + y * 5 + seed * 17) % 256).astype(np.uint8)


class ImageServer:
    """A real pyigtl server that keeps sending one IMAGE at 30 Hz to whoever connects, as PLUS does."""

    def __init__(self, port: int, seed: int = 0, spacing=(0.2, 0.3), device="Image_Reference", shape=(48, 64)):
        self.server = pyigtl.OpenIGTLinkServer(port=port, local_server=True)
        self.image = pattern(seed, *shape)
        self.matrix = np.diag([spacing[0], spacing[1], 1.0, 1.0])
        self.device = device
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            if self.server.is_connected():
                msg = pyigtl.ImageMessage(self.image[np.newaxis], ijk_to_world_matrix=self.matrix,
                                          device_name=self.device)
                self.server.send_message(msg, wait=False)
            time.sleep(1 / 30)

    def stop(self):
        self._stop.set()
        self._thread.join(2)
        self.server.stop()
