"""Fuzzing our parsers: whatever the bytes, only our own clear error (InputError) comes out."""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guidance.errors import InputError
from guidance.io.igtl import HEADER, decode_body, parse_header
from guidance.io.plus import read_sequence, write_sequence
from guidance.io.seqfields import parse_frame_fields, split_frame_fields

# Bounded and repeatable in CI; FUZZ_EXAMPLES=2000 for a longer, random run by hand.
_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=_EXAMPLES <= 100, database=None)

_TMP = Path(tempfile.mkdtemp(prefix="fuzz-parsers-"))
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FF), max_size=40)
numbers = st.one_of(st.integers(-5, 70000).map(str), st.floats(allow_nan=True).map(str), text)


def _read_everything(path: Path) -> None:
    seq = read_sequence(path)
    try:
        for i in range(len(seq)):
            seq.frame(i)
        seq.timestamps_s
        for name in seq.transform_names:
            seq.transforms(name)
    finally:
        seq.close()


def _template(suffix: str) -> bytes:
    y, x = np.mgrid[0:12, 0:16]
    frames = np.stack([((x + y + i) % 256).astype(np.uint8) for i in range(3)])
    path = write_sequence(_TMP / f"template{suffix}", frames, {"ProbeToTracker": [np.eye(4)] * 3},
                          {"Note": ["a", "b", "c"]}, timestamps_s=[0.0, 0.1, 0.2], spacing_mm=(0.2, 0.2))
    return path.read_bytes()


MHA = _template(".mha")
NRRD = _template(".seq.nrrd")


def _write(data: bytes, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix, dir=_TMP)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return Path(name)


def _reads_or_refuses(data: bytes, suffix: str, read=_read_everything) -> None:
    """Write DATA to a file and read all of it: a clear InputError is fine, any other exception a bug."""
    path = _write(data, suffix)
    try:
        read(path)
    except InputError:
        pass
    finally:
        path.unlink()


def _replace_value(data: bytes, key: bytes, value: str, sep: bytes) -> bytes:
    start = data.index(key + sep)
    end = data.index(b"\n", start)
    return data[:start] + key + sep + value.encode("utf-8", "replace") + data[end:]


@FUZZ
@given(key=st.sampled_from([b"NDims", b"DimSize", b"ElementType", b"ElementNumberOfChannels", b"CompressedData",
                            b"CompressedDataSize", b"ElementSpacing", b"UltrasoundImageOrientation",
                            b"Seq_Frame0001_Timestamp", b"Seq_Frame0002_ProbeToTrackerTransform",
                            b"Seq_Frame0000_ImageStatus", b"ElementDataFile", b"BinaryDataByteOrderMSB"]),
       value=numbers)
def test_metaimage_header_values(key, value):
    _reads_or_refuses(_replace_value(MHA, key, value, b" = "), ".mha")


@FUZZ
@given(cut=st.integers(0, len(MHA)), flips=st.lists(st.tuples(st.integers(0, len(MHA) - 1), st.integers(0, 255)),
                                                   max_size=4))
def test_metaimage_cut_and_corrupted_bytes(cut, flips):
    data = bytearray(MHA[:cut] if cut else MHA)
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    _reads_or_refuses(bytes(data), ".mha")


@FUZZ
@given(key=st.sampled_from([b"sizes", b"kinds", b"type", b"dimension", b"encoding", b"space directions",
                            b"Seq_Frame0001_Timestamp", b"Seq_Frame0002_ProbeToTrackerTransform",
                            b"ultrasound image orientation", b"axis 3 index values"]),
       value=numbers)
def test_nrrd_header_values(key, value):
    sep = b":=" if key.startswith((b"Seq_", b"ultrasound", b"axis")) else b": "
    _reads_or_refuses(_replace_value(NRRD, key, value, sep), ".nrrd")


@FUZZ
@given(cut=st.integers(1, len(NRRD)), pos=st.integers(0, len(NRRD) - 1), val=st.integers(0, 255))
def test_nrrd_cut_and_corrupted_bytes(cut, pos, val):
    data = bytearray(NRRD[:cut])
    if pos < len(data):
        data[pos] = val
    _reads_or_refuses(bytes(data), ".nrrd")


@FUZZ
@given(fields=st.dictionaries(st.one_of(st.from_regex(r"Seq_Frame[0-9]{1,9}_[A-Za-z]{0,20}", fullmatch=True), text),
                              numbers, max_size=8))
def test_per_frame_field_parser(fields):
    try:
        plain, per_frame = split_frame_fields(fields)
        for i, f in per_frame.items():
            parse_frame_fields(f, f"frame {i}")
    except InputError:
        pass


# --- DICOM ---------------------------------------------------------------------------------------

def _dicom_template() -> bytes:
    from test_dicom import _frames, write_dicom  # the same real-file builder as the DICOM tests

    return write_dicom(_TMP / "template.dcm", _frames(2)).read_bytes()


DICOM = _dicom_template()


@FUZZ
@given(cut=st.integers(0, 4000), flips=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 255)), max_size=6))
def test_dicom_wrapper(cut, flips):
    from guidance.io.dicom import DicomSource

    data = bytearray(DICOM)
    if cut:
        data = data[: len(data) - cut * 10]
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    def read_all(path: Path) -> None:
        with DicomSource(str(path)) as src:
            while src.read() is not None:
                pass

    _reads_or_refuses(bytes(data), ".dcm", read_all)


# --- OpenIGTLink ---------------------------------------------------------------------------------

@FUZZ
@given(raw=st.binary(min_size=HEADER.size, max_size=HEADER.size), body=st.binary(max_size=400))
def test_igtl_header_and_body_from_random_bytes(raw, body):
    try:
        fields = parse_header(raw)
        fields["body_size"] = len(body)
        decode_body(fields, body)
    except InputError:
        pass


@FUZZ
@given(mtype=st.sampled_from([b"IMAGE", b"TRANSFORM", b"POINT", b"STRING", b"STATUS", b"POSITION"]),
       body=st.binary(max_size=300), version=st.sampled_from([1, 2]))
def test_igtl_known_types_with_random_bodies(mtype, body, version):
    from pyigtl.messages import CRC64

    raw = HEADER.pack(version, mtype, b"Dev", 0, 0, len(body), CRC64(body))
    try:
        decode_body(parse_header(raw), body)
    except InputError:
        pass


def test_igtl_header_limits():
    ok = HEADER.pack(1, b"IMAGE", b"Image", 1, 0, 10, 0)
    assert parse_header(ok)["message_type"] == "IMAGE"
    with pytest.raises(InputError, match="announces"):
        parse_header(HEADER.pack(1, b"IMAGE", b"Image", 1, 0, 2 ** 40, 0))
    with pytest.raises(InputError, match="type name"):
        parse_header(HEADER.pack(1, b"ima ge", b"Image", 1, 0, 10, 0))
    with pytest.raises(InputError, match="CRC"):
        decode_body(parse_header(HEADER.pack(1, b"STRING", b"S", 1, 0, 4, 12345)), struct.pack(">HH", 3, 0))
