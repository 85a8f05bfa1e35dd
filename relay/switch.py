"""The vendor switch: two upstream channels carrying the same messages, one taken, the other ready.

"I don't trust data vendor A, switch me to B." Both vendors carry the same messages (the same
tuples: two relays or plants fed the same input), each in its own session and sequence numbers,
so the only common ground is the messages themselves. Sans-I/O: `offer(vendor, messages)` with
what each upstream line handler delivered, `switch(reason)` when the active one goes stale or
reports a gap; both return what to publish downstream.

Rules:
1. Messages of the active vendor pass; each vendor's recent messages are kept in a bounded
   window, so that a switch (and a switch back) can continue from them.
2. On a switch, the new active's messages after the last one published pass, none before: no
   duplicate and no gap for messages both carried. The last published message is found in the
   new active's window by equality, searching from its newest end.
3. If the new active is behind (its newest message is older than the last published one), its
   messages are dropped as they come until it reaches that message, then pass.
4. If it does not carry that message (its window, or its stream while catching up, goes past the
   message's time without it: the standby lost it, or its window was too short), it continues
   with what is newer and says so, a `SwitchGap`: what lies between cannot be known, and is
   never passed over silently.
5. Session events (`S`) never pass: the downstream plant has its own session.
The match is by equality, so two identical messages close together (the same quote twice at one
timestamp) can make a switch continue from the wrong one of them: both vendors must carry messages
that differ, as a plant's do (timestamps, trade ids).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from decoders import SYSTEM_EVENT

__all__ = ["VendorSwitch", "Switched", "SwitchGap"]


@dataclass(frozen=True, slots=True)
class Switched:
    to: int
    reason: str
    resumed_after_window: int  # messages of the new active's window it continued after (-1: still catching up)


@dataclass(frozen=True, slots=True)
class SwitchGap:
    """The last published message was not in the new active's window: messages may be missing between."""

    to: int
    window_messages: int


class VendorSwitch:
    """Two vendors, one active; see the module rules."""

    def __init__(self, window_messages: int = 200_000) -> None:
        if window_messages < 1:
            raise ValueError("window_messages must be positive")
        self.active = 0
        self.windows: list[deque[tuple]] = [deque(maxlen=window_messages), deque(maxlen=window_messages)]
        self.last: tuple | None = None  # the last message published
        self.catching_up: tuple | None = None  # rule 3: the message the new active must reach first
        self.events: list = []
        self.switches = 0
        self.dropped_catching_up = 0

    def offer(self, vendor: int, messages: list | tuple) -> list[tuple]:
        msgs = [m for m in messages if m[0] != SYSTEM_EVENT]
        if not msgs:
            return []
        self.windows[vendor].extend(msgs)  # both vendors' recent history: a switch back finds its place too
        if vendor != self.active:
            return []
        if self.catching_up is not None:
            target = self.catching_up
            for i, m in enumerate(msgs):
                if m == target or m[1] > target[1]:
                    if m != target:  # it went past the message without carrying it (rule 4)
                        self.events.append(SwitchGap(self.active, self.dropped_catching_up + i))
                        i -= 1
                    self.catching_up = None
                    self.dropped_catching_up += i + 1
                    msgs = msgs[i + 1 :]
                    break
            else:
                self.dropped_catching_up += len(msgs)
                return []
        if msgs:
            self.last = msgs[-1]
        return msgs

    def switch(self, reason: str) -> list[tuple]:
        """Make the other vendor active; return its messages after the last one published (rule 2)."""
        self.active ^= 1
        self.switches += 1
        self.catching_up = None  # a catch-up of the vendor left is over
        w = self.windows[self.active]
        last = self.last
        out: list[tuple] = []
        if last is None:
            out = list(w)
            resumed = 0
        else:
            found = next((i for i in range(len(w) - 1, -1, -1) if w[i] == last), -1)
            if found >= 0:
                out = list(w)[found + 1 :]
                resumed = found + 1
            elif not w or w[-1][1] <= last[1]:
                # rule 3: behind (what it holds is not newer than what was published: at the same timestamp it may
                # still be on its way to the last message, as a trade's quote precedes it)
                self.catching_up = last
                resumed = -1
            else:
                # rule 4: its window reaches past the last message's time without holding it
                self.events.append(SwitchGap(self.active, len(w)))
                out = [m for m in w if m[1] > last[1]]
                resumed = len(w) - len(out)
        if out:
            self.last = out[-1]
        self.events.append(Switched(self.active, reason, resumed))
        return out
