"""The worker hands the GUI only the newest result: however many arrive while the GUI is busy,
one wake-up, one draw, the newest frame."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("PySide6")

from guidance.types import Frame, FrameResult  # noqa: E402
from ui.worker import PipelineWorker  # noqa: E402


def _result(i: int) -> FrameResult:
    return FrameResult(Frame(np.zeros((16, 16), np.uint8), i / 30, i, i))


def test_results_coalesce_while_the_gui_is_busy(qtbot):
    worker = PipelineWorker(lambda: None)  # never started: we play the pipeline's thread ourselves
    woken = []
    worker.result_ready.connect(lambda: woken.append(worker.take_latest()))

    def pipeline_thread():
        for i in range(200):
            worker._on_result(_result(i))

    t = threading.Thread(target=pipeline_thread)
    t.start()
    t.join()  # the GUI thread was busy (here: blocked in join) the whole time
    qtbot.waitUntil(lambda: len(woken) >= 1, timeout=3000)
    qtbot.wait(100)
    assert len(woken) == 1  # one wake-up for 200 results, not 200 queued draws
    assert woken[0].frame.index == 199  # and it carries the newest
    assert worker.results_seen == 200
    # the next result wakes the GUI again
    worker._on_result(_result(200))
    qtbot.waitUntil(lambda: len(woken) == 2, timeout=3000)
    assert woken[1].frame.index == 200
    worker.stop()
