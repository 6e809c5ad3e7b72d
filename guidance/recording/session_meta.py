"""Session metadata a recording starts with: which model made the guidance, from which source."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str | None:
    """Hex SHA-256 of a file, or None if it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def describe_stages(stages) -> dict:
    """``stages``, the detector's name, and the model file with its SHA-256 (when a model is used).

    A detector made of several model files (a second opinion) gives their names
    joined by "+" and one SHA-256 over their hashes in order. Replaying with the
    same model (same hash) reproduces the recorded detections.
    """
    names = [str(getattr(s, "name", type(s).__name__)) for s in stages]
    out: dict = {"stages": names, "detector": None, "model_file": None, "model_sha256": None}
    for s in stages:
        detector = getattr(s, "detector", None)
        if detector is None:
            continue
        out["detector"] = str(getattr(detector, "name", type(detector).__name__))
        paths = [Path(p) for p in getattr(detector, "paths", None) or [getattr(detector, "path", None)] if p]
        hashes = [file_sha256(p) if p.is_file() else None for p in paths]
        if paths and None not in hashes:
            out["model_file"] = "+".join(p.name for p in paths)
            out["model_sha256"] = hashes[0] if len(hashes) == 1 else \
                hashlib.sha256("".join(hashes).encode()).hexdigest()
    return out
