"""Joining and resynchronising from an initial image.

Part of `HandlerCore`. A handler that starts after sequence 1 joins late: it buffers the
live stream, fetches an image tagged with the sequence it is consistent with, drops the
buffered messages at or below that sequence and delivers the rest (nothing is asked for,
given up or delivered until then). After an unrecoverable gap the replica is refreshed the
same way while delivery goes on: what is delivered meanwhile is kept and replayed onto the
image. With no image to be had, the join falls back to recovering from sequence 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mdcommon.compact_image import AnyImage

from .counters import STREAM_COUNTERS
from .events import ImageApplied, ImageFailed, RequestImage, SessionStarted
from .stream import BUFFERED_MESSAGE_BYTES, NO_ACTIONS

__all__ = ["JoinMixin"]


class JoinMixin:
    """The first data of a session, and images: requested, received, installed, failed."""

    def _start(self, first_seq: int, now_ns: int) -> list:
        """First data of a session: join live, from an image, or by recovering from 1."""
        self.on_event(SessionStarted(self.session, first_seq))
        self.rate_mark = (now_ns, first_seq)
        if first_seq == 1:
            self.expected = self.horizon = 1
            return NO_ACTIONS
        if self.late_join_image:
            self.expected = self.horizon = first_seq
            self.joining = True
            self.image_due_ns = now_ns
            self._update_quality("joining from an initial image")
            return self._image_actions(now_ns)
        # no image: the messages before the first one seen are a gap like any other
        self.expected = 1
        self.horizon = first_seq
        self.gaps.add(self._new_gap(1, first_seq - 1, now_ns))
        return NO_ACTIONS

    def _image_actions(self, now_ns: int) -> list:
        self.image_due_ns = None
        if not self.image_servers or self.session is None:
            return NO_ACTIONS
        if self.resync is None and not self.joining:
            self.resync = []
            self.resync_from = self.expected
        self.image_records = self.image_factory()
        self.counters.values[STREAM_COUNTERS.image_requests] += 1
        return [RequestImage(self.image_server, self.session)]

    def on_image_messages(self, msgs: list[tuple] | tuple) -> None:
        """Messages of the image stream, in order (record images; directory entries are welcome too)."""
        if self.image_records is not None:
            self.image_records.apply_many(msgs)

    def image_loader(self) -> Callable[[Any, int], tuple[int, int]] | None:
        """Where the image client may load record images straight from the stream's bytes (a CompactImage's
        `load_soup`: what on_image_messages does with them, without making tuples), or None."""
        return getattr(self.image_records, "load_soup", None)

    def on_image_message(self, msg: tuple) -> None:
        self.on_image_messages((msg,))

    def on_image_failed(self, reason: str, now_ns: int) -> list:
        """The image server could not deliver: try the next one, later; never stall the live stream."""
        self.image_records = None
        self.image_failures += 1
        self.counters.values[STREAM_COUNTERS.image_failures] += 1
        self.on_event(ImageFailed(reason))
        self.image_server = (self.image_server + 1) % max(1, self.image_servers)
        if self.joining and self.image_failures >= self.image_servers:
            # no image to be had now: join by recovering from sequence 1 instead, loudly if that fails too
            self.joining = False
            first = self.expected
            if first is not None and first > 1:
                self.expected = 1
                self.gaps.add(self._new_gap(1, first - 1, now_ns))
            self._unraw()
            self._drain()
            self._update_quality("no image available")
            self.image_due_ns = None
            return NO_ACTIONS
        self.image_due_ns = now_ns + (0 if self.image_failures < self.image_servers else self.policy.image_retry_ns)
        return NO_ACTIONS

    def _install(self, img: AnyImage, sequence: int, dropped: int) -> None:
        if self.keep_image:
            self.image = img
        for iid in img.records:
            self.refreshed[iid] = self.gap_generation
        self.image_failures = 0
        self.counters.values[STREAM_COUNTERS.images_applied] += 1
        self.on_event(ImageApplied(sequence, len(img), dropped))

    def on_image_end(self, sequence: int, now_ns: int) -> list:
        """The image is consistent with `sequence`: swap it in and reconcile the live stream."""
        img = self.image_records
        if img is None:
            return NO_ACTIONS
        self.image_records = None
        if self.expected is not None and sequence >= self.horizon + self.ahead_window:
            # an image claiming to be further on than anything the stream corroborates would skip live messages
            # unannounced (a forged or misdirected image server): refused, like a failed fetch
            self.counters.values[STREAM_COUNTERS.images_refused] += 1
            return self.on_image_failed(f"image at sequence {sequence} is beyond the receive window (stream at {self.horizon})", now_ns)
        if self.joining:
            self._finish_join(img, sequence, now_ns)
            return NO_ACTIONS
        return self._finish_resync(img, sequence, now_ns)

    def _finish_join(self, img: AnyImage, sequence: int, now_ns: int) -> None:
        """Drop what the image covers from the buffer; the messages between the image and the live ones are a gap."""
        dropped = self._drop_raw_upto(sequence)
        covered = [s for s in self.buffer if s <= sequence]
        for s in covered:
            del self.buffer[s]
            self.buffer_bytes -= BUFFERED_MESSAGE_BYTES
        self.joining = False
        for g in self.gaps:  # nothing was asked for while joining: give-up and gap-wait count from now
            g.detected_ns = now_ns
            g.due_ns = max(g.due_ns, now_ns)
            self.gaps.schedule(g)
        if sequence + 1 < self.expected:
            # the image is older than the first live message we hold: recover the difference
            self.gaps.remove_range(sequence + 1, self.expected - 1)
            gap = self._new_gap(sequence + 1, self.expected - 1, now_ns)
            self.expected = sequence + 1
            self.gaps.add(gap)
        else:
            self.expected = sequence + 1
            self.gaps.drop_below(sequence + 1)
        self.horizon = max(self.horizon, self.expected)
        self._install(img, sequence, dropped + len(covered))
        self._drain()
        self._unraw()  # what is held beyond a hole waits message by message now, as any early arrival
        self._update_quality("image applied")

    def _drop_raw_upto(self, sequence: int) -> int:
        """Forget the datagrams held as bytes that the image covers; one it covers in part goes into `buffer`,
        whose covered messages are dropped next. Returns the messages forgotten here."""
        raw = self.raw
        dropped = 0
        for seq in list(raw):  # in sequence order
            if seq > sequence:
                break
            count, data = raw.pop(seq)
            self.raw_messages -= count
            if seq + count - 1 <= sequence:
                dropped += count
                self.buffer_bytes -= BUFFERED_MESSAGE_BYTES * count
            else:
                self._unheld(seq, count, data)
        return dropped

    def _finish_resync(self, img: AnyImage, sequence: int, now_ns: int) -> list:
        """Bring the image up to date with what was delivered while it came, and make it the replica."""
        history = self.resync or []
        self.resync = None
        if sequence + 1 < self.resync_from:
            # the image predates what we still remember: it cannot be brought up to date
            return self.on_image_failed(f"image at {sequence} older than kept history from {self.resync_from}", now_ns)
        for s, m in history:
            if s > sequence:
                img.apply(m)
        self._install(img, sequence, 0)
        self._update_quality("replica refreshed from image")
        return NO_ACTIONS
