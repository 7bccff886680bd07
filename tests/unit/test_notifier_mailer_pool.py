"""services.notifier.mailer_pool: several connections as one mailer (stand-in connections)."""

from __future__ import annotations

import asyncio

import pytest

from services.notifier.emails import Outgoing
from services.notifier.failures import Kind, Stage
from services.notifier.mailer import MailFailure
from services.notifier.mailer_pool import MailerPool

WAIT = 5.0


class Connection:
    """A stand-in SMTP connection that records its sends and notices overlapping use."""

    def __init__(self, release: asyncio.Event, fail: bool = False) -> None:
        self.release = release
        self.fail = fail
        self.sent: list[str] = []
        self.busy = False
        self.overlapped = False
        self.closed_within: float | None = None

    async def send(self, message: Outgoing) -> None:
        self.overlapped |= self.busy
        self.busy = True
        try:
            await self.release.wait()
            if self.fail:
                raise MailFailure(Kind.MESSAGE_DEFERRED, Stage.DATA, "451 try later")
            self.sent.append(message.recipient)
        finally:
            self.busy = False

    async def check(self, sender: str) -> None:
        await self.send(Outgoing(sender, sender, "<check>", b""))

    async def close(self, grace: float | None = None) -> None:
        self.closed_within = grace


def outgoing(n: int) -> Outgoing:
    return Outgoing("pilots@cities.example.org", f"fp{n}@example.org", f"<{n}>", b"x")


async def test_send_pool_each_connection_one_message_at_a_time():
    release = asyncio.Event()
    connections = [Connection(release) for _ in range(3)]
    pool = MailerPool(connections)

    sends = [asyncio.create_task(pool.send(outgoing(n))) for n in range(7)]
    await asyncio.sleep(0.01)
    busy_while_held = sum(c.busy for c in connections)
    release.set()
    await asyncio.wait_for(asyncio.gather(*sends), WAIT)

    assert busy_while_held == 3  # three sends at once, the other four waiting
    assert sorted(r for c in connections for r in c.sent) == sorted(
        f"fp{n}@example.org" for n in range(7)
    )
    assert not any(c.overlapped for c in connections)


async def test_send_pool_failure_returns_its_connection():
    release = asyncio.Event()
    release.set()
    pool = MailerPool([Connection(release, fail=True)])

    with pytest.raises(MailFailure):
        await pool.send(outgoing(1))
    with pytest.raises(MailFailure):  # the connection is back in the pool, not lost
        await asyncio.wait_for(pool.send(outgoing(2)), WAIT)


async def test_close_pool_closes_every_connection():
    connections = [Connection(asyncio.Event()) for _ in range(2)]

    await MailerPool(connections).close(grace=1.5)

    assert [c.closed_within for c in connections] == [1.5, 1.5]


def test_new_pool_without_connections_refused():
    with pytest.raises(ValueError, match="at least one"):
        MailerPool([])
