"""The dispatcher: the loops that send due deliveries, one at a time each (one per SMTP
connection), at the send rate, paused while the SMTP server fails as a whole, until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.notifier.health import SmtpHealth
from services.notifier.ratelimit import TokenBucket

logger = logging.getLogger(__name__)


@dataclass
class Throttle:
    """The send rate (a token bucket) and the stop: each send first asks `allow()`."""

    rate: float
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _bucket: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        self._bucket = TokenBucket(self.rate)

    @property
    def stopping(self) -> bool:
        """Whether the dispatcher was told to stop."""
        return self._stopping.is_set()

    def stop(self) -> None:
        """Allow no more sends; a send waiting for its token is answered False at once."""
        self._stopping.set()

    async def allow(self) -> bool:
        """Wait for the send rate to allow one more message; False when stopping instead."""
        if self._stopping.is_set():
            return False
        delay = self._bucket.take()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
        return not self._stopping.is_set()

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or until stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


@dataclass
class Dispatcher:
    """Runs `send_due` (one due delivery, or digest, per call; False when nothing was sent)
    in a loop, woken by new work, paced by the throttle and the SMTP server's health."""

    send_due: Callable[[], Awaitable[bool]]
    throttle: Throttle
    health: SmtpHealth
    poll_interval: float
    # Loops sending side by side, one per SMTP connection; the throttle paces them together.
    workers: int = 1
    _work: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        """A delivery was created: look now rather than at the next poll."""
        self._work.set()

    def stop(self) -> None:
        """Take no new delivery: the dispatcher finishes the message it is sending and returns."""
        self.throttle.stop()
        self._work.set()  # an idle dispatcher wakes up to see it

    async def run(self) -> None:
        """Send due deliveries until `stop()` (then return) or cancelled.

        It sleeps when nothing is due: until this replica creates a delivery, or for the poll
        interval, after which it looks for retries that came due and for deliveries whose
        sender died (created by this replica or another). After a failure of the SMTP server
        as a whole it pauses (capped exponential backoff with jitter) before the next try.
        With several `workers`, each loop claims its own deliveries (as replicas do).
        """
        await asyncio.gather(*(self._loop() for _ in range(self.workers)))

    async def _loop(self) -> None:
        while not self.throttle.stopping:
            self._work.clear()
            try:
                if await self.send_due():
                    continue
            except Exception:
                logger.exception("dispatcher step failed")
            paused_for = self.health.paused_for()
            if paused_for > 0:
                # New deliveries do not end a pause: only its time, or `stop()`.
                await self.throttle.sleep(paused_for)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._work.wait(), self.poll_interval)

    async def stop_within(self, dispatcher: asyncio.Task[None], grace: float) -> None:
        """Stop `dispatcher` (the task of `run`) after its current message and that message's
        status update; cancel it after `grace` seconds (a hung SMTP server: the lease recovers
        the delivery)."""
        self.stop()
        done, _ = await asyncio.wait([dispatcher], timeout=grace)
        if not done:
            logger.warning("dispatcher still busy after %.1fs of shutdown: cancelled", grace)
            dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatcher
