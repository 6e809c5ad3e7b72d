"""Ultrasound DICOM: real files written with pydicom; frames, spacing, masking, and no PHI anywhere."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (ExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGLSLossless, UltrasoundImageStorage,
                         UltrasoundMultiFrameImageStorage, generate_uid)

from guidance.errors import InputError
from guidance.io.dicom import DicomSource
from guidance.sources import classify_spec, open_source

PATIENT_NAME = "Zyxwvut^Quorra"
PATIENT_ID = "PID-77551"
INSTITUTION = "Saint Elsewhere Clinic"
PHYSICIAN = "Quackenbush^Hieronymus"
PHI_STRINGS = [PATIENT_NAME, "Zyxwvut", "Quorra", PATIENT_ID, INSTITUTION, "Elsewhere", "Quackenbush", "19580312",
               "ACC123987"]

H, W = 120, 160
REGION = (20, 30, 100, 80)  # x, y, w, h of the ultrasound image inside the frame


def _frames(n: int) -> np.ndarray:
    """Speckle inside REGION, bright burnt-in text bar above it (outside the region)."""
    rng = np.random.default_rng(5)
    out = np.zeros((n, H, W), np.uint8)
    x, y, w, h = REGION
    for i in range(n):
        out[i, y:y + h, x:x + w] = rng.integers(40, 200, (h, w), dtype=np.uint8)
        out[i, y + 40 + i, x + 10:x + 60] = 255  # a bright line that moves: distinct frames
        cv2.putText(out[i], "QUORRA", (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 255, 1)
    return out


def _region_item(x, y, w, h, delta_cm=(0.01, 0.012)) -> Dataset:
    item = Dataset()
    item.RegionSpatialFormat = 1
    item.RegionDataType = 1
    item.RegionFlags = 0
    item.RegionLocationMinX0, item.RegionLocationMinY0 = x, y
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x + w - 1, y + h - 1
    item.PhysicalUnitsXDirection = 3
    item.PhysicalUnitsYDirection = 3
    item.PhysicalDeltaX, item.PhysicalDeltaY = delta_cm
    return item


def write_dicom(path, frames, *, regions=True, pixel_spacing=None, modality="US", jpeg=False, pixels=True,
                frame_time_ms=40.0):
    frames = np.asarray(frames)
    n = frames.shape[0]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage if n > 1 else UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19580312"
    ds.PatientSex = "F"
    ds.InstitutionName = INSTITUTION
    ds.ReferringPhysicianName = PHYSICIAN
    ds.OperatorsName = PHYSICIAN
    ds.AccessionNumber = "ACC123987"
    ds.StudyDate = ds.ContentDate = "20240229"
    ds.StudyTime = "101500"
    ds.Modality = modality
    ds.Manufacturer = "TestMaker"
    ds.ManufacturerModelName = "Probe9000"
    ds.BurnedInAnnotation = "YES"
    ds.InstanceNumber = 1
    if pixels:
        ds.Rows, ds.Columns = frames.shape[1:3]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        if n > 1:
            ds.NumberOfFrames = n
            ds.FrameTime = frame_time_ms
        if jpeg:
            from pydicom.encaps import encapsulate

            ds.PixelData = encapsulate([cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
                                        for f in frames])
            ds["PixelData"].VR = "OB"
            ds.LossyImageCompression = "01"
        else:
            ds.PixelData = frames.tobytes()
    if regions:
        ds.SequenceOfUltrasoundRegions = Sequence([_region_item(*REGION)])
    if pixel_spacing:
        ds.PixelSpacing = list(pixel_spacing)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def _read_all(src):
    with src:
        return list(iter(src.read, None))


def test_multiframe_cine_with_regions(tmp_path):
    frames = _frames(6)
    path = write_dicom(tmp_path / "cine.dcm", frames)
    src = open_source(str(path))
    assert isinstance(src, DicomSource)
    got = _read_all(src)
    assert len(got) == 6
    assert [f.timestamp_s for f in got] == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16, 0.2])
    assert got[0].spacing_mm == pytest.approx((0.1, 0.12))  # 0.01 cm and 0.012 cm per pixel
    x, y, w, h = REGION
    inside = (slice(y, y + h), slice(x, x + w))
    assert np.array_equal(got[3].image[inside], frames[3][inside])
    outside = np.ones((H, W), bool)
    outside[inside] = False
    assert frames[3][outside].max() == 255  # the burnt-in text was there...
    assert got[3].image[outside].max() == 0  # ...and is masked
    assert src.imaging_region is not None and (src.imaging_region.x_px, src.imaging_region.width_px) == (x, w)
    assert src.metadata["masked_outside_regions"] is True


def test_pixel_spacing_without_regions_and_no_masking(tmp_path, caplog):
    frames = _frames(1)
    path = write_dicom(tmp_path / "one.dcm", frames, regions=False, pixel_spacing=(0.3, 0.2))
    with caplog.at_level(logging.WARNING):
        got = _read_all(DicomSource(str(path)))
    assert len(got) == 1
    assert got[0].spacing_mm == pytest.approx((0.2, 0.3))  # PixelSpacing is row (y), then column (x)
    assert np.array_equal(got[0].image, frames[0])
    assert "cannot be masked" in caplog.text


def test_no_spacing_at_all_is_unknown(tmp_path):
    path = write_dicom(tmp_path / "nosp.dcm", _frames(2), regions=False)
    assert _read_all(DicomSource(str(path)))[0].spacing_mm is None


def test_jpeg_baseline_cine(tmp_path):
    frames = _frames(4)
    path = write_dicom(tmp_path / "jpeg.dcm", frames, jpeg=True)
    got = _read_all(DicomSource(str(path)))
    assert len(got) == 4
    x, y, w, h = REGION
    diff = np.abs(got[2].image[y:y + h, x:x + w].astype(int) - frames[2][y:y + h, x:x + w].astype(int))
    assert diff.mean() < 8  # lossy, but the same picture
    assert got[2].image[:y].max() == 0


def test_single_frame_series_folder(tmp_path):
    frames = _frames(5)
    folder = tmp_path / "series"
    folder.mkdir()
    for i in (3, 0, 4, 1, 2):  # written out of order; InstanceNumber decides
        p = write_dicom(folder / f"IM{9 - i:04d}", frames[i:i + 1])
        import pydicom

        ds = pydicom.dcmread(p)
        ds.InstanceNumber = i + 1
        ds.save_as(p)
    (folder / "notes.txt").write_text("not dicom")
    assert classify_spec(str(folder)) == "dicom"
    got = _read_all(open_source(str(folder), fps=10))
    assert len(got) == 5
    x, y, w, h = REGION
    mask = np.zeros((H, W), bool)
    mask[y:y + h, x:x + w] = True
    for i, f in enumerate(got):
        assert np.array_equal(f.image, np.where(mask, frames[i], 0))
    assert got[1].timestamp_s == pytest.approx(0.1)


def test_no_phi_reaches_metadata_logs_frames_or_detect_output(tmp_path, caplog):
    path = write_dicom(tmp_path / "case.dcm", _frames(3))
    with caplog.at_level(logging.DEBUG):
        src = DicomSource(str(path))
        frames = _read_all(src)
    outputs = [json.dumps(src.metadata), caplog.text, repr(src), " ".join(f.source for f in frames)]
    outputs.append(str(src._files and src._files[0].ds))  # noqa: SLF001 - even the dataset kept in memory
    src.open()
    outputs.append(str(src._files[0].ds) + str(src._files[0].ds.file_meta))  # noqa: SLF001
    out = tmp_path / "det.jsonl"
    proc = subprocess.run([sys.executable, "-m", "guidance", "detect", str(path), "--out", str(out),
                           "--model", "classical"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    outputs += [out.read_text(), proc.stdout, proc.stderr]
    for text in outputs:
        for phi in PHI_STRINGS:
            assert phi.lower() not in text.lower(), f"{phi!r} leaked"
    assert len(out.read_text().splitlines()) == 3
    assert src.metadata["manufacturer"] == "TestMaker" and src.metadata["modality"] == "US"
    assert src.metadata["spacing_mm"] == pytest.approx([0.1, 0.12])


def test_ct_is_refused_with_a_clear_message(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", _frames(1), modality="CT")
    with pytest.raises(InputError, match="modality CT is not ultrasound"):
        DicomSource(str(path)).open()
    proc = subprocess.run([sys.executable, "-m", "guidance", "detect", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "ct.dcm" in proc.stderr and "Traceback" not in proc.stderr


def test_secondary_capture_without_modality_is_read_with_a_warning(tmp_path, caplog):
    path = write_dicom(tmp_path / "sc.dcm", _frames(1), modality="OT")
    with caplog.at_level(logging.WARNING):
        assert len(_read_all(DicomSource(str(path)))) == 1
    assert "not marked as ultrasound" in caplog.text


def test_dicom_without_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "sr.dcm", _frames(1), pixels=False, regions=False)
    with pytest.raises(InputError, match="no pixel data"):
        DicomSource(str(path)).open()


def test_unsupported_transfer_syntax(tmp_path):
    from pydicom.pixels import get_decoder

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    path = write_dicom(tmp_path / "jls.dcm", _frames(2), jpeg=True)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.save_as(path)
    with pytest.raises(InputError, match="JPEG-LS"):
        DicomSource(str(path)).open()


def test_truncated_and_non_dicom_files(tmp_path):
    path = write_dicom(tmp_path / "cut.dcm", _frames(4))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 30000])
    with pytest.raises(InputError, match="cut.dcm"):
        _read_all(DicomSource(str(path)))
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"hello, not dicom at all" * 20)
    with pytest.raises(InputError, match="not a DICOM file"):
        DicomSource(str(junk)).open()


def test_malformed_phi_values_do_not_leak_through_pydicom_warnings(tmp_path, caplog):
    import warnings

    import pydicom

    path = write_dicom(tmp_path / "odd.dcm", _frames(2))
    ds = pydicom.dcmread(path)
    ds.PatientName = (PATIENT_NAME + "^") * 12  # longer than PN allows: pydicom warns, quoting the value
    ds.PatientBirthDate = "1958-03-12 " + PATIENT_ID  # not a DA value
    ds.AccessionNumber = "ACC123987" * 5
    ds.StudyInstanceUID = f"1.2.{PATIENT_ID}.Quorra"  # a broken UID: pydicom's warning quotes it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path)
    caplog.clear()  # pydicom logged the values while this test wrote them; only reading counts
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        src = DicomSource(str(path))
        frames = _read_all(src)
    assert len(frames) == 2
    text = caplog.text + " ".join(str(w.message) for w in caught) + json.dumps(src.metadata)
    for phi in PHI_STRINGS:
        assert phi.lower() not in text.lower()


def test_dicom_info_command_prints_no_phi(tmp_path, capsys):
    from guidance.cli import main

    path = write_dicom(tmp_path / "info.dcm", _frames(2))
    assert main(["dicom-info", str(path)]) == 0
    out = capsys.readouterr().out
    info = json.loads(out)
    assert info["frames"] == 2 and info["model"] == "Probe9000" and info["deidentified"] is True
    for phi in PHI_STRINGS:
        assert phi.lower() not in out.lower()


def test_rgb_dicom_becomes_grey_by_luminance(tmp_path):
    import pydicom

    path = write_dicom(tmp_path / "rgb.dcm", _frames(1), regions=False)
    ds = pydicom.dcmread(path)
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, : W // 2, 0] = 200  # red left half (colour Doppler red)
    rgb[:, W // 2:, 2] = 200  # blue right half
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.PixelData = rgb.tobytes()
    ds.save_as(path)
    (frame,) = _read_all(DicomSource(str(path)))
    assert frame.image[5, 5] == pytest.approx(0.299 * 200, abs=2)  # red weighs more than blue in luminance
    assert frame.image[5, W - 5] == pytest.approx(0.114 * 200, abs=2)


def test_frame_time_vector_gives_uneven_timestamps(tmp_path):
    import pydicom

    path = write_dicom(tmp_path / "ftv.dcm", _frames(4))
    ds = pydicom.dcmread(path)
    del ds.FrameTime
    ds.FrameTimeVector = [0, 40, 60, 40]
    ds.save_as(path)
    got = _read_all(DicomSource(str(path)))
    assert [f.timestamp_s for f in got] == pytest.approx([0.0, 0.04, 0.1, 0.14])
