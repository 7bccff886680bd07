"""services.notifier.dispatcher: stopping the dispatcher (no server: the steps are stand-ins)."""

from __future__ import annotations

import asyncio
from typing import Any

from services.notifier.dispatcher import Dispatcher, Throttle
from services.notifier.health import SmtpHealth
from services.notifier.retry import Backoff
from services.notifier.settings import NotifierSettings

WAIT = 5.0  # a bound on waits that end at once when the code is right


async def nothing_due() -> bool:
    return False


def notifier(**settings: Any) -> Dispatcher:
    # The dispatcher's loop and rate limit need neither the stores nor the mailer.
    values = NotifierSettings(**settings)
    backoff = Backoff(values.retry_first_delay_seconds, values.retry_max_delay_seconds)
    throttle = Throttle(values.send_rate_per_second)
    return Dispatcher(nothing_due, throttle, SmtpHealth(backoff), values.poll_interval_seconds)


async def test_send_allowed_stop_while_rate_limited_false():
    subject = notifier(send_rate_per_second=0.01)
    assert await subject.throttle.allow()  # the one token of the bucket

    waiting = asyncio.create_task(subject.throttle.allow())  # the next one is 100 s away
    await asyncio.sleep(0)
    subject.stop()

    assert await asyncio.wait_for(waiting, WAIT) is False


async def test_send_allowed_after_stop_false():
    subject = notifier(send_rate_per_second=0)
    subject.stop()

    assert await subject.throttle.allow() is False


async def test_run_dispatcher_stop_finishes_current_send():
    subject = notifier(poll_interval_seconds=10)
    sending, release = asyncio.Event(), asyncio.Event()
    finished: list[int] = []

    async def send_due() -> bool:
        sending.set()
        await release.wait()
        finished.append(1)
        return True

    subject.send_due = send_due
    dispatcher = asyncio.create_task(subject.run())
    await asyncio.wait_for(sending.wait(), WAIT)
    stopping = asyncio.create_task(subject.stop_within(dispatcher, grace=WAIT))
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.wait_for(stopping, WAIT)

    assert finished == [1]  # the send in progress ran to its end, and no other began
    assert dispatcher.done() and not dispatcher.cancelled()


async def test_run_dispatcher_idle_stop_returns():
    subject = notifier(poll_interval_seconds=10)

    async def send_due() -> bool:
        return False

    subject.send_due = send_due
    dispatcher = asyncio.create_task(subject.run())
    await asyncio.sleep(0.05)
    await asyncio.wait_for(subject.stop_within(dispatcher, grace=WAIT), WAIT)

    assert dispatcher.done() and not dispatcher.cancelled()


async def test_stop_dispatcher_hung_send_cancelled_after_grace():
    subject = notifier(poll_interval_seconds=10)
    sending = asyncio.Event()

    async def send_due() -> bool:
        sending.set()
        await asyncio.Event().wait()  # an SMTP server that never answers
        return True

    subject.send_due = send_due
    dispatcher = asyncio.create_task(subject.run())
    await asyncio.wait_for(sending.wait(), WAIT)
    await asyncio.wait_for(subject.stop_within(dispatcher, grace=0.1), WAIT)

    assert dispatcher.cancelled()


async def test_run_dispatcher_workers_send_side_by_side_and_stop_together():
    subject = notifier(poll_interval_seconds=10)
    subject.workers = 3
    in_flight, most = 0, 0
    all_in, release = asyncio.Event(), asyncio.Event()

    async def send_due() -> bool:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if in_flight == 3:
            all_in.set()
        await release.wait()
        in_flight -= 1
        return True

    subject.send_due = send_due
    dispatcher = asyncio.create_task(subject.run())
    await asyncio.wait_for(all_in.wait(), WAIT)
    stopping = asyncio.create_task(subject.stop_within(dispatcher, grace=WAIT))
    release.set()
    await asyncio.wait_for(stopping, WAIT)

    assert most == 3
    assert dispatcher.done() and not dispatcher.cancelled()
