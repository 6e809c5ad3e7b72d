"""PLUS toolkit sequence files: read, write, replay.

Reads ``.igs.mha`` / ``.mha`` / ``.mhd`` (MetaImage, raw or zlib) and
``.seq.nrrd`` / ``.nrrd`` (pynrrd) with PLUS's per-frame fields
(``Seq_FrameNNNN_Timestamp``, ``_ImageStatus``, ``_<A>To<B>Transform`` and
``_<A>To<B>TransformStatus``, custom fields); writes both so that PLUS and
3D Slicer's Sequences module open them.

Orientation
-----------
PLUS names the image orientation by the transducer axes along +x and +y
(``UltrasoundImageOrientation``): M(arked)/U(nmarked) then F(ar)/N(ear).
PLUS always works in **MF** internally: +x points toward the transducer's
marked side (the marker is on the *right* of the image) and +y away from the
transducer (depth grows downward). On read we flip to MF (UF: left-right,
MN: up-down, UN: both), as PLUS does, so pixel coordinates and transforms of
a file mean what they mean in PLUS and Slicer. Files we write are MF.

Spacing
-------
PLUS keeps the real pixel spacing in its configuration file and writes
``ElementSpacing = 1 1 1`` as a placeholder; a spacing of exactly 1 x 1 mm is
therefore taken as unknown (pass ``spacing_mm`` to the source to set it).
Any other ``ElementSpacing`` (MetaImage) or ``space directions`` (NRRD) is
used, in mm per pixel.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..types import Spacing
from ..sources.base import SourceBase, to_gray_u8
from .metaimage import MetaPixels, read_header, write_metaimage
from .seqfields import (FrameFields, check_field_name, format_frame_fields, parse_frame_fields,
                        split_frame_fields)

__all__ = ["PlusSequence", "read_sequence", "write_sequence", "PlusSequenceSource",
           "export_recording_to_plus", "ORIENTATION_FLIPS", "NEEDLE_TRANSFORM"]

NEEDLE_TRANSFORM = "NeedleTipToImage"

ORIENTATION_FLIPS = {"MF": (False, False), "UF": (True, False), "MN": (False, True), "UN": (True, True)}
"""(flip left-right, flip up-down) that brings each 2-D B-mode orientation to MF."""


def parse_orientation(text: str | None, where: str) -> str:
    """The 2-D part of a PLUS orientation (``MF``, ``UFA`` -> ``UF``); MF when absent."""
    o = (text or "MF").strip().upper()
    if o in ("", "??", "XX"):
        return "MF"
    if len(o) in (2, 3) and o[:2] in ORIENTATION_FLIPS and (len(o) == 2 or o[2] in "AD"):
        return o[:2]
    raise InputError(f"{where}: UltrasoundImageOrientation {text!r} is not a B-mode orientation "
                     "(MF, MN, UF, UN; RF-mode data is not supported)")


@dataclass
class PlusSequence:
    """A PLUS sequence file, opened; pixels are read frame by frame on demand.

    ``frame(i)`` returns frame ``i`` turned to MF orientation (see the module
    notes) in the stored element type, shape (H, W) or (H, W, C).
    ``fields[i]`` are its parsed per-frame fields.
    """

    path: Path
    width_px: int
    height_px: int
    orientation: str
    """Orientation as stored in the file (frames are returned in MF)."""
    spacing_mm: Spacing | None
    fields: list[FrameFields]
    header: dict[str, str]
    image_type: str = "BRIGHTNESS"
    _pixels: Any = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.fields)

    def frame(self, index: int, *, reorient: bool = True) -> np.ndarray:
        img = self._pixels(index)
        if not img.dtype.isnative:  # big-endian files: native order for everything downstream
            img = img.astype(img.dtype.newbyteorder("="))
        if reorient:
            flip_lr, flip_ud = ORIENTATION_FLIPS[self.orientation]
            if flip_lr:
                img = img[:, ::-1]
            if flip_ud:
                img = img[::-1]
        return np.ascontiguousarray(img)

    @property
    def timestamps_s(self) -> np.ndarray:
        """Per-frame timestamps in seconds (NaN where a frame has none)."""
        return np.array([f.timestamp_s if f.timestamp_s is not None else np.nan for f in self.fields])

    @property
    def transform_names(self) -> list[str]:
        names: dict[str, None] = {}
        for f in self.fields:
            names.update(dict.fromkeys(f.transforms))
        return list(names)

    def transforms(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(matrices (N, 4, 4), valid (N,) bool)`` of one transform over all frames."""
        mats = np.tile(np.eye(4), (len(self), 1, 1))
        ok = np.zeros(len(self), dtype=bool)
        for i, f in enumerate(self.fields):
            if name in f.transforms:
                mats[i] = f.transforms[name]
                ok[i] = f.transform_ok.get(name, True)
        return mats, ok

    def close(self) -> None:
        closer = getattr(self._pixels, "__self__", None)
        if closer is not None and hasattr(closer, "close"):
            closer.close()

    def __enter__(self) -> "PlusSequence":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _spacing_from(values: Sequence[float], where: str) -> Spacing | None:
    if len(values) < 2:
        return None
    sx, sy = float(values[0]), float(values[1])
    if not (math.isfinite(sx) and math.isfinite(sy)) or sx <= 0 or sy <= 0:
        raise InputError(f"{where}: pixel spacing {sx:g} x {sy:g} mm is not positive")
    if sx == 1.0 and sy == 1.0:  # PLUS's placeholder: the real spacing lives in its config file
        return None
    return (sx, sy)


def _frame_records(per_frame: dict[int, dict[str, str]], count: int, where: str) -> list[FrameFields]:
    if per_frame and max(per_frame) >= count:
        raise InputError(f"{where}: per-frame fields name frame {max(per_frame)} but the file holds {count} frames")
    return [parse_frame_fields(per_frame.get(i, {}), f"{where} frame {i}") for i in range(count)]


def read_sequence(path: str | Path) -> PlusSequence:
    """Open a PLUS sequence file (``.mha``, ``.mhd``, ``.nrrd``) and parse its fields.

    Raises :class:`InputError` naming the file when it is not a readable
    sequence (truncated, corrupt, unsupported type or orientation).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() == ".nrrd":
        return _read_nrrd(path)
    if path.suffix.lower() in (".mha", ".mhd"):
        return _read_mha(path)
    raise InputError(f"{path}: not a PLUS sequence file (expected .mha, .mhd or .nrrd)")


def _read_mha(path: Path) -> PlusSequence:
    header = read_header(path)
    plain, per_frame = split_frame_fields(header.fields)
    where = str(path)
    orientation = parse_orientation(plain.get("UltrasoundImageOrientation"), where)
    spacing = None
    if "ElementSpacing" in plain:
        try:
            spacing = _spacing_from([float(v) for v in plain["ElementSpacing"].split()], where)
        except ValueError:
            raise InputError(f"{where}: ElementSpacing {plain['ElementSpacing'][:40]!r} is not numbers") from None
    fields = _frame_records(per_frame, header.frames, where)
    pixels = MetaPixels(header)
    return PlusSequence(path, header.width_px, header.height_px, orientation, spacing, fields, plain,
                        plain.get("UltrasoundImageType", "BRIGHTNESS"), pixels.frame)


def _read_nrrd(path: Path) -> PlusSequence:
    import nrrd  # pynrrd

    where = str(path)
    try:
        data, header = nrrd.read(str(path), index_order="F")
    except (nrrd.NRRDError, ValueError, OSError, EOFError, IndexError, KeyError, TypeError) as exc:
        raise InputError(f"{where}: not a readable NRRD file ({_short(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - zlib/gzip/bz2 errors, overflows: the file is bad
        raise InputError(f"{where}: NRRD pixel data is truncated or corrupt ({type(exc).__name__})") from None
    text = {str(k): v if isinstance(v, str) else str(v) for k, v in header.items()}
    plain, per_frame = split_frame_fields(text)
    kinds = [str(k).lower() for k in header.get("kinds", [])] or ["domain"] * data.ndim
    if len(kinds) != data.ndim:
        raise InputError(f"{where}: 'kinds' names {len(kinds)} axes but the data has {data.ndim}")
    # Axis roles: the frame (list/time) axis, domain axes (x, y, maybe a unit z), colour channels.
    frame_axes = [i for i, k in enumerate(kinds) if k in ("list", "time")]
    other = [i for i, k in enumerate(kinds) if k not in ("list", "time") and k != "domain" and k != "space"]
    domain = [i for i, k in enumerate(kinds) if k in ("domain", "space")]
    if len(frame_axes) > 1 or len(other) > 1 or len(domain) < 2:
        raise InputError(f"{where}: axes {' '.join(kinds)} are not a 2-D frame sequence")
    arr = data
    if not frame_axes:  # a single image
        arr = arr[..., np.newaxis]
        frame_axes = [arr.ndim - 1]
    order = domain + other + frame_axes  # F order: x, y, (z), (channels), frames
    arr = np.transpose(arr, order)
    extra = arr.shape[2:len(domain)]
    if any(s != 1 for s in extra):
        raise InputError(f"{where}: a volume sequence ({arr.shape[2]} slices per frame) is not 2-D ultrasound")
    arr = arr.reshape(arr.shape[:2] + arr.shape[len(domain):])  # drop unit z
    # to C order (frames, y, x, channels)
    arr = np.moveaxis(arr, -1, 0)
    arr = np.swapaxes(arr, 1, 2)
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    n, h, w = arr.shape[:3]
    spacing = None
    dirs = header.get("space directions")
    if dirs is not None:
        dirs = np.asarray(dirs, dtype=float)
        if dirs.ndim == 2 and dirs.shape[0] == data.ndim:
            norms = [float(np.linalg.norm(dirs[i])) for i in domain[:2]]
            if all(math.isfinite(v) for v in norms):
                spacing = _spacing_from(norms, where)
    elif "spacings" in header:
        sp = np.asarray(header["spacings"], dtype=float)
        vals = [sp[i] for i in domain[:2]]
        if all(math.isfinite(v) for v in vals):
            spacing = _spacing_from(vals, where)
    orient_text = plain.get("ultrasound image orientation", plain.get("UltrasoundImageOrientation"))
    orientation = parse_orientation(orient_text, where)
    fields = _frame_records(per_frame, n, where)
    image_type = plain.get("ultrasound image type", plain.get("UltrasoundImageType", "BRIGHTNESS"))

    def pixels(i: int) -> np.ndarray:
        return arr[i]

    return PlusSequence(path, w, h, orientation, spacing, fields, plain, image_type, pixels)


def _short(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0][:160]


# --- writing ----------------------------------------------------------------------------------

def _normalise_transforms(transforms: Mapping[str, Any] | None, n: int) -> dict[str, list[np.ndarray | None]]:
    out: dict[str, list[np.ndarray | None]] = {}
    for name, values in (transforms or {}).items():
        base = name[: -len("Transform")] if name.endswith("Transform") else name
        check_field_name(base)
        seq = list(values)
        if len(seq) != n:
            raise InputError(f"transform {name!r}: {len(seq)} matrices for {n} frames")
        mats: list[np.ndarray | None] = []
        for m in seq:
            if m is None:
                mats.append(None)
                continue
            m = np.asarray(m, dtype=float)
            if m.shape != (4, 4) or not np.isfinite(m).all():
                raise InputError(f"transform {name!r}: expected finite 4x4 matrices, got shape {m.shape}")
            mats.append(m)
        out[base] = mats
    return out


def _normalise_custom(custom_fields, n: int) -> list[dict[str, str]]:
    if custom_fields is None:
        return [{} for _ in range(n)]
    if isinstance(custom_fields, Mapping):
        per = [{} for _ in range(n)]
        for name, values in custom_fields.items():
            check_field_name(name)
            values = list(values)
            if len(values) != n:
                raise InputError(f"custom field {name!r}: {len(values)} values for {n} frames")
            for i, v in enumerate(values):
                if v is not None:
                    per[i][name] = str(v)
        return per
    per = [dict(d or {}) for d in custom_fields]
    if len(per) != n:
        raise InputError(f"custom fields: {len(per)} frames of fields for {n} frames")
    for d in per:
        for name in d:
            check_field_name(name)
    return per


def write_sequence(path: str | Path, frames, transforms: Mapping[str, Any] | None = None,
                   custom_fields=None, *, timestamps_s: Sequence[float] | None = None,
                   spacing_mm: Spacing | None = None, image_ok: Sequence[bool] | None = None,
                   compress: bool = True) -> Path:
    """Write frames and their per-frame fields as a PLUS sequence file.

    Parameters
    ----------
    path : str or Path
        ``.seq.nrrd`` / ``.nrrd`` (Slicer volume sequence with PLUS frame
        fields), ``.mha`` (pixels in the file) or ``.mhd`` (pixels beside it).
    frames : array (N, H, W) or (N, H, W, C), or a sequence of (H, W) arrays
        Pixels in MF orientation (see the module notes), any integer or float type.
    transforms : {name: sequence of 4x4 arrays or None}, optional
        E.g. ``{"NeedleTipToImage": [...]}``; ``None`` marks a frame where the
        transform is invalid (written as identity with status INVALID).
    custom_fields : {name: sequence of values} or sequence of {name: value}, optional
        Written as ``Seq_FrameNNNN_<name>`` text fields.
    timestamps_s : sequence of float, optional
        Per-frame timestamps in seconds; default 0, 1/30, 2/30, ...
    spacing_mm : (sx, sy), optional
        Millimetres per pixel.
    image_ok : sequence of bool, optional
        Per-frame image status (default all OK).
    compress : bool
        zlib (MetaImage) or gzip (NRRD) the pixels.

    Returns the path written.
    """
    path = Path(path)
    arr = np.asarray(frames) if not isinstance(frames, np.ndarray) else frames
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim not in (3, 4) or arr.shape[0] == 0:
        raise InputError(f"{path}: expected frames of shape (N, H, W) or (N, H, W, C) with N >= 1, got {arr.shape}")
    n = arr.shape[0]
    if timestamps_s is None:
        timestamps_s = [i / 30.0 for i in range(n)]
    ts = [float(t) for t in timestamps_s]
    if len(ts) != n or not all(math.isfinite(t) for t in ts):
        raise InputError(f"{path}: need {n} finite timestamps, got {len(ts)}")
    oks = [True] * n if image_ok is None else [bool(v) for v in image_ok]
    if len(oks) != n:
        raise InputError(f"{path}: need {n} image statuses, got {len(oks)}")
    mats = _normalise_transforms(transforms, n)
    custom = _normalise_custom(custom_fields, n)
    records = []
    for i in range(n):
        rec = FrameFields(timestamp_s=ts[i], image_ok=oks[i], custom=custom[i])
        for name, seq in mats.items():
            rec.transforms[name] = np.eye(4) if seq[i] is None else seq[i]
            rec.transform_ok[name] = seq[i] is not None
        records.append(rec)
    low = path.name.lower()
    # PLUS's NRRD reader looks for "Status", its MetaImage reader for "ImageStatus": NRRD gets both
    status_names = ("ImageStatus", "Status") if low.endswith(".nrrd") else ("ImageStatus",)
    items = [kv for i, rec in enumerate(records) for kv in format_frame_fields(i, rec, status_names)]
    if low.endswith(".nrrd"):
        _write_nrrd(path, arr, ts, spacing_mm, items, compress)
    elif low.endswith((".mha", ".mhd")):
        head = [("UltrasoundImageOrientation", "MF"), ("UltrasoundImageType", "BRIGHTNESS")] + items
        write_metaimage(path, arr, head, spacing_mm=spacing_mm, compress=compress)
    else:
        raise InputError(f"{path}: unknown sequence file type (use .seq.nrrd, .nrrd, .mha or .mhd)")
    return path


def _write_nrrd(path: Path, arr: np.ndarray, ts: list[float], spacing_mm: Spacing | None,
                items: list[tuple[str, str]], compress: bool) -> None:
    """Slicer's volume-sequence layout: axes x, y, z(=1), frames (``kinds: domain domain domain list``).

    This is the layout 3D Slicer writes (list axis last, ``axis 3 index
    values`` holding the timestamps) and the frame-after-frame order PLUS
    reads; colour frames get a leading ``vector`` axis.
    """
    import nrrd  # pynrrd

    sx, sy = spacing_mm if spacing_mm is not None else (1.0, 1.0)
    n, h, w = arr.shape[:3]
    colour = arr.ndim == 4
    data = arr.reshape(n, 1, h, w, *arr.shape[3:])  # C order (frames, z, y, x, c) = NRRD axes (c,) x, y, z, frames
    dirs = [[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0], [np.nan] * 3]
    kinds = ["domain", "domain", "domain", "list"]
    labels = ["", "", "", "time"]
    units = ["", "", "", "s"]
    if colour:
        dirs = [[np.nan] * 3] + dirs
        kinds = ["vector"] + kinds
        labels = [""] + labels
        units = [""] + units
    header: dict[str, Any] = {
        "space": "left-posterior-superior",
        "space directions": np.array(dirs, dtype=float),
        "kinds": kinds, "labels": labels, "units": units,
        "space origin": np.zeros(3),
        "encoding": "gzip" if compress else "raw",
        "endian": "little",
        "DataNodeClassName": "vtkMRMLVectorVolumeNode" if colour else "vtkMRMLScalarVolumeNode",
        f"axis {4 if colour else 3} index type": "numeric",
        f"axis {4 if colour else 3} index values": " ".join(f"{t:.6f}" for t in ts),
        "ultrasound image orientation": "MF",
        "ultrasound image type": "BRIGHTNESS",
    }
    header.update(items)
    tmp = path.with_name(path.name + ".part")
    try:
        nrrd.write(str(tmp), np.ascontiguousarray(data), header, index_order="C", compression_level=6)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None


# --- replay -----------------------------------------------------------------------------------

class PlusSequenceSource(SourceBase):
    """Replays a PLUS sequence file frame by frame.

    Timestamps come from ``Seq_FrameNNNN_Timestamp`` (seconds; frames without
    one are numbered at 30 fps), spacing from the file (see the module notes)
    unless ``spacing_mm`` is given. Frames whose ``ImageStatus`` is not OK are
    skipped (``skip_invalid=True``, the default) or passed on as blank frames
    so that frame numbers stay aligned (``skip_invalid=False``); either way
    they are counted in ``invalid_frames``.

    Parameters
    ----------
    spec : str
        Path of the file.
    spacing_mm : float or (float, float), optional
        Override the file's pixel spacing.
    realtime : bool
        Pace frames at their timestamps (``is_live`` is then True).
    loop : bool
        Start again after the last frame (timestamps keep increasing).
    reorient : bool
        Turn frames to MF orientation (default); False keeps pixels as stored.
    """

    def __init__(self, spec, *, spacing_mm=None, realtime: bool = False, speed: float = 1.0,
                 loop: bool = False, skip_invalid: bool = True, reorient: bool = True, **_ignored) -> None:
        super().__init__()
        from ..sources.opencv import _Pacer, as_spacing

        self.path = Path(str(spec))
        self.name = str(spec)
        self._override = as_spacing(spacing_mm, self.name)
        self.realtime = bool(realtime)
        self.is_live = self.realtime
        self.loop = bool(loop)
        self.skip_invalid = bool(skip_invalid)
        self.reorient = bool(reorient)
        self._pacer = _Pacer(speed)
        self._seq_file: PlusSequence | None = None
        self._i = 0
        self._offset_s = 0.0
        self.invalid_frames = 0

    @property
    def sequence(self) -> PlusSequence:
        if self._seq_file is None:
            self.open()
        return self._seq_file

    def open(self) -> None:
        if self._seq_file is not None:
            return
        seq = read_sequence(self.path)
        self._seq_file = seq
        self.spacing_mm = self._override or seq.spacing_mm
        ts = seq.timestamps_s
        good = ts[np.isfinite(ts)]
        dt = np.diff(good)
        self._fps = float(1.0 / np.median(dt)) if dt.size and np.median(dt) > 0 else None
        self._i = 0

    def close(self) -> None:
        if self._seq_file is not None:
            self._seq_file.close()
            self._seq_file = None

    @property
    def nominal_fps(self) -> float | None:
        return getattr(self, "_fps", None)

    @property
    def frame_size_px(self) -> tuple[int, int] | None:
        s = self._seq_file
        return (s.width_px, s.height_px) if s is not None else None

    def __len__(self) -> int:
        return len(self.sequence)

    def _timestamp(self, i: int) -> float:
        t = self._seq_file.fields[i].timestamp_s
        return t if t is not None else i / (self._fps or 30.0)

    def read(self):
        seq = self.sequence
        while True:
            if self._i >= len(seq):
                if not self.loop or len(seq) == 0:
                    return None
                last = self._timestamp(len(seq) - 1) - self._timestamp(0)
                self._offset_s += last + 1.0 / (self._fps or 30.0)
                self._i = 0
            i = self._i
            self._i += 1
            rec = seq.fields[i]
            if rec.image_ok:
                image = seq.frame(i, reorient=self.reorient)
                break
            self.invalid_frames += 1
            if not self.skip_invalid:
                image = np.zeros((seq.height_px, seq.width_px), np.uint8)
                break
        t = self._offset_s + self._timestamp(i)
        if self.realtime:
            self._pacer.wait(t)
        return self.make_frame(_grey(image, self.name), t, i)


def _grey(image: np.ndarray, where: str) -> np.ndarray:
    """PLUS stores colour as RGB; our converter expects BGR."""
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = np.ascontiguousarray(image[..., [2, 1, 0]])
    return to_gray_u8(image, where)


# --- export of our recordings (guidance.io.plus_export) ----------------------------------------

def export_recording_to_plus(reader, out_path: str | Path, *, compress: bool = True) -> Path:
    """Write one of our recordings as a PLUS sequence (see :mod:`guidance.io.plus_export`)."""
    from .plus_export import export_recording_to_plus as export

    return export(reader, out_path, compress=compress)


def describe(seq: PlusSequence) -> dict[str, Any]:
    """A summary of a sequence for ``guidance plus-info``."""
    ts = seq.timestamps_s
    good = ts[np.isfinite(ts)]
    return {
        "file": str(seq.path), "frames": len(seq), "size_px": [seq.width_px, seq.height_px],
        "orientation": seq.orientation, "image_type": seq.image_type,
        "spacing_mm": list(seq.spacing_mm) if seq.spacing_mm else None,
        "t_first_s": float(good[0]) if good.size else None,
        "t_last_s": float(good[-1]) if good.size else None,
        "fps": float((len(good) - 1) / (good[-1] - good[0])) if good.size > 1 and good[-1] > good[0] else None,
        "invalid_frames": int(sum(not f.image_ok for f in seq.fields)),
        "transforms": {name: int(seq.transforms(name)[1].sum()) for name in seq.transform_names},
        "custom_fields": sorted({k for f in seq.fields for k in f.custom}),
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2)
