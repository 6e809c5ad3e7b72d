"""PLUS sequence files: the real PLUS test sequences, round trips, orientation, bad files."""

from __future__ import annotations

import hashlib
import math
import re
import zlib

import numpy as np
import pytest

from guidance.errors import InputError
from guidance.io.plus import (NEEDLE_TRANSFORM, PlusSequenceSource, export_recording_to_plus, read_sequence,
                              write_sequence)
from guidance.sources import open_source
from guidance.types import Frame

BONE = "plus/BoneUltrasound_L14.igs.mha"


def _digest(seq) -> str:
    h = hashlib.sha256()
    for i in range(len(seq)):
        h.update(np.ascontiguousarray(seq.frame(i)).tobytes())
    return h.hexdigest()


def _gradient_frames(n=4, h=24, w=32) -> np.ndarray:
    """Frames whose pixels say where they are: value = x + 2*y + 10*i (mod 256)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([((x + 2 * y + 10 * i) % 256).astype(np.uint8) for i in range(n)])


def test_real_bone_sequence_reads_as_plus_wrote_it(shared_data):
    seq = read_sequence(shared_data / BONE)
    assert len(seq) == 21
    assert (seq.width_px, seq.height_px) == (820, 616)
    assert seq.orientation == "MF"
    assert seq.spacing_mm is None  # ElementSpacing = 1 1 1 is PLUS's placeholder, not 1 mm per pixel
    ts = seq.timestamps_s
    assert ts[0] == pytest.approx(232.542071) and ts[-1] == pytest.approx(234.2611)
    assert np.all(np.diff(ts) > 0)
    mats, ok = seq.transforms("ProbeToTracker")
    assert ok.all()
    assert mats[0][0, 3] == pytest.approx(257.956) and mats[0][2, 2] == pytest.approx(-0.864966)
    assert np.allclose(mats[:, 3], [0, 0, 0, 1])
    frame = seq.frame(20)
    assert frame.shape == (616, 820) and frame.dtype == np.uint8
    # the pixels PLUS stored: inflate the whole file independently and compare the last frame
    raw = (shared_data / BONE).read_bytes()
    start = raw.index(b"ElementDataFile = LOCAL") + len(b"ElementDataFile = LOCAL")
    start += 2 if raw[start:start + 2] == b"\r\n" else 1
    pixels = zlib.decompress(raw[start:])
    assert len(pixels) == 820 * 616 * 21
    assert frame.tobytes() == pixels[20 * 820 * 616:]
    assert frame.max() > 200 and (frame > 0).mean() > 0.2  # real ultrasound, not an empty frame


@pytest.mark.parametrize("suffix", [".seq.nrrd", ".mha", ".mhd"])
def test_real_sequence_round_trip_keeps_pixels_timestamps_transforms(shared_data, tmp_path, suffix):
    seq = read_sequence(shared_data / BONE)
    frames = np.stack([seq.frame(i) for i in range(len(seq))])
    transforms = {name: seq.transforms(name)[0] for name in seq.transform_names}
    out = write_sequence(tmp_path / f"bone{suffix}", frames, transforms,
                         {"Note": [f"frame {i}" for i in range(len(seq))]},
                         timestamps_s=seq.timestamps_s, spacing_mm=(0.085, 0.085))
    back = read_sequence(out)
    assert len(back) == 21 and (back.width_px, back.height_px) == (820, 616)
    assert _digest(back) == _digest(seq)
    assert np.allclose(back.timestamps_s, seq.timestamps_s, atol=1e-6)
    assert back.spacing_mm == pytest.approx((0.085, 0.085))
    for name in seq.transform_names:
        assert np.allclose(back.transforms(name)[0], seq.transforms(name)[0], atol=1e-6)
    assert back.fields[7].custom["Note"] == "frame 7"


def test_seq_nrrd_header_follows_slicer_volume_sequence_layout(tmp_path):
    path = write_sequence(tmp_path / "a.seq.nrrd", _gradient_frames(), timestamps_s=[0, 0.1, 0.2, 0.3],
                          spacing_mm=(0.2, 0.3))
    import nrrd

    header = nrrd.read_header(str(path))
    assert header["kinds"] == ["domain", "domain", "domain", "list"]
    assert list(header["sizes"]) == [32, 24, 1, 4]
    assert header["axis 3 index values"].split() == ["0.000000", "0.100000", "0.200000", "0.300000"]
    assert header["DataNodeClassName"] == "vtkMRMLScalarVolumeNode"
    assert header["Seq_Frame0002_Timestamp"] == "0.200000"
    assert header["Seq_Frame0002_ImageStatus"] == "OK"
    assert header["Seq_Frame0002_Status"] == "OK"  # the name PLUS's own NRRD reader looks for


@pytest.mark.parametrize("orientation, flip", [("MF", lambda a: a), ("UF", lambda a: a[:, ::-1]),
                                               ("MN", lambda a: a[::-1]), ("UN", lambda a: a[::-1, ::-1]),
                                               ("UFA", lambda a: a[:, ::-1])])
def test_orientation_is_turned_to_mf(tmp_path, orientation, flip):
    frames = _gradient_frames()
    path = write_sequence(tmp_path / "o.mha", frames, compress=False)
    raw = path.read_bytes().replace(b"UltrasoundImageOrientation = MF", b"UltrasoundImageOrientation = " +
                                    orientation.encode().ljust(2))
    path.write_bytes(raw)
    seq = read_sequence(path)
    assert np.array_equal(seq.frame(2), flip(frames[2]))
    assert np.array_equal(seq.frame(2, reorient=False), frames[2])


def test_rf_orientation_is_refused(tmp_path):
    path = write_sequence(tmp_path / "rf.mha", _gradient_frames(), compress=False)
    path.write_bytes(path.read_bytes().replace(b"UltrasoundImageOrientation = MF", b"UltrasoundImageOrientation = FM"))
    with pytest.raises(InputError, match="orientation"):
        read_sequence(path)


def test_source_replays_with_timestamps_spacing_and_skips_invalid_frames(tmp_path):
    frames = _gradient_frames(5)
    path = write_sequence(tmp_path / "s.seq.nrrd", frames, timestamps_s=[10.0, 10.1, 10.2, 10.3, 10.4],
                          spacing_mm=(0.1, 0.12), image_ok=[True, True, False, True, True])
    src = open_source(str(path))
    assert isinstance(src, PlusSequenceSource)
    with src:
        got = list(iter(src.read, None))
    assert [f.index for f in got] == [0, 1, 3, 4]
    assert [f.timestamp_s for f in got] == pytest.approx([10.0, 10.1, 10.3, 10.4])
    assert got[0].spacing_mm == pytest.approx((0.1, 0.12))
    assert np.array_equal(got[2].image, frames[3])
    assert src.invalid_frames == 1
    with PlusSequenceSource(str(path), skip_invalid=False, spacing_mm=0.5) as src2:
        kept = list(iter(src2.read, None))
    assert len(kept) == 5 and kept[2].image.max() == 0 and kept[0].spacing_mm == (0.5, 0.5)


def test_real_file_through_open_source(shared_data):
    with open_source(str(shared_data / BONE), spacing_mm=0.085) as src:
        frames = list(iter(src.read, None))
    assert len(frames) == 21
    assert frames[0].spacing_mm == (0.085, 0.085)
    assert frames[1].timestamp_s - frames[0].timestamp_s == pytest.approx(0.085943, abs=1e-6)


def test_truncated_compressed_mha_gives_a_clear_error(shared_data, tmp_path):
    data = (shared_data / BONE).read_bytes()
    bad = tmp_path / "cut.igs.mha"
    bad.write_bytes(data[: len(data) // 2])
    # said on opening (plus-info too), from the header's CompressedDataSize, not after half the frames
    with pytest.raises(InputError, match="truncated: 3690039 bytes of compressed pixel data expected"):
        read_sequence(bad)


def test_truncated_compressed_mha_without_a_size_fails_at_the_missing_frame(tmp_path):
    path = write_sequence(tmp_path / "z.mha", _gradient_frames(), compress=True)
    data, found = re.subn(rb"CompressedDataSize = \d+\n", b"", path.read_bytes())
    assert found == 1
    path.write_bytes(data[:-40])
    seq = read_sequence(path)
    with pytest.raises(InputError, match="truncated|corrupt"):
        for i in range(len(seq)):
            seq.frame(i)


def test_truncated_raw_mha_and_cut_header_give_clear_errors(tmp_path):
    path = write_sequence(tmp_path / "raw.mha", _gradient_frames(), compress=False)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(InputError, match="truncated"):
        read_sequence(path)
    head = tmp_path / "head.mha"
    head.write_bytes(data[:200])
    with pytest.raises(InputError, match="ElementDataFile|header"):
        read_sequence(head)


def test_mhd_with_missing_data_file(tmp_path):
    path = write_sequence(tmp_path / "x.mhd", _gradient_frames())
    path.with_suffix(".zraw").unlink()
    with pytest.raises(InputError, match="missing"):
        read_sequence(path)


class _Recording:
    """What guidance.recording.RecordingReader offers: len, frame(i), record(i)."""

    def __init__(self, n=6):
        self.images = _gradient_frames(n, 40, 48)
        self.n = n

    def __len__(self):
        return self.n

    def frame(self, i):
        return Frame(self.images[i], 0.5 + i / 30.0, i, i, (0.1, 0.1), "rec")

    def record(self, i):
        needle = None if i == 2 else {"tip_px": [20.0 + i, 15.0], "shaft_px": [[5.0, 5.0], [20.0 + i, 15.0]],
                                      "angle_deg": math.degrees(math.atan2(10.0, 15.0 + i)), "confidence": 0.9}
        return {"frame": i, "t_s": 0.5 + i / 30.0, "needle": needle,
                "target": {"kind": "bone", "surface_px": [[x, 30.0] for x in range(48)], "bone_px": [],
                           "cartilage_thickness_mm": None},
                "trajectory": None if needle is None else {"intercept_px": [35.0, 30.0], "distance_mm": 1.8,
                                                           "approach_deg": 60.0, "distance_px": 18.0},
                "alerts": ["near_bone"] if i == 5 else []}


@pytest.mark.parametrize("suffix", [".seq.nrrd", ".mha"])
def test_export_recording_writes_detections_and_needle_transform(tmp_path, suffix):
    rec = _Recording()
    out = export_recording_to_plus(rec, tmp_path / f"rec{suffix}")
    seq = read_sequence(out)
    assert len(seq) == 6 and seq.spacing_mm == pytest.approx((0.1, 0.1))
    assert np.array_equal(seq.frame(4), rec.images[4])
    assert seq.timestamps_s == pytest.approx([0.5 + i / 30.0 for i in range(6)], abs=1e-6)
    mats, ok = seq.transforms(NEEDLE_TRANSFORM)
    assert ok.tolist() == [True, True, False, True, True, True]
    assert mats[3][:2, 3] == pytest.approx([23.0, 15.0])
    direction = mats[3][:2, 0]
    assert direction == pytest.approx(np.array([18.0, 10.0]) / math.hypot(18.0, 10.0), abs=1e-6)
    assert np.allclose(mats[3][:3, :3].T @ mats[3][:3, :3], np.eye(3), atol=1e-9)
    f3 = seq.fields[3].custom
    assert f3["NeedleTipPx"] == "23.00 15.00" and f3["InterceptPx"] == "35.00 30.00"
    assert float(f3["DistanceMm"]) == pytest.approx(1.8)
    assert f3["TargetKind"] == "bone" and len(f3["TargetSurfacePx"].split()) == 16
    assert "NeedleTipPx" not in seq.fields[2].custom
    assert seq.fields[5].custom["Alerts"] == "near_bone"


def test_bad_inputs_to_writer(tmp_path):
    with pytest.raises(InputError):
        write_sequence(tmp_path / "a.mha", _gradient_frames(3), {"Bad Name": [np.eye(4)] * 3})
    with pytest.raises(InputError):
        write_sequence(tmp_path / "a.mha", _gradient_frames(3), {"X": [np.eye(3)] * 3})
    with pytest.raises(InputError):
        write_sequence(tmp_path / "a.avi", _gradient_frames(3))


def test_plus_info_command(shared_data, capsys):
    import json

    from guidance.cli import main

    assert main(["plus-info", str(shared_data / BONE)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == 21 and info["size_px"] == [820, 616]
    assert set(info["transforms"]) == {"ProbeToTracker", "ReferenceToTracker", "StylusToTracker"}
    assert main(["plus-info", str(shared_data / "plus" / "LICENSE_PlusLibData.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LICENSE_PlusLibData.txt" in err[0]


def test_big_endian_16_bit_metaimage(tmp_path):
    frames = (_gradient_frames(2).astype(np.uint16) * 16)  # 12-bit data
    path = write_sequence(tmp_path / "be.mha", frames, compress=False)
    raw = path.read_bytes()
    head, data = raw[: raw.index(b"ElementDataFile = LOCAL\n") + 24], raw[raw.index(b"ElementDataFile = LOCAL\n") + 24:]
    swapped = np.frombuffer(data, "<u2").astype(">u2").tobytes()
    path.write_bytes(head.replace(b"BinaryDataByteOrderMSB = False", b"BinaryDataByteOrderMSB = True") + swapped)
    seq = read_sequence(path)
    assert np.array_equal(seq.frame(1), frames[1]) and seq.frame(1).dtype.isnative
    with PlusSequenceSource(str(path)) as src:
        frame = src.read()
    from guidance.sources import to_gray_u8

    assert np.array_equal(frame.image, to_gray_u8(frames[0]))  # 12-bit scaled to 8 bits as any 16-bit source


def test_detect_command_reads_a_seq_nrrd_with_its_spacing(shared_data, tmp_path):
    import json
    import subprocess
    import sys

    seq = read_sequence(shared_data / BONE)
    path = write_sequence(tmp_path / "three.seq.nrrd", np.stack([seq.frame(i) for i in range(3)]),
                          timestamps_s=seq.timestamps_s[:3], spacing_mm=(0.085, 0.085))
    proc = subprocess.run([sys.executable, "-m", "guidance", "detect", str(path), "--model", "classical"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["frame"] for line in lines] == [0, 1, 2]
    assert lines[1]["t_s"] == pytest.approx(232.628014, abs=1e-6)
    assert lines[0]["spacing_mm"] == pytest.approx([0.085, 0.085])


@pytest.mark.parametrize("suffix", [".seq.nrrd", ".mha"])
def test_exported_sequence_reads_in_itk_as_slicer_would(tmp_path, suffix):
    """An independent reader (ITK, under 3D Slicer's own) gets the same pixels, spacing and per-frame fields."""
    import SimpleITK as sitk

    rec = _Recording()
    out = export_recording_to_plus(rec, tmp_path / f"rec{suffix}")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(out))
    image = reader.Execute()
    pixels = sitk.GetArrayFromImage(image)
    if suffix == ".seq.nrrd":
        # Slicer's volume-sequence layout: X, Y, 1 and a list axis of frames (ITK: a vector per pixel).
        assert pixels.shape == (1, 40, 48, 6)
        frames = np.moveaxis(pixels[0], -1, 0)
    else:
        assert pixels.shape == (6, 40, 48)
        frames = pixels
    assert all(np.array_equal(frames[i], rec.images[i]) for i in range(6))
    assert image.GetSpacing()[:2] == pytest.approx((0.1, 0.1))
    if suffix == ".mha":
        # ITK keeps the PLUS per-frame fields as metadata; Slicer's sequence reader parses the same lines.
        assert reader.GetMetaData("Seq_Frame0003_NeedleTipPx").strip() == "23.00 15.00"
        assert float(reader.GetMetaData("Seq_Frame0004_Timestamp")) == pytest.approx(0.5 + 4 / 30.0, abs=1e-6)
