"""services.notifier.retry: `backoff()`, and services.notifier.deliveries: the delivery id (pure
parts only)."""

from __future__ import annotations

import random

import pytest

from services.notifier.deliveries import delivery_id
from services.notifier.retry import backoff

SEED = 20240502


def jitter_factor(seed: int = SEED) -> float:
    """The factor a fresh `random.Random(seed)` gives: 0.5 plus half its first draw."""
    return 0.5 + random.Random(seed).random() / 2


def test_delivery_id_pilot_and_email_key():
    assert delivery_id("pilot-2025-007", "an.nguyen@example.org") == (
        "pilot-2025-007|an.nguyen@example.org"
    )


def test_backoff_grows_exponentially():
    delays = [backoff(n, 1.5, 1000.0, random.Random(SEED)) for n in range(1, 7)]

    factor = jitter_factor()
    assert delays == [1.5 * factor * 2**k for k in range(6)]


def test_backoff_first_attempt_is_first_delay():
    assert backoff(1, 2.0, 60.0, random.Random(SEED)) == 2.0 * jitter_factor()


def test_backoff_zero_attempts_is_first_delay():
    assert backoff(0, 2.0, 60.0, random.Random(SEED)) == 2.0 * jitter_factor()


@pytest.mark.parametrize("attempts", [7, 8, 20, 50])
def test_backoff_capped(attempts):
    assert backoff(attempts, 1.0, 30.0, random.Random(SEED)) == 30.0 * jitter_factor()


def test_backoff_huge_attempt_count_capped():
    # max_attempts has no upper bound in the settings: any count must give the capped delay.
    assert backoff(5000, 1.0, 30.0, random.Random(SEED)) == 30.0 * jitter_factor()


def test_backoff_jitter_within_half_and_full_delay():
    rng = random.Random(SEED)

    delays = [backoff(3, 1.0, 30.0, rng) for _ in range(2000)]

    assert all(2.0 <= delay <= 4.0 for delay in delays)
    assert min(delays) < 2.1  # the jitter spreads over the whole range
    assert max(delays) > 3.9


def test_backoff_seeded_rng_reproducible():
    first = [backoff(n, 1.0, 30.0, random.Random(SEED)) for n in range(1, 10)]
    second = [backoff(n, 1.0, 30.0, random.Random(SEED)) for n in range(1, 10)]

    assert first == second


def test_backoff_different_draws_differ():
    rng = random.Random(SEED)

    assert backoff(4, 1.0, 30.0, rng) != backoff(4, 1.0, 30.0, rng)


def test_backoff_without_rng_within_bounds():
    assert all(15.0 <= backoff(10, 1.0, 30.0) <= 30.0 for _ in range(200))
