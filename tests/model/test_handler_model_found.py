"""Cases the handler's model test found with its long random profile, kept as fixed step lists.

Each runs the model's own rules and checks its promises after every step, as the state machine does.
"""

from __future__ import annotations

from tests.model.test_handler_model import HandlerModel


def test_live_data_below_a_repair_inside_a_heartbeats_announcement_keeps_the_horizon_above_the_repair() -> None:
    """A forged heartbeat announces 6..10; the NACK's repair brings 6..7 (feed R does not withdraw an
    announcement); then B's delayed copy of 6 arrives. The announcement is withdrawn above the data, and the
    data includes the repaired 7: the horizon once dropped to 7 with 7 buffered (found 2026-12-04, python
    backend, MD_MODEL_LONG=1; the same on the native backend and on the 2026-12-03 code)."""
    state = HandlerModel()
    steps = [
        lambda: state.start(late=False, images=False, seed=0, per=1, batched=False, group=False, via_batch=False),
        lambda: state.publish(delay_b=0, dup=False, lose_a=True, lose_b=True),
        lambda: state.burst(b_first=False, k=2, lost_a=set(), lost_b=set()),
        lambda: state.burst(b_first=False, k=2, lost_a={0}, lost_b=set()),
        lambda: state.forged_heartbeat(both=False, feed="A", where="near"),
        lambda: state.publish(delay_b=1, dup=False, lose_a=True, lose_b=False),
        lambda: state.publish(delay_b=0, dup=False, lose_a=True, lose_b=True),
        lambda: state.time_passes(ms=5),
        lambda: state.release_delayed(),
    ]
    for step in steps:
        step()
        state.promises_hold()
    assert state.core.horizon >= max(state.core.buffer) + 1
    state.teardown()
