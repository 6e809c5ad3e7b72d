"""Rewrite the stored golden outputs (tests/golden/) from the current pipeline, on purpose.

    python tests/refresh_golden.py            # every sample in replay_data/
    python tests/refresh_golden.py insertion  # just these

Run it when a change of output is intended (a new model, a better detector),
look at ``git diff tests/golden`` and commit it with the change that caused it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from guidance.recording.golden import run_sample, write_golden
from guidance.recording.samples import load_sample, sample_names

REPO = Path(__file__).resolve().parents[1]
REPLAY_DATA = REPO / "replay_data"
GOLDEN = Path(__file__).resolve().parent / "golden"


def main(names: list[str]) -> int:
    names = names or sample_names(REPLAY_DATA)
    for name in names:
        lines, meta = run_sample(load_sample(REPLAY_DATA, name))
        path = write_golden(GOLDEN, name, lines, meta)
        print(f"{path}: {len(lines)} frames ({meta['detector']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
