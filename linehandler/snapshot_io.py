"""Initial-image client over SoupBinTCP: a non-blocking state machine driven by the handler's loop.

Login, then record images (`I`, and directory entries) as sequenced data, then the end
of image (`G`) with the sequence number the image is consistent with. Any failure
(refused, rejected, closed, malformed, timed out) is reported to the core as a reason,
which moves on to the next server later; the live stream never waits for it.
"""

from __future__ import annotations

import errno
import socket
import time

from decoders import CODECS, END_OF_IMAGE, DecodeError, soup

from .stream import NO_ACTIONS

__all__ = ["ImageClient"]

(_MESSAGE,) = soup.SOUP.by_name["sequenced_data"].slots("message")
(_REJECT_CODE,) = soup.SOUP.by_name["login_rejected"].slots("reject_reason_code")
(_ACCEPTED_SESSION,) = soup.SOUP.by_name["login_accepted"].slots("session")
(_IMAGE_SEQUENCE,) = CODECS.by_name["end_of_image"].slots("sequence_number")
_NATIVE = CODECS.native  # None on the python backend (MD_BACKEND=python, or no build)


class ImageClient:
    """One image fetch from `address`; register `sock` for reading (and writing while connecting)."""

    def __init__(self, address: tuple[str, int], session: bytes, username: str = "", password: str = "", timeout_s: float = 30.0) -> None:
        self.address = address
        self.session = session
        self.username = username
        self.password = password
        self.deadline = time.monotonic() + timeout_s
        self.framer = soup.SoupFramer()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.connected = False
        self.done = False
        self.records = 0
        self.logout_errors = 0
        rc = self.sock.connect_ex(address)
        if rc not in (0, errno.EINPROGRESS):
            self.sock.close()
            raise OSError(rc, f"connect to {address[0]}:{address[1]}: {errno.errorcode.get(rc, rc)}")

    def on_writable(self) -> None:
        """The connect finished (or failed): send the login."""
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"connect to {self.address[0]}:{self.address[1]}: {errno.errorcode.get(err, err)}")
        self.connected = True
        self.sock.send(soup.login_request(self.username, self.password, self.session, 1))

    def on_readable(self, core, now_ns: int) -> list:
        """Read what arrived and feed the core; returns the core's actions. Raises OSError/DecodeError on failure."""
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("image server closed the connection before the end of the image")
        framer = self.framer
        framer.append(data)
        load = core.image_loader() if _NATIVE is not None else None  # straight into the replica's slots, where it can
        while True:
            if _NATIVE is not None:  # the records, in one C call per run of them; the rest one packet at a time below
                if load is not None:
                    self.records += framer.load_into(load)
                msgs = framer.take_messages(_NATIVE)
                if msgs:
                    core.on_image_messages(msgs)
                    self.records += len(msgs)
            packet = framer.next_packet()
            if packet is None:
                return NO_ACTIONS
            name, fields = soup.decode_packet(packet)
            if name == "sequenced_data":
                msg = CODECS.decode(fields[_MESSAGE])
                if msg[0] == END_OF_IMAGE:
                    self.done = True
                    return core.on_image_end(msg[_IMAGE_SEQUENCE], now_ns)
                core.on_image_messages([msg])
                self.records += 1
            elif name == "login_rejected":
                raise ConnectionRefusedError(f"image login rejected: {chr(fields[_REJECT_CODE])}")
            elif name == "login_accepted":
                if bytes(fields[_ACCEPTED_SESSION]) != self.session:
                    raise ConnectionError(f"image server is on session {bytes(fields[_ACCEPTED_SESSION])!r}, not {self.session!r}")
            elif name in ("end_of_session",):
                raise ConnectionError("image server ended the session before the end of the image")
            elif name in ("server_heartbeat", "debug", "unsequenced_data"):
                continue
            else:
                raise DecodeError("bad_packet", 0, f"unexpected {name} from an image server")

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def close(self) -> None:
        if not self.done and self.connected:
            try:
                self.sock.send(soup.logout_request())
            except OSError:
                self.logout_errors += 1  # closing anyway; the logout is a courtesy
        self.sock.close()
