"""services.notifier.ratelimit: the dispatcher's token bucket, on a clock the test moves."""

from __future__ import annotations

import pytest

from services.notifier.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_take_burst_free_then_spaced_by_rate():
    clock = Clock()
    bucket = TokenBucket(4.0, burst=2, clock=clock)

    waits = [bucket.take() for _ in range(5)]

    assert waits == [0.0, 0.0, 0.25, 0.5, 0.75]


def test_take_refills_with_time():
    clock = Clock()
    bucket = TokenBucket(10.0, burst=1, clock=clock)
    bucket.take()

    clock.now += 0.125  # exactly representable: one token and a quarter, capped at one

    assert bucket.take() == 0.0


def test_take_refill_capped_at_burst():
    clock = Clock()
    bucket = TokenBucket(10.0, burst=3, clock=clock)

    clock.now += 3600
    waits = [bucket.take() for _ in range(4)]

    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.1)


def test_take_rate_sustained_over_many_messages():
    clock = Clock()
    bucket = TokenBucket(200.0, clock=clock)

    for _ in range(1000):
        clock.now += bucket.take()

    # 200 saved up, then 800 more at 200 a second: 4 seconds.
    assert clock.now - 100.0 == pytest.approx(4.0)


def test_take_zero_rate_no_limit():
    bucket = TokenBucket(0, clock=Clock())

    assert [bucket.take() for _ in range(10_000)][-1] == 0.0


def test_default_burst_one_second_of_rate():
    assert TokenBucket(50.0).capacity == 50.0
    assert TokenBucket(0.5).capacity == 1.0


@pytest.mark.parametrize(("rate", "burst"), [(-1.0, None), (5.0, 0.5)])
def test_init_bad_values_raise(rate, burst):
    with pytest.raises(ValueError, match=r"send rate|burst"):
        TokenBucket(rate, burst)


async def test_acquire_waits_for_token():
    clock = Clock()
    bucket = TokenBucket(1000.0, burst=1, clock=clock)

    await bucket.acquire()
    await bucket.acquire()  # owes one token: sleeps a millisecond

    assert bucket.take() == pytest.approx(0.002)
