"""Frame sources: everything that yields ultrasound frames, behind one protocol.

:func:`open_source` turns a user's source spec (as typed after ``--source`` or
given to ``guidance detect``) into a source object, choosing the reader by the
spec's form and file type. Readers are imported lazily so that, say, a user
without pydicom can still grab from a capture card.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

from ..errors import InputError
from .base import FrameSource, SourceBase, to_gray_u8

__all__ = ["FrameSource", "SourceBase", "to_gray_u8", "open_source", "describe_specs"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PLUS_SUFFIXES = (".mha", ".mhd", ".nrrd")
DICOM_SUFFIXES = (".dcm", ".dicom")
RECORDING_SUFFIXES = (".usrec",)

# (module, class) per kind of source; each class takes (spec, **options).
_READERS = {
    "device": ("guidance.sources.opencv", "CaptureSource"),
    "video": ("guidance.sources.opencv", "VideoFileSource"),
    "folder": ("guidance.sources.opencv", "ImageFolderSource"),
    "image": ("guidance.sources.opencv", "ImageFileSource"),
    "sim": ("guidance.sources.synthetic", "SyntheticSource"),
    "plus": ("guidance.io.plus", "PlusSequenceSource"),
    "dicom": ("guidance.io.dicom", "DicomSource"),
    "igtl": ("guidance.io.igtl", "IgtlSource"),
    "recording": ("guidance.recording.replay", "RecordingSource"),
}


def classify_spec(spec: str) -> str:
    """Which kind of source a spec names (see ``describe_specs``)."""
    s = str(spec).strip()
    if not s:  # Path("") is the current folder: an empty argument must not read whatever is there
        raise InputError(f"no input given (an empty name): expected {describe_specs()}")
    low = s.lower()
    if low == "sim" or low.startswith("sim:"):
        return "sim"
    if low.startswith("igtl://"):
        return "igtl"
    if re.fullmatch(r"\d+", s) or re.match(r"^(rtsp|rtmp|http|https|udp|tcp)://", low) or low.startswith("/dev/video"):
        return "device"
    path = Path(s)
    if path.is_dir():
        if (path / "recording.json").exists() or any(path.glob("*.usrec")):
            return "recording"
        if _is_dicom_folder(path):
            return "dicom"
        return "folder"
    if low.endswith(RECORDING_SUFFIXES):
        return "recording"
    if low.endswith(PLUS_SUFFIXES):
        return "plus"
    if low.endswith(DICOM_SUFFIXES):
        return "dicom"
    if low.endswith(VIDEO_SUFFIXES):
        return "video"
    if low.endswith(IMAGE_SUFFIXES):
        return "image"
    if path.is_file() and _looks_like_dicom(path):
        return "dicom"
    if not path.exists():
        raise InputError(f"{s}: no such file, folder or device")
    raise InputError(f"{s}: unknown kind of input (expected one of: {describe_specs()})")


def _is_dicom_folder(path: Path) -> bool:
    """A folder of DICOM files (a single-frame series): no image files, and .dcm files or DICM-marked files."""
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files or any(p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES for p in files):
        return False
    return any(p.suffix.lower() in DICOM_SUFFIXES for p in files) or _looks_like_dicom(files[0])


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
        return len(head) == 132 and head[128:132] == b"DICM"
    except OSError:
        return False


def describe_specs() -> str:
    return ("a capture device index (0, 1, ...) or stream URL, a video file (.mp4 .avi .mkv), "
            "a folder of images, an image file, a PLUS sequence (.mha .mhd .nrrd), a DICOM file, "
            "a recording (.usrec), igtl://HOST:PORT, or 'sim' / 'sim:SEED'")


def open_source(spec: str, **options) -> FrameSource:
    """Create (not yet open) the source named by ``spec``.

    ``options`` are passed to the reader (for example ``spacing_mm``,
    ``loop``, ``realtime``); readers ignore options they do not use.
    Raises :class:`InputError` with a message naming the spec when it cannot
    be used.
    """
    kind = classify_spec(spec)
    if kind not in ("device", "igtl", "sim") and not os.path.exists(spec):
        raise InputError(f"{spec}: no such file or folder")
    module_name, class_name = _READERS[kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # a missing optional dependency
        raise InputError(f"{spec}: cannot read {kind} input here ({exc})") from None
    return getattr(module, class_name)(spec, **options)
