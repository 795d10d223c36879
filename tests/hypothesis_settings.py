"""Hypothesis settings shared by the property and fuzz tests: many examples, no deadline (the
machines are shared and noisy) and no example database, so every run starts fresh."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

#: Properties that hold for every value: round trips, invariants.
PROPS = settings(max_examples=300, deadline=None, database=None)
#: Arbitrary bytes and structures thrown at a decoder, which must only ever raise its own errors.
FUZZ = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
