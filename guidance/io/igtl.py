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
import re
import select
import socket
import struct
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ..errors import InputError, SourceDisconnected
from ..sources.base import SourceBase, to_gray_u8
from ..types import FrameResult

log = logging.getLogger(__name__)

DEFAULT_IMAGE_PORT = 18944
DEFAULT_RESULT_PORT = 18945
HEADER = struct.Struct("> H 12s 20s I I Q Q")
MAX_BODY_BYTES = 256 * 1024 * 1024
"""Largest body accepted (a 4K RGB frame is 25 MB); anything larger is garbage."""
_TYPE_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,11}")
STRING_MAX_BYTES = 65000


class IgtlProtocolError(InputError):
    """A peer sent bytes that are not a valid OpenIGTLink message."""


def parse_spec(spec: str, default_port: int = DEFAULT_IMAGE_PORT) -> tuple[str, int]:
    """``igtl://host:port`` -> (host, port); the port defaults to 18944."""
    text = str(spec).strip()
    parts = urlsplit(text if "://" in text else f"igtl://{text}")
    if parts.scheme.lower() != "igtl":
        raise InputError(f"{spec}: expected igtl://HOST:PORT")
    try:
        port = parts.port or default_port
    except ValueError:
        raise InputError(f"{spec}: port is not a number from 1 to 65535") from None
    host = parts.hostname or "127.0.0.1"
    return host, int(port)


def _recv_exact(sock: socket.socket, n: int, stop: threading.Event | None, stall_s: float | None) -> bytes:
    """Exactly ``n`` bytes; ``ConnectionError`` on EOF, on ``stop``, or when the peer stalls mid-message."""
    chunks, got = [], 0
    last = time.monotonic()
    while got < n:
        if stop is not None and stop.is_set():
            raise ConnectionError("stopped")
        try:
            chunk = sock.recv(min(n - got, 1 << 20))
        except socket.timeout:
            if stall_s is not None and got and time.monotonic() - last > stall_s:
                raise ConnectionError(f"peer stalled for {stall_s:.0f} s in the middle of a message") from None
            continue
        if not chunk:
            raise ConnectionError("connection closed by the peer")
        chunks.append(chunk)
        got += len(chunk)
        last = time.monotonic()
    return b"".join(chunks)


def parse_header(raw: bytes) -> dict[str, Any]:
    """Validate a 58-byte OpenIGTLink header; :class:`IgtlProtocolError` when it is not one."""
    if len(raw) != HEADER.size:
        raise IgtlProtocolError(f"header of {len(raw)} bytes, expected {HEADER.size}")
    version, mtype, device, sec, frac, body_size, crc = HEADER.unpack(raw)
    if version not in (1, 2, 3):
        raise IgtlProtocolError(f"header version {version} (expected 1 to 3)")
    try:
        type_name = mtype.rstrip(b"\0").decode("ascii")
        device_name = device.split(b"\0", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        raise IgtlProtocolError("message type or device name is not text") from None
    if not _TYPE_NAME.fullmatch(type_name):
        raise IgtlProtocolError(f"message type {type_name[:12]!r} is not an OpenIGTLink type name")
    if body_size > MAX_BODY_BYTES:
        raise IgtlProtocolError(f"{type_name} message announces {body_size} bytes (limit {MAX_BODY_BYTES})")
    timestamp = sec + frac / 2.0 ** 32
    return {"header_version": version, "message_type": type_name, "device_name": device_name,
            "timestamp": timestamp, "body_size": body_size, "crc": crc}


def decode_body(fields: dict[str, Any], body: bytes):
    """A pyigtl message from a validated header and its body; None for a type we do not read.

    :class:`IgtlProtocolError` when the CRC or the body does not match.
    """
    from pyigtl.messages import CRC64, MessageBase

    if fields["crc"] and CRC64(body) != fields["crc"]:
        raise IgtlProtocolError(f"{fields['message_type']} message with a wrong CRC")
    message = MessageBase.create_message(fields["message_type"])
    if message is None:
        return None  # STATUS, CAPABILITY, ...: not for us
    try:
        message.unpack(fields, body)
    except Exception as exc:  # noqa: BLE001 - pyigtl raises struct.error, ValueError, KeyError, ...
        raise IgtlProtocolError(f"{fields['message_type']} message body cannot be decoded "
                                f"({type(exc).__name__})") from None
    return message


def read_message(sock: socket.socket, stop: threading.Event | None = None, stall_s: float = 5.0):
    """Read one message: ``(header fields, pyigtl message or None)``."""
    fields = parse_header(_recv_exact(sock, HEADER.size, stop, None))
    body = _recv_exact(sock, fields["body_size"], stop, stall_s) if fields["body_size"] else b""
    return fields, decode_body(fields, body)


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


class IgtlServer:
    """A TCP server that sends OpenIGTLink bytes to every connected peer.

    Binds ``host:port`` (127.0.0.1 by default; port 0 picks a free one, see
    ``port``). Accepts any number of peers, discards what they send (Slicer's
    STATUS, ...), and drops a peer that closed or stopped reading.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_RESULT_PORT, *, send_timeout_s: float = 0.5,
                 what: str = "OpenIGTLink server") -> None:
        self.send_timeout_s = float(send_timeout_s)
        try:
            self._server = socket.create_server((host, int(port)))
        except OSError as exc:
            raise InputError(f"{what}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        self._server.settimeout(0.2)
        self.address = self._server.getsockname()[:2]
        self.host, self.port = self.address
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="igtl-accept", daemon=True)
        self._accept_thread.start()
        log.info("%s on %s:%d", what, self.host, self.port)

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def wait_for_client(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.clients and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.01)
        return self.clients > 0

    def broadcast(self, payload: bytes) -> int:
        """Send ``payload`` to every peer; returns how many got it."""
        self._drain()
        with self._lock:
            clients = list(self._clients)
        sent = 0
        for conn in clients:
            try:
                conn.sendall(payload)
                sent += 1
            except (socket.timeout, OSError) as exc:
                self._drop(conn, f"not reading ({type(exc).__name__})")
        return sent

    def close(self) -> None:
        self._stop.set()
        self._accept_thread.join(timeout=2.0)
        self._server.close()
        with self._lock:
            for c in self._clients:
                c.close()
            self._clients.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(self.send_timeout_s)
            with self._lock:
                self._clients.append(conn)
            log.info("OpenIGTLink peer connected from %s:%d", *peer[:2])

    def _drop(self, conn: socket.socket, why: str) -> None:
        with self._lock:
            if conn in self._clients:
                self._clients.remove(conn)
        conn.close()
        log.info("OpenIGTLink peer dropped: %s", why)

    def _drain(self) -> None:
        """Read and discard what peers send; notice the ones that left."""
        with self._lock:
            clients = list(self._clients)
        if not clients:
            return
        try:
            readable, _, _ = select.select(clients, [], [], 0)
        except (OSError, ValueError):
            readable = clients
        for conn in readable:
            try:
                if not conn.recv(1 << 16):
                    self._drop(conn, "closed the connection")
            except socket.timeout:
                pass
            except OSError as exc:
                self._drop(conn, str(exc))


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
        from .plus import needle_transform

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
