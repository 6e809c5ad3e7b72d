"""Frame sources on real files written with OpenCV: videos, image folders, single images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from guidance.errors import FrameFormatError, InputError, SourceDisconnected
from guidance.sources import open_source, to_gray_u8
from guidance.sources.opencv import (CaptureSource, ImageFileSource, ImageFolderSource, VideoFileSource,
                                     as_spacing)


def _pattern(i: int, w: int = 96, h: int = 64) -> np.ndarray:
    """A frame whose brightness encodes its number, so order and identity can be checked after lossy codecs."""
    img = np.full((h, w), 20 + 20 * (i % 10), np.uint8)
    cv2.rectangle(img, (8, 8), (40, 30), 255, -1)
    return img


def _write_video(path, n: int, fps: float = 25.0, fourcc: str = "MJPG", colour: bool = True):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (96, 64), colour)
    assert writer.isOpened(), f"cannot write {path} with {fourcc}"
    for i in range(n):
        img = _pattern(i)
        writer.write(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if colour else img)
    writer.release()
    return path


def _read_all(source):
    frames = []
    with source:
        while (frame := source.read()) is not None:
            frames.append(frame)
    return frames


@pytest.mark.parametrize("suffix,fourcc", [(".avi", "MJPG"), (".mp4", "mp4v"), (".mkv", "MJPG")])
def test_video_file_gives_every_frame_in_order_as_grey_with_timestamps(tmp_path, suffix, fourcc):
    path = _write_video(tmp_path / f"clip{suffix}", 12, fps=25.0, fourcc=fourcc)
    source = open_source(str(path))
    assert isinstance(source, VideoFileSource)
    frames = _read_all(source)
    assert len(frames) == 12
    assert [f.index for f in frames] == list(range(12))
    assert all(f.image.ndim == 2 and f.image.dtype == np.uint8 and f.image.shape == (64, 96) for f in frames)
    # the frames are the ones written, in order (background level encodes the number)
    levels = [float(np.median(f.image[40:, 50:])) for f in frames]
    assert np.allclose(levels, [20 + 20 * (i % 10) for i in range(12)], atol=6)
    times = np.array([f.timestamp_s for f in frames])
    assert np.allclose(np.diff(times), 1 / 25.0, atol=1e-3)
    seqs = [f.seq for f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == 12
    assert source.nominal_fps == pytest.approx(25.0)


def test_video_loop_keeps_time_increasing(tmp_path):
    path = _write_video(tmp_path / "clip.avi", 4)
    source = VideoFileSource(str(path), loop=True)
    with source:
        frames = [source.read() for _ in range(10)]
    assert [f.index for f in frames] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert np.all(np.diff([f.timestamp_s for f in frames]) > 0)


def test_spacing_option_is_carried_by_every_frame(tmp_path):
    path = _write_video(tmp_path / "clip.avi", 3)
    frames = _read_all(open_source(str(path), spacing_mm=0.1))
    assert all(f.spacing_mm == (0.1, 0.1) for f in frames)
    frames = _read_all(open_source(str(path), spacing_mm=(0.1, 0.2)))
    assert frames[0].spacing_mm == (0.1, 0.2)
    with pytest.raises(InputError, match="spacing"):
        as_spacing(-1.0)


def test_corrupt_video_is_a_clear_input_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(InputError, match="broken.mp4"):
        _read_all(open_source(str(bad)))


def test_missing_file_names_it():
    with pytest.raises(InputError, match="nowhere.avi"):
        open_source("/no/such/dir/nowhere.avi")


@pytest.mark.parametrize("spec", ["", "   "])
def test_an_empty_name_is_no_input_not_the_current_folder(spec):
    """An empty argument (a script's unset variable) must say so, not read the folder it runs in."""
    with pytest.raises(InputError, match="no input given"):
        open_source(spec)


def test_image_folder_is_read_sorted_by_name(tmp_path):
    for i in (3, 0, 2, 1):
        cv2.imwrite(str(tmp_path / f"frame_{i:03d}.png"), _pattern(i))
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(str(tmp_path), fps=10)
    assert isinstance(source, ImageFolderSource)
    frames = _read_all(source)
    assert len(frames) == 4
    assert [int(f.image[50, 60]) for f in frames] == [20, 40, 60, 80]  # lossless PNG: exact levels
    assert [f.timestamp_s for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_bad_file_in_the_middle_of_a_folder_is_named(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), _pattern(i))
    (tmp_path / "f1.png").write_bytes(b"\x89PNG truncated")
    source = open_source(str(tmp_path))
    with source:
        assert source.read() is not None
        with pytest.raises(InputError, match="f1.png"):
            source.read()


def test_empty_folder_says_so(tmp_path):
    with pytest.raises(InputError, match="no image files"):
        _read_all(open_source(str(tmp_path)))


def test_single_image_colour_and_16_bit(tmp_path):
    colour = np.zeros((40, 50, 3), np.uint8)
    colour[..., 2] = 200  # pure red in BGR
    cv2.imwrite(str(tmp_path / "red.png"), colour)
    frames = _read_all(open_source(str(tmp_path / "red.png")))
    assert len(frames) == 1
    assert frames[0].image.shape == (40, 50) and frames[0].image.dtype == np.uint8
    assert int(frames[0].image[0, 0]) == pytest.approx(0.299 * 200, abs=2)  # luminance, not the red channel

    deep = np.full((40, 50), 4095, np.uint16)  # 12-bit white
    deep[:, :25] = 0
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    frame = _read_all(ImageFileSource(str(tmp_path / "deep.png")))[0]
    assert frame.image[0, 40] == 255 and frame.image[0, 0] == 0


def test_image_source_loops_for_a_live_view(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _pattern(1))
    source = ImageFileSource(str(tmp_path / "a.png"), loop=True)
    with source:
        frames = [source.read() for _ in range(3)]
    assert [f.index for f in frames] == [0, 1, 2] and all(f is not None for f in frames)


def test_undecodable_image_file_is_named(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(InputError, match="x.jpg"):
        _read_all(open_source(str(tmp_path / "x.jpg")))


def test_frame_conversion_rejects_wrong_shapes_and_types():
    with pytest.raises(FrameFormatError):
        to_gray_u8(np.zeros((4, 4, 2), np.uint8), "grabber")
    with pytest.raises(FrameFormatError, match="grabber"):
        to_gray_u8(np.zeros((2, 3, 4, 5), np.uint8), "grabber")
    with pytest.raises(FrameFormatError):
        to_gray_u8(np.full((16, 16), np.nan, np.float32))
    with pytest.raises(FrameFormatError):
        to_gray_u8(np.zeros((16, 16), np.complex64))
    assert to_gray_u8(np.full((16, 16, 4), 128, np.uint8)).shape == (16, 16)


def test_float_frames_in_grey_levels_in_0_1_and_in_decibels_all_come_out_as_pictures(tmp_path):
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (16, 1))
    np.testing.assert_array_equal(to_gray_u8(ramp), np.round(ramp * 255).astype(np.uint8))
    np.testing.assert_array_equal(to_gray_u8(ramp * 200), np.round(ramp * 200).astype(np.uint8))
    # a simulator's log-compressed envelope saved as float: -60 dB to 0 dB is black to white, not all black
    db = to_gray_u8(ramp * 60 - 60)
    assert db[0, 0] == 0 and db[0, -1] == 255 and np.all(np.diff(db[0].astype(int)) >= 0)
    # and read from a float TIFF the same way
    cv2.imwrite(str(tmp_path / "envelope.tif"), ramp * 60 - 60)
    frame = _read_all(open_source(str(tmp_path / "envelope.tif")))[0]
    np.testing.assert_array_equal(frame.image, db)


def test_capture_device_that_does_not_exist_reports_disconnected():
    source = CaptureSource("97", timeout_s=0.5)
    assert source.is_live
    with pytest.raises(SourceDisconnected, match="97"):
        source.open()
    with pytest.raises(SourceDisconnected):
        source.read()


def test_capture_source_reads_a_stream_url_and_raises_when_it_ends(tmp_path):
    # OpenCV opens files through the same VideoCapture call as URLs: a finite "stream".
    path = _write_video(tmp_path / "stream.avi", 3)
    source = CaptureSource(str(path))
    with source:
        frames = [source.read() for _ in range(3)]
        assert all(f.image.shape == (64, 96) for f in frames)
        with pytest.raises(SourceDisconnected):
            source.read()


def test_realtime_file_playback_counts_as_live(tmp_path):
    path = _write_video(tmp_path / "clip.avi", 2)
    assert open_source(str(path), realtime=True).is_live
    assert not open_source(str(path)).is_live
