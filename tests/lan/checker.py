"""The nothing-lost checker: what the plant published against what a handler delivered.

Rule: every published message reaches the application exactly once, in order, equal to what
was published, or the application was told. "Told" means one of:
- a `GapEvent` naming the range, which the scenario must declare acceptable (`allow_gap`);
- an `ImageApplied(N)` as the first thing in a session (late join): it stands for the
  messages up to N, and the replica is checked separately. Later in a session an image only
  refreshes the replica after an unrecoverable gap (resync) while delivery carries on, so
  it covers nothing and needs a gap event before it.
Anything else — a duplicate, a sequence going backwards, a changed message, a silent hole,
an image without a reason, a session that stops before the plant's last message — fails
with the first offending sequence number.

Sessions: the plant's record files are given in publishing order, one per plant run
(session); the handler's record is split at `SessionStarted`/`SessionChanged` events.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decoders import CODECS
from mdcommon.image import Image

GapRule = Callable[[int, int, str], bool]


def no_gaps(first: int, last: int, reason: str) -> bool:
    return False


def read_published(path: Path) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    with open(path) as fh:
        for line in fh:
            d = json.loads(line)
            out[d.pop("sequence")] = d
    return out


@dataclass
class HandlerRecord:
    sessions: list[list[dict[str, Any]]]  # per session: messages and events, in order
    final: dict[str, Any]
    events: list[dict[str, Any]]

    @classmethod
    def read(cls, path: Path) -> HandlerRecord:
        sessions: list[list[dict[str, Any]]] = [[]]
        final: dict[str, Any] = {}
        events: list[dict[str, Any]] = []
        with open(path) as fh:
            for line in fh:
                d = json.loads(line)
                if "final" in d:
                    final = d["final"]
                    continue
                d.pop("channel", None)
                if "event" in d:
                    events.append(d)
                    if d["event"] in ("SessionStarted", "SessionChanged"):
                        if sessions[-1]:
                            sessions.append([])
                        continue
                sessions[-1].append(d)
        if not sessions[-1]:
            sessions.pop()
        return cls(sessions, final, events)

    def stream(self) -> dict[str, Any]:
        """The final status of the (only) channel: counters per stream and feed."""
        return next(iter(self.final["channels"].values()))

    def count(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]


@dataclass
class Verdict:
    delivered: int = 0
    gaps: list[tuple[int, int, str]] = field(default_factory=list)
    images: list[int] = field(default_factory=list)
    covered_by_image: int = 0
    last: int = 0

    def summary(self) -> str:
        return (f"delivered {self.delivered:,} exactly once, in order, equal to the plant's; gaps {self.gaps or 'none'}; "
                f"images at {self.images or 'none'} covering {self.covered_by_image:,}; last sequence {self.last:,}")


def check_session(published: dict[int, dict[str, Any]], items: list[dict[str, Any]], allow_gap: GapRule = no_gaps,
                  complete: bool = True, who: str = "handler") -> Verdict:
    v = Verdict()
    expected: int | None = None  # next sequence the handler owes the application
    gap_since_image = False
    for item in items:
        kind = item.get("event")
        if kind is None:
            seq = item["sequence"]
            if expected is None:
                assert seq == 1 or seq == min(published), f"{who}: first delivery {seq} without an image or a gap event before it"
                expected = seq
            assert seq == expected, (f"{who}: delivered {seq} when {expected} was due "
                                     f"({'duplicate or backwards' if seq < expected else 'silent hole'})")
            body = {k: val for k, val in item.items() if k != "sequence"}
            assert seq in published, f"{who}: delivered {seq}, which the plant never published"
            assert body == published[seq], f"{who}: message {seq} differs: delivered {body}, published {published[seq]}"
            v.delivered += 1
            expected = seq + 1
        elif kind == "GapEvent":
            first, last, reason = item["first"], item["last"], item["reason"]
            assert expected is None or first == expected, f"{who}: gap {first}..{last} but {expected} was due"
            assert allow_gap(first, last, reason), f"{who}: gap {first}..{last} ({reason}) was not expected in this scenario"
            v.gaps.append((first, last, reason))
            expected = last + 1
            gap_since_image = True
        elif kind == "ImageApplied":
            n = item["sequence"]
            if expected is None:  # late join: the image stands for everything up to n
                v.covered_by_image += n - min(published) + 1
                expected = n + 1
            else:  # resync: the replica is refreshed while delivery carries on; nothing is skipped
                assert gap_since_image, f"{who}: image at {n} applied during the session without an unrecoverable gap before it"
            v.images.append(n)
            gap_since_image = False
    v.last = (expected or 1) - 1
    if complete:
        assert v.last == max(published), f"{who}: stopped at {v.last}, the plant published up to {max(published)}"
    return v


def check(published_runs: list[Path], record: Path, allow_gap: GapRule = no_gaps, complete: bool = True,
          who: str = "handler") -> tuple[list[Verdict], HandlerRecord]:
    """Every session of the handler against the plant run that published it; raises AssertionError on the first fault."""
    hr = HandlerRecord.read(record)
    assert len(hr.sessions) == len(published_runs), f"{who}: {len(hr.sessions)} sessions delivered, {len(published_runs)} published"
    verdicts = []
    for i, (run, items) in enumerate(zip(published_runs, hr.sessions, strict=True)):
        last_session = i == len(published_runs) - 1
        verdicts.append(check_session(read_published(run), items, allow_gap, complete or not last_session, f"{who} session {i + 1}"))
    return verdicts, hr


def plant_image(published: dict[int, dict[str, Any]], upto: int | None = None) -> Image:
    image = Image()
    for seq in sorted(published):
        if upto is not None and seq > upto:
            break
        d = dict(published[seq])
        image.apply(CODECS.by_name[d.pop("type")].from_dict({k: v for k, v in d.items() if k != "msg_type"}))
    return image


def read_image_csv(path: Path) -> dict[int, tuple[str, int, dict[int, int]]]:
    out: dict[int, tuple[str, int, dict[int, int]]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            iid = int(row["instrument_id"])
            rec = out.setdefault(iid, (row["symbol"], int(row["price_exponent"]), {}))
            rec[2][int(row["field_id"])] = int(row["value"])
    return out


def assert_replica_equals(image: Image, path: Path, who: str = "handler") -> int:
    """The handler's replica (its image file) equals the plant's image; returns the instruments compared."""
    replica = read_image_csv(path)
    expect = {iid: (r.symbol, r.price_exponent, dict(r.values)) for iid, r in image.records.items() if r.values}
    replica = {iid: rec for iid, rec in replica.items() if rec[2]}
    missing = sorted(set(expect) - set(replica))[:5]
    extra = sorted(set(replica) - set(expect))[:5]
    assert not missing and not extra, f"{who}: replica lacks instruments {missing}, has unknown {extra}"
    wrong = [iid for iid in expect if expect[iid] != replica[iid]]
    assert not wrong, f"{who}: {len(wrong)} instruments differ, first {wrong[0]}: plant {expect[wrong[0]]}, replica {replica[wrong[0]]}"
    return len(expect)
