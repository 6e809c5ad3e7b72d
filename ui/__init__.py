"""The desktop app: the physician's live view and the replay player (PySide6 + pyqtgraph).

``ui`` imports ``guidance``; the core never imports ``ui``. The pipeline runs
on its own threads (:mod:`ui.worker`); the GUI thread only draws the newest
result. Not a cleared medical device.
"""

DISCLAIMER_SHORT = "Not a cleared medical device"
