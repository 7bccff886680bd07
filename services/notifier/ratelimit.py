"""A token bucket: the dispatcher's send rate (messages per second), pure apart from the clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; a rate of 0 means no limit."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 0:
            raise ValueError(f"the send rate must be 0 (no limit) or positive, not {rate}")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        if self.capacity < 1:
            raise ValueError(f"the burst must hold at least one message, not {self.capacity}")
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()

    def take(self) -> float:
        """Take one token; the seconds to wait before using it (0.0 when one is there now).

        A token taken early is owed: callers that each wait their answer are spaced by 1/rate.
        """
        if self.rate == 0:
            return 0.0
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> None:
        """Wait until a message may be sent."""
        delay = self.take()
        if delay > 0:
            await asyncio.sleep(delay)
