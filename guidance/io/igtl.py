"""OpenIGTLink: ultrasound images in from a PLUS server, guidance results out to 3D Slicer.

Messages are encoded and decoded by pyigtl. The sockets are ours: pyigtl's
client does not notice a server that went away, prints tracebacks on bad
input and its server takes over the process's signal handlers and serves one
peer at a time. Here a lost server is reconnected with backoff, a peer that
sends bytes that are not OpenIGTLink (bad header, implausible size, CRC
mismatch) gets one clear log line and a new connection, and the result
server serves any number of peers (3D Slicer, scripts) and drops dead ones.

Coordinates sent to Slicer follow PLUS's convention for the ``Image``
coordinate system: image pixels (x right, y down, z = 0), so that a parent
``ImageToProbe`` / IJK-to-RAS transform maps them into the scene. Pass
``units="mm"`` to the sender to scale by the frame's pixel spacing instead.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time

import numpy as np

from ..errors import InputError, SourceDisconnected
from ..sources.base import SourceBase, to_gray_u8
from ..types import FrameResult
from .igtl_wire import (DEFAULT_IMAGE_PORT, DEFAULT_RESULT_PORT, HEADER, MAX_BODY_BYTES, IgtlProtocolError,
                        IgtlServer, decode_body, parse_header, parse_spec, read_message)

__all__ = ["IgtlSource", "IgtlResultSender", "IgtlImageServer", "IgtlServer", "IgtlProtocolError", "parse_spec",
           "parse_header", "decode_body", "read_message", "HEADER", "MAX_BODY_BYTES", "DEFAULT_IMAGE_PORT",
           "DEFAULT_RESULT_PORT"]

log = logging.getLogger(__name__)

STRING_MAX_BYTES = 65000


def image_to_frame_parts(message) -> tuple[np.ndarray, tuple[float, float] | None]:
    """(image (H, W) or (H, W, C) BGR-ordered, spacing_mm) from a pyigtl ImageMessage."""
    img = np.asarray(message.image)  # pyigtl: (k, j, i) or (k, j, i, components)
    m = np.asarray(message.ijk_to_world_matrix, dtype=float)
    col_x, col_y = 0, 1
    if img.ndim not in (3, 4):
        raise IgtlProtocolError(f"IMAGE of shape {img.shape} is not an image")
    if img.shape[0] == 1:  # one slice: (j, i) = (rows, columns), as PLUS and Slicer send
        img = img[0]
    elif img.shape[2] == 1:  # pyigtl's packing of a 2-D array: (k, j) = (rows, columns)
        img = img[:, :, 0]
        col_x, col_y = 1, 2
    else:
        raise IgtlProtocolError(f"IMAGE of {img.shape[0]} slices is a volume, not an ultrasound frame")
    if not img.dtype.isnative:  # big-endian pixels (OpenIGTLink allows both)
        img = img.astype(img.dtype.newbyteorder("="))
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = np.ascontiguousarray(img[..., 2::-1])  # RGB(A) -> BGR
    sx, sy = float(np.linalg.norm(m[:3, col_x])), float(np.linalg.norm(m[:3, col_y]))
    spacing = None
    if all(math.isfinite(v) and v > 0 for v in (sx, sy)) and not (abs(sx - 1) < 1e-9 and abs(sy - 1) < 1e-9):
        spacing = (float(f"{sx:.6g}"), float(f"{sy:.6g}"))  # float32 on the wire; 1 x 1 is a placeholder
    return img, spacing


class IgtlSource(SourceBase):
    """Live frames from an OpenIGTLink server sending IMAGE messages (PLUS, a scanner, Slicer).

    A background thread keeps a connection to ``igtl://host:port``, reconnects
    with backoff when the server goes away or sends garbage, and keeps only
    the newest image. ``read`` returns each new image once; when none arrives
    within ``timeout_s`` it raises :class:`SourceDisconnected` saying why
    (server unreachable, connection lost, not OpenIGTLink, no images). The
    connection keeps retrying meanwhile, so reading again resumes as soon as
    images flow.

    Frames: the first slice of the image, grey uint8; ``spacing_mm`` from the
    IMAGE matrix (unless given); ``timestamp_s`` the sender's timestamp
    (seconds since 1970 for PLUS); ``index`` counts images received.

    Parameters
    ----------
    spec : str
        ``igtl://HOST:PORT`` (port 18944 by default).
    device_name : str, optional
        Only take IMAGE messages of this device (e.g. ``Image_Reference``).
    timeout_s : float
        How long ``read`` waits for a new image.
    spacing_mm : float or (float, float), optional
        Override the spacing from the messages.
    """

    is_live = True

    def __init__(self, spec, *, device_name: str | None = None, timeout_s: float = 1.0, spacing_mm=None,
                 max_backoff_s: float = 2.0, **_ignored) -> None:
        super().__init__()
        from ..sources.opencv import as_spacing

        self.name = str(spec)
        self.host, self.port = parse_spec(spec)
        self.device_name = device_name or None
        self.timeout_s = float(timeout_s)
        self.max_backoff_s = float(max_backoff_s)
        self._override = as_spacing(spacing_mm, self.name)
        self._cond = threading.Condition()
        self._latest: tuple[int, Any] | None = None
        self._received = 0
        self._delivered = 0
        self._state = "not connected yet"
        self._last_logged: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._size: tuple[int, int] | None = None
        self.connected = False

    @property
    def frame_size_px(self) -> tuple[int, int] | None:
        return self._size

    def open(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"igtl-in {self.host}:{self.port}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=3.0)
            self._thread = None
        with self._cond:
            self._cond.notify_all()

    # --- receiving thread ---------------------------------------------------------------------
    def _problem(self, text: str, level: int = logging.WARNING) -> None:
        with self._cond:
            self._state = text
        if text != self._last_logged:  # one line per distinct problem, not one per retry
            self._last_logged = text
            log.log(level, "%s: %s", self.name, text)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                sock = socket.create_connection((self.host, self.port), timeout=1.0)
            except OSError as exc:
                self._problem(f"cannot connect ({exc.strerror or type(exc).__name__}); retrying", logging.INFO)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            sock.settimeout(0.2)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            self.connected = True
            with self._cond:
                self._state = "connected, waiting for IMAGE messages"
            try:
                while not self._stop.is_set():
                    fields, message = read_message(sock, self._stop)
                    if message is None or fields["message_type"] != "IMAGE":
                        continue
                    if self.device_name and fields["device_name"] != self.device_name:
                        continue
                    with self._cond:
                        self._received += 1
                        self._latest = (self._received, message)
                        self._state = "receiving"
                        self._cond.notify_all()
                    backoff = 0.1
                    self._last_logged = None
            except IgtlProtocolError as exc:
                self._problem(f"peer at {self.host}:{self.port} sent data that is not OpenIGTLink ({exc}); "
                              "reconnecting")
            except (ConnectionError, OSError) as exc:
                if not self._stop.is_set():
                    self._problem(f"connection lost ({exc}); reconnecting", logging.INFO)
            finally:
                self.connected = False
                self._sock = None
                sock.close()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    # --- reading ------------------------------------------------------------------------------
    def read(self):
        self.open()
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            while self._latest is None or self._latest[0] <= self._delivered:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    raise SourceDisconnected(f"{self.name}: no image for {self.timeout_s:.1f} s ({self._state})")
                self._cond.wait(left)
            number, message = self._latest
            self._delivered = number
        image, spacing = image_to_frame_parts(message)
        grey = to_gray_u8(image, self.name)
        self._size = (grey.shape[1], grey.shape[0])
        return self.make_frame(grey, float(message.timestamp), number - 1, self._override or spacing)


# --- results to 3D Slicer ---------------------------------------------------------------------

def _status_text(result: FrameResult) -> str:
    parts = []
    track = result.track
    needle = result.needle
    if needle is None:
        parts.append("needle lost" if track is not None else "no needle")
    else:
        parts.append(f"needle {track.state if track is not None else 'seen'}")
        parts.append(f"angle {needle.angle_deg:.1f} deg")
    target = result.target
    parts.append(f"target {target.kind}" if target is not None else "no target")
    tr = result.trajectory
    if tr is not None:
        parts.append(f"distance {tr.distance_mm:.1f} mm" if tr.distance_mm is not None
                     else f"distance {tr.distance_px:.0f} px")
        parts.append(f"approach {tr.approach_deg:.0f} deg")
    if result.alerts:
        parts.append("alerts: " + ",".join(result.alerts))
    return " | ".join(parts)


class IgtlImageServer(IgtlServer):
    """Serves frames as OpenIGTLink IMAGE messages, as a PLUS server does (port 18944 by default).

    ``send_frame(frame)`` packs the grey frame with its spacing in the IMAGE
    matrix (identity when unknown) and the current time as timestamp.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_IMAGE_PORT, *, device_name: str = "Image_Reference",
                 **kw) -> None:
        super().__init__(host, port, what="OpenIGTLink image server", **kw)
        self.device_name = device_name

    def send_frame(self, frame, timestamp: float | None = None) -> int:
        from pyigtl import ImageMessage

        sx, sy = frame.spacing_mm or (1.0, 1.0)
        matrix = np.diag([sx, sy, 1.0, 1.0])
        msg = ImageMessage(frame.image[np.newaxis], ijk_to_world_matrix=matrix, device_name=self.device_name,
                           timestamp=time.time() if timestamp is None else timestamp)
        return self.broadcast(msg.pack())


class IgtlResultSender:
    """Publishes guidance results over OpenIGTLink for 3D Slicer (OpenIGTLinkIF, as client).

    Binds ``host:port`` (127.0.0.1 by default: other machines cannot connect
    unless you bind another interface on purpose). Every peer gets, for each
    result passed to :meth:`send`:

    - TRANSFORM ``NeedleTipToImage``: origin at the needle tip, +x along the
      shaft toward the tip (only while a needle is shown);
    - POINT ``Intercept``: where the needle's line meets the target surface;
    - POINT ``Target``: the user's target point, when set;
    - POINT ``TargetSurface``: up to 32 points along the target surface;
    - STRING ``GuidanceStatus``: one line for people ("needle tracking |
      angle 155.8 deg | target cartilage | distance 7.9 mm | ...");
    - STRING ``GuidanceRecord``: the frame's contract line (JSON) for scripts.

    :meth:`send` never blocks: a sender thread takes the newest result, so a
    slow peer delays nobody and is dropped when it stops reading.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_RESULT_PORT, *, units: str = "px",
                 send_timeout_s: float = 0.5) -> None:
        if units not in ("px", "mm"):
            raise InputError(f"units {units!r}: expected 'px' or 'mm'")
        self.units = units
        self.server = IgtlServer(host, port, send_timeout_s=send_timeout_s, what="OpenIGTLink results")
        self.address, self.host, self.port = self.server.address, self.server.host, self.server.port
        self._cond = threading.Condition()
        self._pending: FrameResult | None = None
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._send_loop, name="igtl-send", daemon=True)
        self._thread.start()

    @property
    def clients(self) -> int:
        return self.server.clients

    def send(self, result: FrameResult) -> None:
        """Queue ``result`` for sending (replaces one not yet sent). Safe to call from any thread."""
        with self._cond:
            self._pending = result
            self._cond.notify()

    __call__ = send  # usable directly as a pipeline consumer

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2.0)
        self.server.close()

    def __enter__(self) -> "IgtlResultSender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- message building ---------------------------------------------------------------------
    def messages_for(self, result: FrameResult) -> list:
        """The pyigtl messages that describe one result (see the class notes)."""
        from pyigtl import PointMessage, StringMessage, TransformMessage

        from ..contract import dumps, result_to_record
        from .plus_export import needle_transform

        scale = np.array([1.0, 1.0])
        if self.units == "mm" and result.frame.spacing_mm is not None:
            scale = np.asarray(result.frame.spacing_mm, dtype=float)

        def xyz(p) -> list[float]:
            return [float(p[0]) * scale[0], float(p[1]) * scale[1], 0.0]

        now = time.time()
        out = []
        needle = result.needle
        if needle is not None:
            m = needle_transform(needle.tip_px, needle.angle_deg)
            m[:2, 3] *= scale
            out.append(TransformMessage(m, timestamp=now, device_name="NeedleTipToImage"))
        tr = result.trajectory
        if tr is not None:
            out.append(PointMessage([xyz(tr.intercept_px)], names=["Intercept"], timestamp=now,
                                    device_name="Intercept"))
            if tr.target_point_px is not None:
                out.append(PointMessage([xyz(tr.target_point_px)], names=["Target"], timestamp=now,
                                        device_name="Target"))
        target = result.target
        if target is not None and len(target.surface_px):
            s = np.asarray(target.surface_px, dtype=float).reshape(-1, 2)
            pick = s[np.linspace(0, len(s) - 1, min(32, len(s))).round().astype(int)]
            out.append(PointMessage([xyz(p) for p in pick], names=[f"S{i}" for i in range(len(pick))],
                                    groups="TargetSurface", timestamp=now, device_name="TargetSurface"))
        out.append(StringMessage(_status_text(result), timestamp=now, device_name="GuidanceStatus"))
        record = result_to_record(result)
        text = dumps(record)
        if len(text) > STRING_MAX_BYTES and record.get("target"):
            record["target"] = {k: v for k, v in record["target"].items() if not k.endswith("_px")}
            text = dumps(record)
        if len(text) <= STRING_MAX_BYTES:
            out.append(StringMessage(text, timestamp=now, device_name="GuidanceRecord"))
        return out

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                if self._pending is None:
                    self._cond.wait(0.2)
                result, self._pending = self._pending, None
            if result is None:
                self.server.broadcast(b"")  # notices peers that left
                continue
            try:
                payload = b"".join(m.pack() for m in self.messages_for(result))
            except Exception:  # noqa: BLE001 - a result we cannot encode must not stop the sender
                log.exception("cannot encode result of frame %d for OpenIGTLink", result.frame.index)
                continue
            self.server.broadcast(payload)
            self.sent += 1
