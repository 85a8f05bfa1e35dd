"""Initial images over SoupBinTCP, sans-I/O: the login dialogue and the image stream.

Consistency: an image is taken in one step of the server's single loop from the
mirrored image and the sequence number it reflects (every message up to and including
`sequence`), so it equals the publisher's state at exactly that sequence. The encoded
image is one immutable blob shared by every client that asks at the same sequence, so
ten late joiners cost one encoding and no memory per client beyond a read offset.
"""

from __future__ import annotations

from dataclasses import dataclass

from decoders import CODECS, DecodeError, soup
from mdcommon.image import Image

__all__ = ["ImageSnapshot", "take_snapshot", "ImageSession"]


@dataclass(frozen=True)
class ImageSnapshot:
    session: bytes
    sequence: int
    instruments: int
    blob: bytes  # SoupBinTCP sequenced-data packets: every record image, then the end of image


def take_snapshot(image: Image, session: bytes, sequence: int, timestamp_ns: int) -> ImageSnapshot:
    encode = CODECS.encode
    parts = []
    for msg in image.record_messages(timestamp_ns):
        parts.append(soup.sequenced_data(encode(msg)))
    parts.append(soup.sequenced_data(encode((b"G", timestamp_ns, sequence, len(image)))))
    return ImageSnapshot(session, sequence, len(image), b"".join(parts))


class ImageSession:
    """One client: feed it received bytes; it says what to send and whether to close.

    States: "login" (waiting for the login request), "streaming" (image being sent, the
    shell drains `pending`), "closed". `snapshot` is called once, at login.
    """

    def __init__(self, snapshot_provider, username: str = "", password: str = "") -> None:
        self.snapshot_provider = snapshot_provider
        self.username = soup.pad_alpha(username, 6) if username else None
        self.password = soup.pad_alpha(password, 10) if password else None
        self.framer = soup.SoupFramer()
        self.state = "login"
        self.snapshot: ImageSnapshot | None = None
        self.close_reason = ""

    def on_data(self, data: bytes) -> list[bytes | memoryview]:
        """Chunks to send, in order; after a reject or logout `state` becomes "closed"."""
        out: list[bytes | memoryview] = []
        try:
            packets = self.framer.feed(data)
        except DecodeError as exc:
            return self._close(f"malformed: {exc}")
        for packet in packets:
            try:
                name, fields = soup.decode_packet(packet)
            except DecodeError as exc:
                return out + self._close(f"malformed: {exc}")
            if name == "login_request" and self.state == "login":
                _, _, user, password, session, _seq = fields
                if self.username is not None and (user != self.username or password != self.password):
                    return out + [soup.login_rejected("not_authorized")] + self._close("not authorized")
                snap = self.snapshot_provider()
                if snap is None or (session.strip(b" ") and session != snap.session):
                    return out + [soup.login_rejected("session_not_available")] + self._close("session not available")
                self.snapshot = snap
                self.state = "streaming"
                out += [soup.login_accepted(snap.session, snap.sequence + 1), memoryview(snap.blob), soup.end_of_session()]
            elif name == "logout_request":
                return out + self._close("logout")
            elif name == "client_heartbeat":
                continue
            else:
                return out + self._close(f"unexpected {name} in state {self.state}")
        if self.framer.pending_bytes > 4096:
            return out + self._close("oversized pending input")
        return out

    def _close(self, reason: str) -> list[bytes]:
        self.state = "closed"
        self.close_reason = reason
        return []
