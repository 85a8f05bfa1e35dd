"""Initial images over SoupBinTCP, sans-I/O: the login dialogue and the image stream.

Consistency: an image is frozen in one step of the server's single loop, with the
sequence number it reflects (every message up to and including `sequence`); records
changed afterwards are read from their copy-on-write originals, so the image equals the
publisher's state at exactly that sequence while the mirror keeps applying live data.
Its encoded chunks are shared by every client that logs in while it is recent, so ten
late joiners cost one encoding and no memory per client beyond a read position.
"""

from __future__ import annotations

from decoders import CODECS, END_OF_IMAGE, DecodeError, build_codec, soup
from decoders.schema.framing import SoupHeader
from mdcommon.image import Image

__all__ = ["ImageSnapshot", "take_snapshot", "ImageSession"]


_SOUP_HEADER = build_codec("soup_header", SoupHeader).prefix  # packet_length, packet_type


class ImageSnapshot:
    """One image at `sequence`, encoded a step at a time into SoupBinTCP chunks shared by its clients.

    `freeze` on the image makes the copy-on-write point; `step` encodes the next records
    (as they were at the freeze) into a new chunk; the last chunk ends with the end of
    image. Clients read `chunks` as they grow, so the mirror never stops for a whole image.
    """

    def __init__(self, image: Image, session: bytes, sequence: int, timestamp_ns: int) -> None:
        self.image = image
        self.session = session
        self.sequence = sequence
        self.timestamp_ns = timestamp_ns
        self.ids, _ = image.freeze()
        self.instruments = len(self.ids)
        self.position = 0
        self.chunks: list[bytes] = []
        self.done = False

    def step(self, max_records: int = 4000) -> bool:
        """Encode up to `max_records` more; True while there is more to do."""
        if self.done:
            return False
        ids = self.ids
        stop = min(self.position + max_records, len(ids))
        ts = self.timestamp_ns
        header = _SOUP_HEADER.pack
        parts: list[bytes] = []
        for body in self.image.frozen_messages(ids[self.position : stop], ts, CODECS.encode):
            parts.append(header(len(body) + 1, b"S"))
            parts.append(body)
        self.position = stop
        if stop == len(ids):
            parts.append(soup.sequenced_data(CODECS.encode((END_OF_IMAGE, ts, self.sequence, self.instruments))))
            self.done = True
            self.image.thaw()
        self.chunks.append(b"".join(parts))
        return not self.done

    @property
    def blob(self) -> bytes:
        """The whole encoded image (finishing it first)."""
        while self.step(1 << 30):
            pass
        return b"".join(self.chunks)


def take_snapshot(image: Image, session: bytes, sequence: int, timestamp_ns: int) -> ImageSnapshot:
    """A snapshot encoded in one go (tests, small images)."""
    snap = ImageSnapshot(image, session, sequence, timestamp_ns)
    while snap.step(1 << 30):
        pass
    return snap


class ImageSession:
    """One client: feed it received bytes; it says what to send and whether to close.

    States: "login" (waiting for the login request), "streaming" (image being sent, the
    shell drains `pending`), "closed". `snapshot` is called once, at login.
    """

    def __init__(self, snapshot_provider, username: str = "", password: str = "") -> None:
        self.snapshot_provider = snapshot_provider
        # Either one configured turns the check on, and then both must match (a blank
        # configured username means the login's must be blank): a password alone must
        # not leave the image open to anyone who leaves the username empty.
        self.auth_required = bool(username or password)
        self.username = soup.pad_alpha(username, 6)
        self.password = soup.pad_alpha(password, 10)
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
                if self.auth_required and (user != self.username or password != self.password):
                    return out + [soup.login_rejected("not_authorized")] + self._close("not authorized")
                snap = self.snapshot_provider()
                if snap is None or (session.strip(b" ") and session != snap.session):
                    return out + [soup.login_rejected("session_not_available")] + self._close("session not available")
                self.snapshot = snap
                self.state = "streaming"  # the shell streams snap.chunks as they are encoded, then end of session
                out.append(soup.login_accepted(snap.session, snap.sequence + 1))
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
