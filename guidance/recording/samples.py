"""Sample sequences in ``replay_data/<name>/`` (frames + truth + meta), for tests and golden outputs.

A sample folder holds ``frames/*.png``, ``truth.jsonl`` (contract lines with
the true values) and ``meta.json`` (spacing, fps, seed, ...); it may instead
be a ``.usrec`` recording of the same frames (``NAME.usrec`` beside, or in,
the folder). :class:`ReplaySample` replays either as a frame source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError


@dataclass
class ReplaySample:
    name: str
    folder: Path
    meta: dict = field(default_factory=dict)
    truth: list[dict] = field(default_factory=list)
    recording: Path | None = None
    """A ``.usrec`` of the same frames, when one exists (replayed instead of the PNG folder)."""

    @property
    def spacing_mm(self) -> tuple[float, float] | None:
        sp = self.meta.get("spacing_mm")
        if sp is None:
            return None
        sp = sp if isinstance(sp, (list, tuple)) else (sp, sp)
        return (float(sp[0]), float(sp[1]))

    @property
    def fps(self) -> float:
        return float(self.meta.get("fps") or 30.0)

    def source(self, **options):
        """A fresh (unopened) frame source over the sample's frames, as fast as possible."""
        from ..sources import open_source

        if self.recording is not None:
            return open_source(str(self.recording), realtime=False, **options)
        from .replay_folder import TimedFolderSource

        return TimedFolderSource(str(self.folder / "frames"), fps=self.fps, spacing_mm=self.spacing_mm, **options)

    def frames(self):
        """Every frame of the sample, in order (opened and closed here)."""
        with self.source() as src:
            while (frame := src.read()) is not None:
                yield frame

    def to_recording(self, out: str | Path) -> Path:
        from .tools import import_to_recording

        import_to_recording(str(self.folder), out)
        return Path(out)


def sample_names(root: str | Path) -> list[str]:
    """Sample folders under ``root`` that have frames and a truth file."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and (p / "truth.jsonl").is_file() and (p / "frames").is_dir())


def load_sample(root: str | Path, name: str) -> ReplaySample:
    folder = Path(root) / name
    if not (folder / "frames").is_dir():
        raise InputError(f"{folder}: not a sample folder (no frames/)")
    meta = {}
    if (folder / "meta.json").is_file():
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{folder / 'meta.json'}: not valid JSON ({exc})") from None
    truth = []
    if (folder / "truth.jsonl").is_file():
        from ..contract import read_jsonl

        truth = list(read_jsonl(folder / "truth.jsonl"))
    rec = next((p for p in (folder / f"{name}.usrec", folder.with_suffix(".usrec")) if p.is_file()), None)
    return ReplaySample(name, folder, meta, truth, rec)
