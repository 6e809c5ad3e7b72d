"""OpenIGTLink on loopback with real pyigtl servers and clients: images in, results out."""

from __future__ import annotations

import logging
import math
import socket
import threading
import time

import numpy as np
import pyigtl
import pytest

from igtl_server import ImageServer, free_port, pattern, restore_signals  # noqa: F401 - a fixture

from guidance.errors import InputError, SourceDisconnected
from guidance.io.igtl import IgtlResultSender, IgtlSource, parse_spec
from guidance.sources import open_source
from guidance.types import (Detection, Frame, FrameResult, NeedleDetection, NeedleTrack, TargetDetection,
                            Trajectory)


def read_until(src, predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    errors = []
    while time.monotonic() < deadline:
        try:
            frame = src.read()
        except SourceDisconnected as exc:
            errors.append(str(exc))
            continue
        if predicate(frame):
            return frame, errors
    raise AssertionError(f"no matching frame in {timeout_s} s; errors: {errors[-3:]}")


def test_spec_parsing():
    assert parse_spec("igtl://10.0.0.5:18944") == ("10.0.0.5", 18944)
    assert parse_spec("igtl://localhost") == ("localhost", 18944)
    with pytest.raises(InputError):
        parse_spec("igtl://host:notaport")


def test_images_arrive_with_pixels_and_spacing(restore_signals):
    port = free_port()
    server = ImageServer(port, seed=1)
    src = open_source(f"igtl://127.0.0.1:{port}", timeout_s=1.0)
    assert isinstance(src, IgtlSource) and src.is_live
    try:
        with src:
            frame, _ = read_until(src, lambda f: True)
            second, _ = read_until(src, lambda f: True)
    finally:
        server.stop()
    assert np.array_equal(frame.image, server.image)
    assert frame.spacing_mm == pytest.approx((0.2, 0.3))
    assert abs(frame.timestamp_s - time.time()) < 30  # the sender's clock, seconds since 1970
    assert second.index > frame.index and second.seq == frame.seq + 1


def test_device_filter(restore_signals):
    port = free_port()
    server = ImageServer(port, seed=2, device="OtherImage")
    try:
        with IgtlSource(f"igtl://127.0.0.1:{port}", device_name="Image_Reference", timeout_s=0.5) as src:
            with pytest.raises(SourceDisconnected, match="no image"):
                src.read()
    finally:
        server.stop()


def test_server_restart_is_survived(restore_signals):
    port = free_port()
    first = ImageServer(port, seed=3)
    src = IgtlSource(f"igtl://127.0.0.1:{port}", timeout_s=0.5)
    try:
        src.open()
        read_until(src, lambda f: np.array_equal(f.image, first.image))
        first.stop()
        with pytest.raises(SourceDisconnected):
            for _ in range(20):  # the last queued image may still arrive; then the loss shows
                src.read()
        second = ImageServer(port, seed=4, spacing=(0.1, 0.1))
        try:
            frame, errors = read_until(src, lambda f: np.array_equal(f.image, second.image), timeout_s=15)
        finally:
            second.stop()
    finally:
        src.close()
    assert frame.spacing_mm == pytest.approx((0.1, 0.1))


def test_unreachable_server_says_so():
    port = free_port()
    with IgtlSource(f"igtl://127.0.0.1:{port}", timeout_s=0.4) as src:
        with pytest.raises(SourceDisconnected, match="cannot connect"):
            src.read()


def test_garbage_peer_gives_one_clear_message_and_no_crash(caplog):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def garbage_server():
        listener.settimeout(0.1)
        rng = np.random.default_rng(0)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            with conn:
                try:
                    conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + rng.bytes(4000))
                    time.sleep(0.05)
                except OSError:
                    pass

    t = threading.Thread(target=garbage_server, daemon=True)
    t.start()
    try:
        with caplog.at_level(logging.INFO, logger="guidance.io.igtl"):
            with IgtlSource(f"igtl://127.0.0.1:{port}", timeout_s=0.5, max_backoff_s=0.2) as src:
                for _ in range(3):
                    with pytest.raises(SourceDisconnected, match="not OpenIGTLink"):
                        src.read()
    finally:
        stop.set()
        t.join(2)
        listener.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "not OpenIGTLink" in warnings[0].getMessage()


def _result(tip=(40.0, 30.0), tail=(10.0, 10.0), spacing=(0.1, 0.1)) -> FrameResult:
    frame = Frame(np.zeros((64, 80), np.uint8), 1.5, 7, 7, spacing, "test")
    needle = NeedleDetection(tip, tail, 0.9)
    surface = np.stack([np.arange(0, 80, 2.0), np.full(40, 50.0)], axis=1)
    target = TargetDetection("cartilage", surface, surface + [0, 5], 2.0)
    traj = Trajectory(intercept_px=(55.0, 50.0), distance_mm=2.5, distance_px=25.0, approach_deg=33.7,
                      target_point_px=(60.0, 50.0))
    return FrameResult(frame=frame, detection=Detection(needle, target, "test"),
                       track=NeedleTrack("tracking", needle), trajectory=traj, alerts=("near_bone",))


def test_results_reach_a_pyigtl_client():
    with IgtlResultSender(port=0) as sender:
        assert sender.host == "127.0.0.1"
        client = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=sender.port)
        try:
            deadline = time.monotonic() + 5
            while sender.clients == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            received = {}
            while time.monotonic() < deadline and len(received) < 5:
                sender.send(_result())
                time.sleep(0.05)
                for m in client.get_latest_messages():
                    received[m.device_name] = m
        finally:
            client.stop()
    tf = received["NeedleTipToImage"]
    assert tf.message_type == "TRANSFORM"
    assert tf.matrix[:2, 3] == pytest.approx([40.0, 30.0])
    direction = np.array([30.0, 20.0]) / math.hypot(30.0, 20.0)
    assert tf.matrix[:2, 0] == pytest.approx(direction, abs=1e-5)
    assert received["Intercept"].message_type == "POINT"
    assert received["Intercept"].positions[0] == pytest.approx((55.0, 50.0, 0.0))
    assert received["Target"].positions[0] == pytest.approx((60.0, 50.0, 0.0))
    assert received["GuidanceStatus"].string.startswith("needle tracking")
    assert "distance 2.5 mm" in received["GuidanceStatus"].string and "near_bone" in received["GuidanceStatus"].string
    assert '"distance_mm": 2.5' in received["GuidanceRecord"].string


def test_result_sender_in_mm_and_without_needle():
    with IgtlResultSender(port=0, units="mm") as sender:
        msgs = {m.device_name: m for m in sender.messages_for(_result())}
        assert msgs["NeedleTipToImage"].matrix[:2, 3] == pytest.approx([4.0, 3.0])
        lost = _result()
        lost = FrameResult(frame=lost.frame, detection=Detection(None, lost.target), track=NeedleTrack("lost", None))
        names = {m.device_name for m in sender.messages_for(lost)}
        assert "NeedleTipToImage" not in names and "TargetSurface" in names
        status = [m for m in sender.messages_for(lost) if m.device_name == "GuidanceStatus"][0]
        assert status.string.startswith("needle lost")


def test_dead_peer_is_dropped_and_port_in_use_is_clear():
    with IgtlResultSender(port=0) as sender:
        peer = socket.create_connection(("127.0.0.1", sender.port))
        deadline = time.monotonic() + 5
        while sender.clients == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        peer.close()
        while sender.clients and time.monotonic() < deadline:
            sender.send(_result())
            time.sleep(0.05)
        assert sender.clients == 0
        with pytest.raises(InputError, match="cannot listen"):
            IgtlResultSender(port=sender.port)
    with pytest.raises(InputError, match="cannot listen on 127.0.0.1:99999"):  # a mistyped port
        IgtlResultSender(port=99999)


def test_our_image_server_speaks_to_pyigtl_and_to_our_source(restore_signals):
    from guidance.io.igtl import IgtlImageServer

    image = pattern(9)
    frame = Frame(image, 0.0, 0, 0, (0.085, 0.09), "test")
    with IgtlImageServer(port=0) as server:
        client = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=server.port)
        try:
            assert server.wait_for_client(5)
            msg = None
            deadline = time.monotonic() + 5
            while msg is None and time.monotonic() < deadline:
                server.send_frame(frame)
                msg = client.wait_for_message("Image_Reference", timeout=0.1)
        finally:
            client.stop()
        assert msg is not None and np.array_equal(msg.image[0], image)
        assert np.linalg.norm(msg.ijk_to_world_matrix[:3, 0]) == pytest.approx(0.085, abs=1e-6)
        with IgtlSource(f"igtl://127.0.0.1:{server.port}", timeout_s=0.2) as src:
            stop = threading.Event()

            def pump():
                while not stop.is_set():
                    server.send_frame(frame)
                    time.sleep(0.02)

            t = threading.Thread(target=pump, daemon=True)
            t.start()
            try:
                got, _ = read_until(src, lambda f: True)
            finally:
                stop.set()
                t.join(2)
    assert np.array_equal(got.image, image) and got.spacing_mm == (0.085, 0.09)


def test_live_pipeline_to_slicer_end_to_end(shared_data):
    """Real PLUS frames served over OpenIGTLink -> IgtlSource -> LivePipeline -> IgtlResultSender -> pyigtl client."""
    from guidance.io.igtl import IgtlImageServer
    from guidance.io.plus import read_sequence
    from guidance.pipeline import LivePipeline

    seq = read_sequence(shared_data / "plus" / "BoneUltrasound_L14.igs.mha")
    frames = [Frame(seq.frame(i), 0.0, i, i, (0.085, 0.085), "plus") for i in range(3)]
    with IgtlImageServer(port=0) as images, IgtlResultSender(port=0) as results:
        stop = threading.Event()

        def pump():
            i = 0
            while not stop.is_set():
                images.send_frame(frames[i % 3])
                i += 1
                time.sleep(1 / 30)

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        client = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=results.port)
        pipeline = LivePipeline(lambda: IgtlSource(f"igtl://127.0.0.1:{images.port}"), [])
        pipeline.add_consumer(results.send)
        try:
            with pipeline:
                record = client.wait_for_message("GuidanceRecord", timeout=10)
        finally:
            stop.set()
            t.join(2)
            client.stop()
    assert record is not None
    import json

    line = json.loads(record.string)
    assert line["spacing_mm"] == pytest.approx([0.085, 0.085]) and line["needle"] is None


def test_igtl_results_command_runs_and_a_dead_source_is_one_line(capsys):
    from guidance.cli import main

    assert main(["igtl-results", "--source", "sim", "--duration", "1.5", "--port", "0", "--model", "classical"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out and "state=running" in out[-1] and "peers=0" in out[-1]
    assert main(["igtl-results", "--source", "97", "--duration", "1", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("guidance igtl-results: capture device 97: cannot open")


def test_igtl_send_serves_a_file_from_its_first_frame_to_a_peer_that_connects_late(tmp_path, capsys):
    import cv2

    from guidance.cli import main

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:03d}.png"), pattern(i))
    port = free_port()
    status = []
    server = threading.Thread(target=lambda: status.append(main(
        ["igtl-send", str(folder), "--port", str(port), "--fps", "4", "--spacing", "0.1"])), daemon=True)
    server.start()
    time.sleep(1.0)  # 3D Slicer connects a while after the command starts
    client = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=port)
    got = []
    try:
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            msg = client.wait_for_message("Image_Reference", timeout=0.1)
            if msg is not None:
                got.append(msg.image[0].copy())
    finally:
        client.stop()
    server.join(10)
    assert status == [0]
    assert len(got) == 3 and all(np.array_equal(g, pattern(i)) for i, g in enumerate(got))
    err = capsys.readouterr().err
    assert "waiting for a peer" in err and "end of input after 3 frame(s); --loop starts it again" in err
