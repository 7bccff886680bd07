"""Several SMTP connections used as one mailer: a send takes whichever connection is idle.

One connection carries one message at a time (connect, MAIL, RCPT, DATA, each waiting for its
reply), so its rate is bound by round trips, not by either end's work; a few connections side
by side multiply it. Each connection keeps its own state and failures (`mailer.Mailer`): a
send that fails on one leaves the others as they are. Connections open only when first used.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from services.notifier.emails import Outgoing
from services.notifier.ports import MailerPort


class MailerPool:
    """`MailerPort` over several connections; `send` and `check` wait for an idle one."""

    def __init__(self, mailers: Sequence[MailerPort]) -> None:
        if not mailers:
            raise ValueError("a mailer pool needs at least one connection")
        self._mailers = list(mailers)
        self._idle: asyncio.Queue[MailerPort] = asyncio.Queue()
        for mailer in self._mailers:
            self._idle.put_nowait(mailer)

    @property
    def size(self) -> int:
        """How many connections the pool has (at most this many sends at once)."""
        return len(self._mailers)

    async def send(self, message: Outgoing) -> None:
        """Send `message` over an idle connection (`Mailer.send`)."""
        async with self._idle_connection() as mailer:
            await mailer.send(message)

    async def check(self, sender: str) -> None:
        """Probe the server over an idle connection (`Mailer.check`)."""
        async with self._idle_connection() as mailer:
            await mailer.check(sender)

    @contextlib.asynccontextmanager
    async def _idle_connection(self) -> AsyncIterator[MailerPort]:
        # Back in the pool however the send ends: a failure is the message's, not the pool's.
        mailer = await self._idle.get()
        try:
            yield mailer
        finally:
            self._idle.put_nowait(mailer)

    async def close(self, grace: float | None = None) -> None:
        """Close every connection, each within `grace` seconds (`Mailer.close`)."""
        await asyncio.gather(*(mailer.close(grace) for mailer in self._mailers))
