"""The local status socket: each daemon answers a JSON snapshot of its figures on a Unix socket.

`python -m linehandler status` (and the same for the other daemons) connects, reads one
JSON document and closes; the daemon serves it from its own event loop without
blocking (the snapshot is small, and a client that does not read is dropped).
"""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Callable
from typing import Any

__all__ = ["StatusServer", "fetch_status"]

SEND_TIMEOUT_S = 0.05  # the longest a status client can hold the daemon's loop


def _clear_stale_socket(path: str) -> None:
    """Remove a socket left by a daemon that died; refuse anything else at `path`: another daemon's live
    socket, or a file that is not a socket (a mistyped path must not delete someone's file)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"status socket path {path} exists and is not a socket: refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.2)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: a leftover
        return
    finally:
        probe.close()
    raise OSError(f"status socket {path} is in use by a running daemon")


class StatusServer:
    """Non-blocking listener; register `sock` with the daemon's selector and call `on_readable`."""

    def __init__(self, path: str, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self.snapshot = snapshot
        self.errors = 0
        _clear_stale_socket(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # owner only, from the moment it exists: figures are not for every local user
        try:
            self.sock.bind(path)
        finally:
            os.umask(old_umask)
        self.sock.listen(8)
        self.sock.setblocking(False)

    def on_readable(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        try:
            payload = json.dumps(self.snapshot()).encode() + b"\n"
            # whole or not at all: a send buffer that holds the document, and a bounded wait for a client that
            # reads slowly (the socket is the owner's alone); a client that does not read is dropped and counted
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max(len(payload) * 2, 65536))
            conn.settimeout(SEND_TIMEOUT_S)
            conn.sendall(payload)
        except OSError:
            self.errors += 1
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


def fetch_status(path: str, timeout_s: float = 2.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(path)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return json.loads(b"".join(chunks))
