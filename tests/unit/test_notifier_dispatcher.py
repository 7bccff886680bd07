"""services.notifier.notifier: stopping the dispatcher (no server: the steps are stand-ins)."""

from __future__ import annotations

import asyncio
from typing import Any

from services.notifier.notifier import Notifier
from services.notifier.settings import NotifierSettings

WAIT = 5.0  # a bound on waits that end at once when the code is right


def notifier(**settings: Any) -> Notifier:
    # The dispatcher's loop and rate limit need neither the stores nor the mailer.
    return Notifier(
        settings=NotifierSettings(**settings),
        registry=None,  # type: ignore[arg-type]
        deliveries=None,  # type: ignore[arg-type]
        mailer=None,  # type: ignore[arg-type]
    )


async def test_send_allowed_stop_while_rate_limited_false():
    subject = notifier(send_rate_per_second=0.01)
    assert await subject._send_allowed()  # the one token of the bucket

    waiting = asyncio.create_task(subject._send_allowed())  # the next one is 100 s away
    await asyncio.sleep(0)
    subject.stop()

    assert await asyncio.wait_for(waiting, WAIT) is False


async def test_send_allowed_after_stop_false():
    subject = notifier(send_rate_per_second=0)
    subject.stop()

    assert await subject._send_allowed() is False


async def test_run_dispatcher_stop_finishes_current_send():
    subject = notifier(poll_interval_seconds=10)
    sending, release = asyncio.Event(), asyncio.Event()
    finished: list[int] = []

    async def send_due() -> bool:
        sending.set()
        await release.wait()
        finished.append(1)
        return True

    subject.send_due = send_due  # type: ignore[method-assign]
    dispatcher = asyncio.create_task(subject.run_dispatcher())
    await asyncio.wait_for(sending.wait(), WAIT)
    stopping = asyncio.create_task(subject.stop_dispatcher(dispatcher, grace=WAIT))
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.wait_for(stopping, WAIT)

    assert finished == [1]  # the send in progress ran to its end, and no other began
    assert dispatcher.done() and not dispatcher.cancelled()


async def test_run_dispatcher_idle_stop_returns():
    subject = notifier(poll_interval_seconds=10)

    async def send_due() -> bool:
        return False

    subject.send_due = send_due  # type: ignore[method-assign]
    dispatcher = asyncio.create_task(subject.run_dispatcher())
    await asyncio.sleep(0.05)
    await asyncio.wait_for(subject.stop_dispatcher(dispatcher, grace=WAIT), WAIT)

    assert dispatcher.done() and not dispatcher.cancelled()


async def test_stop_dispatcher_hung_send_cancelled_after_grace():
    subject = notifier(poll_interval_seconds=10)
    sending = asyncio.Event()

    async def send_due() -> bool:
        sending.set()
        await asyncio.Event().wait()  # an SMTP server that never answers
        return True

    subject.send_due = send_due  # type: ignore[method-assign]
    dispatcher = asyncio.create_task(subject.run_dispatcher())
    await asyncio.wait_for(sending.wait(), WAIT)
    await asyncio.wait_for(subject.stop_dispatcher(dispatcher, grace=0.1), WAIT)

    assert dispatcher.cancelled()
