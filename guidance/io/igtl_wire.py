"""OpenIGTLink on the wire: message framing and validation, and a multi-peer server.

Messages are encoded and decoded by pyigtl; the socket handling is ours (see
:mod:`guidance.io.igtl` for why). :func:`parse_header` and
:func:`decode_body` turn bytes into messages or raise
:class:`IgtlProtocolError` (an :class:`~guidance.errors.InputError`) when
the bytes are not OpenIGTLink.
"""

from __future__ import annotations

import logging
import re
import select
import socket
import struct
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from ..errors import InputError

log = logging.getLogger("guidance.io.igtl")

DEFAULT_IMAGE_PORT = 18944
DEFAULT_RESULT_PORT = 18945
HEADER = struct.Struct("> H 12s 20s I I Q Q")
MAX_BODY_BYTES = 256 * 1024 * 1024
"""Largest body accepted (a 4K RGB frame is 25 MB); anything larger is garbage."""
_TYPE_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,11}")


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
        except (OSError, OverflowError) as exc:  # OverflowError: a port outside 0-65535
            reason = getattr(exc, "strerror", None) or exc
            raise InputError(f"{what}: cannot listen on {host}:{port} ({reason})") from None
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
