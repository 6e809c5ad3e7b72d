"""Shared fixtures. Qt runs offscreen; real data from ../shared is optional."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the project, or skip with the reason."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (see ../shared/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


# --- replayed sample sequences (recording task) -----------------------------------------------
REPLAY_DATA = REPO / "replay_data"


@pytest.fixture
def replay_sequence():
    """Factory giving a test a sample sequence from ``replay_data/``.

    ``seq = replay_sequence("insertion")`` returns a
    :class:`guidance.recording.samples.ReplaySample`: ``seq.source()`` (a fresh
    frame source, from ``NAME.usrec`` when present else the PNG frames at
    ``meta.json``'s fps and spacing), ``seq.frames()``, ``seq.truth`` (contract
    lines), ``seq.meta``, ``seq.spacing_mm``, ``seq.to_recording(path)``.
    Skips the test when the sample is absent.
    """
    from guidance.recording.samples import load_sample, sample_names

    def get(name: str = "insertion"):
        if name not in sample_names(REPLAY_DATA):
            pytest.skip(f"sample {name!r} not found in {REPLAY_DATA}")
        return load_sample(REPLAY_DATA, name)

    return get
