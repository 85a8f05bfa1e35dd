"""What the handler core tells its application (events) and asks its shell to do (actions).

Messages themselves are not events: they go to the `on_message(sequence, message)`
callback one by one, in order, exactly once, because an object per message would cost
more than decoding it. Everything else the application must know is an event here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "QUALITY_OK",
    "QUALITY_MAYBE_STALE",
    "QUALITY_STALE",
    "GapEvent",
    "Recovered",
    "QualityChanged",
    "FeedStale",
    "FeedRecovered",
    "SessionStarted",
    "SessionChanged",
    "SessionConflict",
    "SessionEnded",
    "SchemaMismatch",
    "ImageApplied",
    "ImageFailed",
    "BufferOverflow",
    "SequenceConflict",
    "SendNack",
    "RequestImage",
    "CancelImage",
]

# OpenMAMA's words for data quality
QUALITY_OK = "OK"
QUALITY_MAYBE_STALE = "MAYBE_STALE"
QUALITY_STALE = "STALE"


@dataclass(frozen=True, slots=True)
class GapEvent:
    """Messages `first`..`last` (inclusive) will never be delivered; `reason` says why."""

    first: int
    last: int
    reason: str


@dataclass(frozen=True, slots=True)
class Recovered:
    """A gap `first`..`last` was filled by retransmission from `server` (informational)."""

    first: int
    last: int
    server: int
    elapsed_ns: int


@dataclass(frozen=True, slots=True)
class QualityChanged:
    quality: str
    reason: str


@dataclass(frozen=True, slots=True)
class FeedStale:
    feed: str
    silent_ns: int


@dataclass(frozen=True, slots=True)
class FeedRecovered:
    feed: str


@dataclass(frozen=True, slots=True)
class SessionStarted:
    session: bytes
    first_sequence: int


@dataclass(frozen=True, slots=True)
class SessionChanged:
    """The channel's session is another one now: the old one ended (its end of session) or went silent
    past stale_after (a crash), and the new one's datagrams corroborated each other. The handler
    resynchronises (gaps left in the old session were reported first)."""

    old: bytes
    new: bytes


@dataclass(frozen=True, slots=True)
class SessionConflict:
    """Datagrams of `other`, a session of our schema, arrive while `current` is alive: a second plant on
    the channel's groups by mistake, or a forged instance. Reported once per other session; its datagrams
    are counted (`other_session`, or `old_session` for an older instance) and held, never delivered,
    unless `current` ends or goes silent."""

    feed: str
    current: bytes
    other: bytes


@dataclass(frozen=True, slots=True)
class SessionEnded:
    session: bytes
    next_sequence: int


@dataclass(frozen=True, slots=True)
class SchemaMismatch:
    """Datagrams of another schema version arrive and are refused undecoded (logged once per session)."""

    feed: str
    session: bytes
    expected_tag: bytes


@dataclass(frozen=True, slots=True)
class ImageApplied:
    """An initial image consistent with `sequence` replaced the replica; live data continues after it."""

    sequence: int
    instruments: int
    dropped_buffered: int


@dataclass(frozen=True, slots=True)
class ImageFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class BufferOverflow:
    """The buffer of messages ahead of a gap hit its bound; the oldest gap is given up (a GapEvent follows)."""

    buffered_messages: int
    buffered_bytes: int


@dataclass(frozen=True, slots=True)
class SequenceConflict:
    """A copy of messages `first`..`last` of `session` (already delivered or buffered) carried
    different bytes than the first copy: two publishers disagree (a divergent standby, split
    brain). The first copy is kept; `messages` of this datagram differed."""

    feed: str
    session: bytes
    first: int
    last: int
    messages: int


# -- actions for the shell ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendNack:
    """Send a MoldUDP64 request for `count` messages from `sequence` to re-request server `server`."""

    server: int
    session: bytes
    sequence: int
    count: int


@dataclass(frozen=True, slots=True)
class RequestImage:
    """Fetch an initial image from image server `server` (feed it back with on_image_*)."""

    server: int
    session: bytes


@dataclass(frozen=True, slots=True)
class CancelImage:
    """Abandon the image fetch in progress (a new session began)."""
