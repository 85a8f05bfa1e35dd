"""The relay standby's takeover when it is behind the active relay (relay/standby_io.py, rule 3): the active's
messages it has not computed yet are kept and compared as it computes them; nothing new leaves before it has
reached where the active stopped; a difference found then starts a new session instead of continuing."""

from __future__ import annotations

from decoders import SCHEMA_FINGERPRINT, make_session
from relay.standby_io import RelayStandby
from tests.integration.mcast import unique_feeds
from tickerplant.config import FeedConfig, PlantConfig, SourceConfig
from tickerplant.plant_io import Plant
from tickerplant.standby import TakeOver

SESSION = make_session(SCHEMA_FINGERPRINT, 5)


class NoLoop:
    def add_reader(self, sock, callback) -> None:
        pass

    def remove_reader(self, sock) -> None:
        pass


def quote(i: int, bid: int = 100) -> tuple:
    return (b"Q", 1_000 + i, 1 + i % 3, bid + i, 1, 200 + i, 1)


def standby_behind(tmp_path) -> tuple[RelayStandby, list[tuple]]:
    """A standby mirroring SESSION whose active published sequences 2-11, none of which it computed yet, then went silent."""
    a, b = unique_feeds()
    config = PlantConfig(source=SourceConfig(kind="none"), feed_a=FeedConfig(group=a[0], port=a[1]), feed_b=FeedConfig(group=b[0], port=b[1]))
    config.standby.enabled = True
    sb = RelayStandby(config, Plant(config), NoLoop())
    sb._act(sb.core.on_peer(SESSION, 2, False, 0), 0)  # heard the active: mirror its session
    assert sb.plant.session == SESSION and not sb.active
    theirs = [quote(i) for i in range(10)]
    sb._compare(2, theirs)
    sb._take_over(TakeOver(SESSION, 12, 0))
    return sb, theirs


def test_taken_over_behind_it_publishes_nothing_new_until_it_reaches_where_the_active_stopped(tmp_path) -> None:
    sb, theirs = standby_behind(tmp_path)
    sb.publish(theirs[:6])
    assert sb.plant.sequencer.next_sequence == 12 and sb.plant.session == SESSION  # nothing left: the active sent those
    sb.publish(theirs[6:] + [quote(10)])
    assert sb.plant.sequencer.next_sequence == 13 and sb.plant.session == SESSION  # sequence 12 is the first it sends
    assert sb.figures["compared"] == 10 and sb.figures["mismatched"] == 0
    sb.plant.close()


def test_a_difference_found_while_catching_up_starts_a_new_session_never_a_mixed_one(tmp_path) -> None:
    sb, theirs = standby_behind(tmp_path)
    mine = theirs[:4] + [quote(4, bid=999)] + theirs[5:] + [quote(10)]
    sb.publish(mine)
    assert sb.core.diverged and sb.plant.session != SESSION
    assert sb.plant.sequencer.next_sequence == 3  # the new session: its start event, then the one message after the skip
    sb.plant.close()
