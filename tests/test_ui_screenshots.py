"""The docs' screenshots of the live view and the player come from this test run.

``GUIDANCE_DOCS_SCREENSHOTS=1 pytest tests/test_ui_screenshots.py`` writes them
into ``docs/`` (to commit); otherwise into a temporary folder, so an ordinary
test run leaves the tree clean.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_live_and_player_screenshots_show_guidance(qapp, tmp_path, capsys):
    from ui.screenshots import main

    out = REPO / "docs" if os.environ.get("GUIDANCE_DOCS_SCREENSHOTS") == "1" else tmp_path
    assert main(["--out", str(out)]) == 0
    live = cv2.imread(str(out / "screenshot_live.png"))
    player = cv2.imread(str(out / "screenshot_player.png"))
    assert live is not None and live.shape[:2] == (760, 1280)
    assert player is not None and player.shape[:2] == (700, 1400)
    # the image is on screen (grey speckle, not an empty view), the path is drawn on it in the
    # guidance orange (Okabe-Ito #E69F00), and the distance to go is written large beside it
    for shot, panel_x in ((live, 990), (player, 1110)):
        grey = (np.ptp(shot, axis=2) < 8) & (shot[..., 0] > 40)
        orange = np.all(np.abs(shot.astype(int) - (0, 159, 230)) < 40, axis=2)
        assert grey[:, :panel_x].sum() > 50_000
        assert orange[:, :panel_x].sum() > 150
        assert orange[:, panel_x:].sum() > 1000
