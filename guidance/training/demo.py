"""Write the demo report of a scripted insertion (two redirections, one tip-lost episode).

``python -m guidance.training.demo OUT.html``: the page behind docs/report_screenshot.png.
"""

from __future__ import annotations

import sys

from .report import build_report, write_report
from .scripted import Script, scripted_insertion
from .session import Session


def demo_session() -> Session:
    s = scripted_insertion(Script(lost_s=(3.0, 3.6), noise_px=0.5))
    meta = {**s.metadata, "source_kind": "scripted", "detector": "scripted truth"}
    return Session(s.records, s.events, meta, s.image, "demo-scripted")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else "report.html"
    write_report(out, build_report(demo_session(), trainee="T-demo"))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
