"""Input/output benchmark: frames per second reading each format, OpenIGTLink latency on loopback.

Formats (each read through ``open_source`` to grey uint8 frames, as the
pipeline gets them): the real PLUS file (zlib MetaImage), a ``.seq.nrrd``
written from it, a multi-frame DICOM (native and JPEG baseline) and a video
file, all made from the real frames. OpenIGTLink: an IMAGE server sends the
real 820x616 frames at 30 fps to an :class:`IgtlSource` on 127.0.0.1; latency
is from the sender's timestamp (taken when the message is packed) to the
frame leaving ``read``. The result path (``IgtlResultSender`` -> a peer on
loopback) is timed the same way. Prints one JSON object.

    python bench/bench_io.py [--repeat N] [--igtl-seconds S]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from guidance.io.igtl import IgtlImageServer, IgtlResultSender, IgtlSource, read_message
from guidance.io.plus import read_sequence, write_sequence
from guidance.sources import open_source
from guidance.types import Detection, Frame, FrameResult, NeedleDetection, NeedleTrack, Trajectory

REPO = Path(__file__).resolve().parents[1]
PLUS_FILE = REPO.parent / "shared" / "data" / "plus" / "BoneUltrasound_L14.igs.mha"


def real_frames() -> tuple[np.ndarray, np.ndarray]:
    if PLUS_FILE.is_file():
        seq = read_sequence(PLUS_FILE)
        frames = np.stack([seq.frame(i) for i in range(len(seq))])
        return frames, seq.timestamps_s
    rng = np.random.default_rng(0)  # no shared data: speckle of the same size
    return rng.integers(0, 255, (21, 616, 820), dtype=np.uint8), np.arange(21) / 11.6


def fps_reading(spec: str, repeat: int, **options) -> dict:
    """Open the source, read every frame, ``repeat`` times; best and median frames per second."""
    rates, n = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        with open_source(spec, **options) as src:
            n = 0
            while src.read() is not None:
                n += 1
        rates.append(n / (time.perf_counter() - t0))
    return {"frames": n, "fps_median": round(statistics.median(rates), 1), "fps_best": round(max(rates), 1)}


def write_dicom(path: Path, frames: np.ndarray, jpeg: bool) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, UltrasoundMultiFrameImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns = frames.shape[1:3]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames, ds.FrameTime = len(frames), 33.3
    if jpeg:
        ds.PixelData = encapsulate([cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
                                    for f in frames])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = frames.tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def formats(tmp: Path, frames: np.ndarray, ts: np.ndarray, repeat: int) -> dict:
    out = {}
    if PLUS_FILE.is_file():
        out["plus_mha_zlib_real"] = fps_reading(str(PLUS_FILE), repeat)
    nrrd = write_sequence(tmp / "bone.seq.nrrd", frames, timestamps_s=ts, spacing_mm=(0.085, 0.085))
    out["plus_seq_nrrd_gzip"] = fps_reading(str(nrrd), repeat)
    raw_mha = write_sequence(tmp / "bone_raw.mha", frames, timestamps_s=ts, compress=False)
    out["plus_mha_raw"] = fps_reading(str(raw_mha), repeat)
    cine = np.concatenate([frames] * 5)  # 105 frames
    out["dicom_multiframe_native"] = fps_reading(str(write_dicom(tmp / "cine.dcm", cine, False)), repeat)
    out["dicom_multiframe_jpeg_baseline"] = fps_reading(str(write_dicom(tmp / "cine_jpeg.dcm", cine, True)), repeat)
    video = tmp / "cine.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (frames.shape[2], frames.shape[1]))
    for f in cine:
        writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    writer.release()
    out["video_avi_mjpg"] = fps_reading(str(video), repeat)
    out["_frame_size_px"] = [int(frames.shape[2]), int(frames.shape[1])]
    return out


def _pcts(values_ms: list[float]) -> dict:
    a = np.asarray(values_ms)
    if not a.size:
        return {"n": 0}
    return {"n": int(a.size), "p50": round(float(np.percentile(a, 50)), 2), "p95": round(float(np.percentile(a, 95)), 2),
            "max": round(float(a.max()), 2)}


def igtl_images(frames: np.ndarray, seconds: float, fps: float = 30.0) -> dict:
    """Images 820x616 at 30 fps: server -> IgtlSource on loopback."""
    latencies, received = [], 0
    with IgtlImageServer(port=0) as server, IgtlSource(f"igtl://127.0.0.1:{server.port}", timeout_s=2.0) as src:
        stop = threading.Event()
        sent = [0]

        def pump():
            server.wait_for_client(5)
            period, due, i = 1.0 / fps, time.monotonic(), 0
            while not stop.is_set():
                frame = Frame(frames[i % len(frames)], 0.0, i, i, (0.085, 0.085), "bench")
                server.send_frame(frame)  # timestamp = time.time() when packed
                sent[0] += 1
                i += 1
                due += period
                time.sleep(max(0.0, due - time.monotonic()))

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            f = src.read()
            latencies.append((time.time() - f.timestamp_s) * 1000.0)
            received += 1
        stop.set()
        t.join(2)
    return {"fps_sent": fps, "frames_sent": sent[0], "frames_received": received,
            "latency_ms": _pcts(latencies[5:])}  # skip connection warm-up


def igtl_results(seconds: float, fps: float = 30.0) -> dict:
    """Results at 30 fps: IgtlResultSender -> a peer on loopback (time from send() to all messages read)."""
    frame = Frame(np.zeros((616, 820), np.uint8), 0.0, 0, 0, (0.085, 0.085), "bench")
    needle = NeedleDetection((400.0, 300.0), (100.0, 100.0), 0.9)
    result = FrameResult(frame=frame, detection=Detection(needle, None), track=NeedleTrack("tracking", needle),
                         trajectory=Trajectory((500.0, 400.0), 12.0, 141.0, 45.0))
    latencies = []
    with IgtlResultSender(port=0) as sender:
        sock = socket.create_connection(("127.0.0.1", sender.port))
        sock.settimeout(1.0)
        sender.server.wait_for_client(5)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            sender.send(result)
            while True:  # GuidanceRecord is the last message of a result
                fields, _ = read_message(sock)
                if fields["device_name"] == "GuidanceRecord":
                    break
            latencies.append((time.perf_counter() - t0) * 1000.0)
            time.sleep(max(0.0, 1.0 / fps - (time.perf_counter() - t0)))
        sock.close()
    return {"fps": fps, "latency_ms": _pcts(latencies[3:])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--igtl-seconds", type=float, default=5.0)
    args = ap.parse_args()
    logging.getLogger("guidance.io.dicom").setLevel(logging.ERROR)  # "no regions to mask" on every open
    frames, ts = real_frames()
    with tempfile.TemporaryDirectory(prefix="bench-io-") as tmp:
        read = formats(Path(tmp), frames, ts, args.repeat)
    report = {
        "read_fps": read,
        "igtl_images_loopback": igtl_images(frames, args.igtl_seconds),
        "igtl_results_loopback": igtl_results(args.igtl_seconds),
        "cpu_count": os.cpu_count(),
        "load_avg": [round(v, 2) for v in os.getloadavg()],
        "shared_data": PLUS_FILE.is_file(),
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
