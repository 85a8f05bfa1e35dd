"""Hypothesis settings for the stateful model tests: a derandomized profile that CI runs on every change
(the same examples every run, so a failure is reproducible from the log), and a longer random one for
local runs (`MD_MODEL_LONG=1 ./scripts/test tests/model`)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG = os.environ.get("MD_MODEL_LONG") == "1"


def model_settings(ci_examples: int, ci_steps: int) -> settings:
    if LONG:
        return settings(max_examples=ci_examples * 20, stateful_step_count=ci_steps * 3, deadline=None,
                        suppress_health_check=list(HealthCheck))
    return settings(max_examples=ci_examples, stateful_step_count=ci_steps, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck), database=None)
