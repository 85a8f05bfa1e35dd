"""The local status socket: each daemon answers a JSON snapshot of its figures on a Unix socket.

`python -m linehandler status` (and the same for the other daemons) connects, reads one
JSON document and closes; the daemon serves it from its own event loop without
blocking (the snapshot is small, and a client that does not read is dropped).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["StatusServer", "fetch_status"]


class StatusServer:
    """Non-blocking listener; register `sock` with the daemon's selector and call `on_readable`."""

    def __init__(self, path: str, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self.snapshot = snapshot
        self.errors = 0
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.setblocking(False)

    def on_readable(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        try:
            conn.setblocking(False)
            conn.send(json.dumps(self.snapshot()).encode() + b"\n")
        except OSError:
            self.errors += 1  # a client that went away or does not read: counted, never blocks the loop
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
