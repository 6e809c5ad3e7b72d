"""Ultrasound DICOM: cine loops and single-frame series, de-identified on import.

A DICOM file is a patient record. Nothing identifying leaves this module:

- The dataset kept in memory is stripped on load of the patient module (group
  0010), every person name, date, time and instance UID, private tags and a
  list of other identifying attributes (institution, physicians, operators,
  accession number, station, serial number, descriptions, comments).
- What the rest of the system sees is :attr:`DicomSource.metadata`: a
  whitelist of technical facts (modality, maker, model, size, frame timing,
  spacing, ultrasound regions).
- Burnt-in text: when the file describes its ultrasound regions
  (``SequenceOfUltrasoundRegions``) every pixel outside them is set to zero,
  so on-screen patient names and dates are gone from our frames, recordings
  and exports. Without regions nothing can be masked reliably; the metadata
  then says so (``masked_outside_regions: False``) and a warning is logged.
- Error messages name the file and the problem, never a value from it.

Modality policy: ``US`` (and ``IVUS``) are read. Radiology modalities
(CT, MR, PT, NM, CR, DX, MG, XA, RF, ...) are refused with a clear message:
their pixels are not ultrasound and detections on them would be nonsense.
Files without a modality or with a generic one (``OT``, ``SC``, ``XC``, e.g. a
frame grabber's secondary capture) are read with a warning.

Spacing comes from the first 2-D tissue region of ``SequenceOfUltrasoundRegions``
(``PhysicalDeltaX/Y`` are in cm per pixel there: converted to mm), else from
``PixelSpacing`` (mm, row then column), else it is unknown.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..sources.base import SourceBase, to_gray_u8
from ..types import ImagingRegion, Spacing

log = logging.getLogger(__name__)

ULTRASOUND_MODALITIES = {"US", "IVUS"}
GENERIC_MODALITIES = {"", "OT", "SC", "XC"}
PHI_KEYWORDS = {
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "ReferringPhysicianName",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "PerformingPhysicianName",
    "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "OperatorsName", "RequestingPhysician",
    "AccessionNumber", "StudyID", "StationName", "DeviceSerialNumber", "StudyDescription",
    "SeriesDescription", "ImageComments", "AdditionalPatientHistory", "RequestAttributesSequence",
    "ReferencedPatientSequence", "ReferencedStudySequence", "ProtocolName", "PerformedProcedureStepID",
    "PerformedProcedureStepDescription", "ScheduledProcedureStepID", "RequestedProcedureID",
    "OtherPatientIDs", "OtherPatientNames", "OtherPatientIDsSequence", "IssuerOfPatientID",
    "PatientComments", "ContentCreatorName", "StorageMediaFileSetUID", "SourceApplicationEntityTitle",
    "InstanceCreatorUID", "IrradiationEventUID", "DerivationDescription", "Occupation",
}
KEEP_UIDS = {"SOPClassUID", "TransferSyntaxUID", "MediaStorageSOPClassUID", "ReferencedSOPClassUID"}
PHI_VRS = {"PN", "DA", "DT", "TM"}


@contextlib.contextmanager
def quiet_pydicom():
    """Silence pydicom's warnings and log lines while it reads: they quote element values (names!)."""
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name == "pydicom" or name.startswith("pydicom.")] or [logging.getLogger("pydicom")]
    saved = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, was in zip(loggers, saved):
            lg.disabled = was


def strip_phi(ds) -> None:
    """Remove identifying data from a pydicom Dataset, in place (see the module notes)."""
    ds.remove_private_tags()

    def drop(dataset, elem) -> None:
        kw = elem.keyword
        if (elem.tag.group == 0x0010 or elem.VR in PHI_VRS or kw in PHI_KEYWORDS
                or (elem.VR == "UI" and kw not in KEEP_UIDS)):
            del dataset[elem.tag]

    ds.walk(drop)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        for kw in ("MediaStorageSOPInstanceUID", "SourceApplicationEntityTitle", "ImplementationVersionName"):
            if kw in meta:
                delattr(meta, kw)


@dataclass(frozen=True)
class UltrasoundRegion:
    """One entry of ``SequenceOfUltrasoundRegions``, in frame pixels and mm."""

    region: ImagingRegion
    spatial_format: int
    data_type: int
    spacing_mm: Spacing | None


def ultrasound_regions(ds, where: str) -> list[UltrasoundRegion]:
    out = []
    for item in ds.get("SequenceOfUltrasoundRegions", None) or []:
        try:
            x0, y0 = int(item.RegionLocationMinX0), int(item.RegionLocationMinY0)
            x1, y1 = int(item.RegionLocationMaxX1), int(item.RegionLocationMaxY1)
        except (AttributeError, TypeError, ValueError):
            raise InputError(f"{where}: an ultrasound region has no valid bounds") from None
        if x1 < x0 or y1 < y0:
            raise InputError(f"{where}: an ultrasound region has empty bounds")
        spacing = None
        try:
            units = (int(item.get("PhysicalUnitsXDirection", 0)), int(item.get("PhysicalUnitsYDirection", 0)))
            dx, dy = abs(float(item.get("PhysicalDeltaX", 0))), abs(float(item.get("PhysicalDeltaY", 0)))
        except (TypeError, ValueError):
            raise InputError(f"{where}: an ultrasound region has unreadable physical units or deltas") from None
        if units == (3, 3) and dx > 0 and dy > 0 and math.isfinite(dx) and math.isfinite(dy):
            spacing = (dx * 10.0, dy * 10.0)  # cm per pixel in DICOM
        out.append(UltrasoundRegion(ImagingRegion(x0, y0, x1 - x0 + 1, y1 - y0 + 1),
                                    int(item.get("RegionSpatialFormat", 0) or 0),
                                    int(item.get("RegionDataType", 0) or 0), spacing))
    return out


def _main_region(regions: list[UltrasoundRegion]) -> UltrasoundRegion | None:
    """The 2-D region that carries tissue with a spacing; the largest one when there are several."""
    candidates = [r for r in regions if r.spatial_format == 1 and r.spacing_mm is not None]
    tissue = [r for r in candidates if r.data_type == 1] or candidates
    if not tissue:
        return None
    return max(tissue, key=lambda r: r.region.width_px * r.region.height_px)


def _read_dataset(path: Path, stop_before_pixels: bool = False):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with quiet_pydicom():
            return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        raise InputError(f"{path}: not a DICOM file") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    except Exception as exc:  # corrupt element encodings surface as many exception types
        raise InputError(f"{path}: not a readable DICOM file ({type(exc).__name__})") from None


class _DicomFile:
    """One de-identified DICOM file with image pixels: frames decoded on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        ds = _read_dataset(path)
        try:
            with quiet_pydicom():
                strip_phi(ds)  # also parses every element: malformed ones fail here, not later
                self._inspect(ds)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - malformed elements raise many kinds of errors
            raise InputError(f"{path}: malformed DICOM data ({type(exc).__name__})") from None
        self._all: np.ndarray | None = None

    def _inspect(self, ds) -> None:
        import pydicom.pixels

        path = self.path
        where = str(path)
        self.ds = ds
        modality = str(ds.get("Modality", "") or "").strip().upper()
        self.modality = modality
        if modality not in ULTRASOUND_MODALITIES and modality not in GENERIC_MODALITIES:
            raise InputError(f"{where}: modality {modality} is not ultrasound; only ultrasound (US) DICOM is read")
        if "PixelData" not in ds:
            raise InputError(f"{where}: has no pixel data (not an image: a report, a DICOMDIR or a presentation state?)")
        try:
            self.rows, self.cols = int(ds.Rows), int(ds.Columns)
            self.frames = int(ds.get("NumberOfFrames", 1) or 1)
            self.samples = int(ds.get("SamplesPerPixel", 1) or 1)
            self.photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        except (AttributeError, TypeError, ValueError):
            raise InputError(f"{where}: image size attributes (Rows, Columns, NumberOfFrames) are missing or invalid") from None
        if not (8 <= self.rows <= 16384 and 8 <= self.cols <= 16384 and 1 <= self.frames <= 1_000_000):
            raise InputError(f"{where}: implausible image size {self.cols}x{self.rows} with {self.frames} frames")
        tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if tsyntax is None:
            raise InputError(f"{where}: no transfer syntax in the file meta information")
        self.transfer_syntax = str(tsyntax.name)
        if tsyntax.is_compressed:
            try:
                decoder = pydicom.pixels.get_decoder(tsyntax)
            except NotImplementedError:
                raise InputError(f"{where}: unsupported transfer syntax {tsyntax.name} ({tsyntax})") from None
            if not decoder.is_available:
                raise InputError(f"{where}: cannot decode transfer syntax {tsyntax.name} here "
                                 f"(needs one of: {'; '.join(decoder.missing_dependencies) or 'a decoder plugin'})")
        self.regions = ultrasound_regions(ds, where)

    def decode(self, index: int) -> np.ndarray:
        """Frame ``index`` as stored: (H, W) grey or (H, W, 3) RGB."""
        try:
            with quiet_pydicom():
                img = self._decode(index)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data
            raise InputError(f"{self.path}: cannot decode frame {index} ({type(exc).__name__})") from None
        if img.ndim not in (2, 3) or img.shape[:2] != (self.rows, self.cols):
            raise InputError(f"{self.path}: frame {index} decodes to shape {img.shape}, "
                             f"expected {self.rows}x{self.cols}")
        return img

    def _decode(self, index: int) -> np.ndarray:
        import pydicom.pixels

        if self.ds.file_meta.TransferSyntaxUID.is_compressed:
            img = pydicom.pixels.pixel_array(self.ds, index=index)
        else:
            if self._all is None:  # native data: one array over the whole buffer, frames sliced from it
                self._all = self.ds.pixel_array
                if self.frames == 1:
                    self._all = self._all[np.newaxis]
            img = self._all[index]
        if self.photometric == "PALETTE COLOR":
            img = pydicom.pixels.apply_color_lut(img, self.ds)
        elif self.photometric == "MONOCHROME1":  # 0 is white: invert
            img = (np.iinfo(img.dtype).max - img) if img.dtype.kind in "ui" else img.max() - img
        return img


def _frame_interval_s(ds) -> tuple[float | None, list[float] | None]:
    """(seconds between frames, per-frame increments) from the cine module, when given."""
    try:
        ft = float(ds.get("FrameTime", 0) or 0)
        if ft > 0 and math.isfinite(ft):
            return ft / 1000.0, None
        vec = ds.get("FrameTimeVector", None)  # ms since the previous frame, 0 first
        if vec is not None and vec != "":
            values = list(vec) if hasattr(vec, "__len__") and not isinstance(vec, str) else [vec]
            vals = [float(v) / 1000.0 for v in values]
            if all(math.isfinite(v) and v >= 0 for v in vals):
                return None, vals
        for kw in ("CineRate", "RecommendedDisplayFrameRate"):
            rate = float(ds.get(kw, 0) or 0)
            if rate > 0 and math.isfinite(rate):
                return 1.0 / rate, None
    except (TypeError, ValueError):
        pass
    return None, None


def _list_series(folder: Path) -> list[Path]:
    """DICOM image files of a folder, in InstanceNumber order (then by name)."""
    keyed = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith(".") or p.name.upper() == "DICOMDIR":
            continue
        try:
            ds = _read_dataset(p, stop_before_pixels=True)
        except InputError:
            continue  # not DICOM: notes, thumbnails
        try:
            number = int(ds.get("InstanceNumber", 0) or 0)
        except (TypeError, ValueError):
            number = 0
        keyed.append((number, p.name, p))
    if not keyed:
        raise InputError(f"{folder}: no DICOM files in this folder")
    return [p for _, _, p in sorted(keyed)]


class DicomSource(SourceBase):
    """Frames of an ultrasound DICOM file (multi-frame cine or single frame) or series folder.

    Parameters
    ----------
    spec : str
        A DICOM file, or a folder of DICOM files (one series; sorted by InstanceNumber).
    spacing_mm : float or (float, float), optional
        Override the spacing found in the file.
    mask_outside_regions : bool
        Zero every pixel outside the ultrasound regions (default True).
    fps : float, optional
        Frame rate when the file gives none (default 30).
    realtime, speed, loop : as for video files.

    Attributes
    ----------
    metadata : dict
        De-identified technical metadata (the only file data exposed).
    imaging_region : ImagingRegion or None
        The main ultrasound region from the file, when given.
    """

    def __init__(self, spec, *, spacing_mm=None, mask_outside_regions: bool = True, fps: float | None = None,
                 realtime: bool = False, speed: float = 1.0, loop: bool = False, **_ignored) -> None:
        super().__init__()
        from ..sources.opencv import _Pacer, as_spacing

        self.path = Path(str(spec))
        self.name = str(spec)
        self._override = as_spacing(spacing_mm, self.name)
        self.mask_outside_regions = bool(mask_outside_regions)
        self._fps_option = float(fps) if fps else None
        self.realtime = bool(realtime)
        self.is_live = self.realtime
        self.loop = bool(loop)
        self._pacer = _Pacer(speed)
        self._files: list[_DicomFile] | None = None
        self.metadata: dict[str, Any] = {}
        self.imaging_region: ImagingRegion | None = None

    # --- opening ------------------------------------------------------------------------------
    def open(self) -> None:
        if self._files is not None:
            return
        try:
            with quiet_pydicom():
                self._open()
        except InputError:
            self._files = None
            raise
        except Exception as exc:  # noqa: BLE001 - malformed values surface as many exception types
            self._files = None
            raise InputError(f"{self.name}: malformed DICOM data ({type(exc).__name__})") from None

    def _open(self) -> None:
        paths = _list_series(self.path) if self.path.is_dir() else [self.path]
        files = [_DicomFile(p) for p in paths]
        first = files[0]
        for f in files[1:]:
            if (f.rows, f.cols) != (first.rows, first.cols):
                raise InputError(f"{f.path}: {f.cols}x{f.rows} px, but {first.path.name} is "
                                 f"{first.cols}x{first.rows} px: not one series")
        self._files = files
        self._index = [(fi, k) for fi, f in enumerate(files) for k in range(f.frames)]
        main = _main_region(first.regions)
        spacing, spacing_from = None, None
        if main is not None:
            spacing, spacing_from = main.spacing_mm, "ultrasound_regions"
            self.imaging_region = main.region.clip_to(first.rows, first.cols)
        elif "PixelSpacing" in first.ds:
            try:
                row_mm, col_mm = (float(v) for v in first.ds.PixelSpacing)
                if row_mm > 0 and col_mm > 0 and math.isfinite(row_mm) and math.isfinite(col_mm):
                    spacing, spacing_from = (col_mm, row_mm), "pixel_spacing"
            except (TypeError, ValueError):
                pass
        self.spacing_mm = self._override or spacing
        self._mask = None
        if self.mask_outside_regions and first.regions:
            mask = np.zeros((first.rows, first.cols), bool)
            for r in first.regions:
                mask[r.region.clip_to(first.rows, first.cols).slices] = True
            self._mask = mask
        interval, increments = _frame_interval_s(first.ds)
        if increments and len(increments) == len(self._index):
            self._times = np.cumsum(increments) - increments[0]
            assumed = False
        else:
            step = interval or 1.0 / (self._fps_option or 30.0)
            self._times = np.arange(len(self._index)) * step
            assumed = interval is None
        self._i, self._offset_s = 0, 0.0
        burned = str(first.ds.get("BurnedInAnnotation", "") or "").strip().upper() or None
        if first.modality not in ULTRASOUND_MODALITIES:
            log.warning("%s: modality %s is not marked as ultrasound; reading the frames as ultrasound",
                        self.name, first.modality or "(none)")
        if self._mask is None and burned != "NO":
            log.warning("%s: no ultrasound regions in the file: burnt-in text (names, dates) cannot be masked",
                        self.name)
        self.metadata = {
            "format": "dicom",
            "modality": first.modality or None,
            "manufacturer": _text(first.ds, "Manufacturer"),
            "model": _text(first.ds, "ManufacturerModelName"),
            "sop_class": _uid_name(first.ds.get("SOPClassUID")),
            "transfer_syntax": first.transfer_syntax,
            "photometric": first.photometric,
            "bits_stored": int(first.ds.get("BitsStored", 8) or 8),
            "size_px": [first.cols, first.rows],
            "files": len(files),
            "frames": len(self._index),
            "frame_interval_s": float(self._times[1] - self._times[0]) if len(self._times) > 1 else None,
            "frame_interval_assumed": assumed,
            "spacing_mm": list(self.spacing_mm) if self.spacing_mm else None,
            "spacing_from": "option" if self._override else spacing_from,
            "regions": [{"region_px": [r.region.x_px, r.region.y_px, r.region.width_px, r.region.height_px],
                         "spatial_format": r.spatial_format, "data_type": r.data_type,
                         "spacing_mm": list(r.spacing_mm) if r.spacing_mm else None} for r in first.regions],
            "burned_in_annotation": burned,
            "masked_outside_regions": self._mask is not None,
            "deidentified": True,
        }

    def close(self) -> None:
        self._files = None

    @property
    def nominal_fps(self) -> float | None:
        t = getattr(self, "_times", None)
        if t is None or len(t) < 2 or t[-1] <= t[0]:
            return None
        return float((len(t) - 1) / (t[-1] - t[0]))

    @property
    def frame_size_px(self) -> tuple[int, int] | None:
        if not self._files:
            return None
        return (self._files[0].cols, self._files[0].rows)

    def __len__(self) -> int:
        self.open()
        return len(self._index)

    # --- reading ------------------------------------------------------------------------------
    def frame_image(self, i: int) -> np.ndarray:
        """Frame ``i`` as grey uint8, masked outside the ultrasound regions."""
        self.open()
        fi, k = self._index[i]
        img = self._files[fi].decode(k)
        if img.ndim == 3 and img.shape[2] >= 3:  # pydicom gives RGB; our converter takes BGR
            img = np.ascontiguousarray(img[..., 2::-1])
        grey = to_gray_u8(img, self.name)
        if self._mask is not None:
            grey = np.where(self._mask, grey, np.uint8(0))
        return grey

    def read(self):
        self.open()
        if self._i >= len(self._index):
            if not self.loop or not self._index:
                return None
            span = float(self._times[-1]) + (float(self._times[1] - self._times[0]) if len(self._times) > 1 else 1 / 30)
            self._offset_s += span
            self._i = 0
        i = self._i
        self._i += 1
        t = self._offset_s + float(self._times[i])
        image = self.frame_image(i)
        if self.realtime:
            self._pacer.wait(t)
        return self.make_frame(image, t, i)


def _text(ds, keyword: str) -> str | None:
    value = ds.get(keyword, None)
    text = str(value).strip() if value is not None else ""
    return text[:64] or None


def _uid_name(uid) -> str | None:
    if uid is None:
        return None
    name = getattr(uid, "name", "")
    return str(name) if name and name != str(uid) else None
