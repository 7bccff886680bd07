"""SIGTERM while a pilot's emails are going out: the dispatcher finishes the message it is
sending, leaves nothing `sending`, and the process stops within the operators' bound, also when
the SMTP server hangs."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from services.notifier.deliveries import DELIVERIES
from shared import mongo
from shared.kafka import consumer_lag
from tests.integration.notifier_support import Recorder, addresses, focal_response, pilot, records
from tests.support import (
    OPERATOR_TOKEN,
    Mailbox,
    ServiceProcess,
    Stack,
    assert_clean_exit,
    eventually,
    free_port,
    produce,
    start_service,
)

pytestmark = pytest.mark.integration
PEOPLE = 60
SEND_RATE = 20  # emails per second: the run takes about 3 s, so SIGTERM comes mid-run


def notifier_environment(stack: Stack, run_id: str, **extra: str) -> dict[str, str]:
    return {
        **stack.environment(run_id),
        "OPERATOR_TOKEN": OPERATOR_TOKEN,
        "POLL_INTERVAL_SECONDS": "0.2",
        "SEND_RATE_PER_SECOND": str(SEND_RATE),
        # About shutdown, not consent: no confirmation step (test_notifier_consent.py).
        "DOUBLE_OPT_IN": "false",
        **extra,
    }


async def register(stack: Stack, run_id: str, people: list[str]) -> None:
    responses = (
        focal_response(n, email, interests=["climate-resilience"]) for n, email in enumerate(people)
    )
    await produce(stack.kafka, stack.environment(run_id)["TOPIC_RESPONSES"], records(*responses))


async def counts(service: ServiceProcess, pilot_id: str) -> dict[str, int]:
    async with httpx.AsyncClient(
        base_url=service.url, headers={"authorization": f"Bearer {OPERATOR_TOKEN}"}
    ) as client:
        answer = await client.get("/v1/deliveries", params={"pilot_id": pilot_id})
        return dict(answer.json()["counts"])


@pytest.fixture
async def states(stack: Stack, run_id: str) -> AsyncIterator[Any]:
    """The delivery states of a pilot as stored, read behind the notifier's back."""
    client = mongo.new_client(stack.mongodb_url)
    deliveries = mongo.database(client, f"test_{run_id}")[DELIVERIES]

    async def of(pilot_id: str) -> Counter[str]:
        return Counter([d["state"] async for d in deliveries.find({"pilot_id": pilot_id})])

    yield of
    await client.close()


async def terminate(service: ServiceProcess) -> None:
    try:
        code = await asyncio.to_thread(service.terminate)
    finally:
        if service.process.poll() is None:
            service.process.kill()
    assert_clean_exit(service, code)


async def test_sigterm_mid_pilot_nothing_left_sending_one_email_each(
    stack: Stack, run_id: str, tmp_path: Path, states: Any
) -> None:
    people = addresses(run_id, "shutdown", PEOPLE)
    announced = pilot(f"pilot-{run_id}")
    await register(stack, run_id, people)
    environment = notifier_environment(stack, run_id)
    registry_group = f"{environment['NOTIFIER_GROUP_ID']}.registry"

    first = start_service("notifier", environment, tmp_path)
    try:
        await asyncio.to_thread(first.wait_ready)
        # Everyone registered first, so that the pilot's run is one long batch of deliveries.
        await eventually(
            lambda: consumer_lag(stack.kafka, registry_group, environment["TOPIC_RESPONSES"]),
            lambda lag: lag == 0,
        )
        await produce(stack.kafka, environment["TOPIC_PILOTS"], records(announced))
        await eventually(
            lambda: counts(first, announced.pilot_id), lambda c: c.get("sent", 0) >= 10
        )
    finally:
        await terminate(first)
    after_stop = await states(announced.pilot_id)

    second = start_service("notifier", environment, tmp_path)
    try:
        await asyncio.to_thread(second.wait_ready)
        await eventually(
            lambda: counts(second, announced.pilot_id), lambda c: c == {"sent": PEOPLE}, within=60
        )
    finally:
        await terminate(second)

    assert after_stop["sending"] == 0, after_stop
    assert 10 <= after_stop["sent"] < PEOPLE, after_stop  # stopped mid-run, not before or after
    assert after_stop.total() == PEOPLE
    mailbox = Mailbox(stack.mail_api)
    received = {address: len(await mailbox.messages_to(address)) for address in people}
    assert received == {address: 1 for address in people}


async def test_sigterm_smtp_server_hung_exits_within_bound(
    stack: Stack, run_id: str, tmp_path: Path, states: Any
) -> None:
    people = addresses(run_id, "hung", 5)
    announced = pilot(f"pilot-{run_id}")
    await register(stack, run_id, people)
    recorder = Recorder()
    recorder.hold_at = 3  # the third DATA is never answered while the notifier runs
    port = free_port()
    server = Controller(recorder, hostname="127.0.0.1", port=port)
    server.start()
    try:
        environment = notifier_environment(stack, run_id, SMTP_PORT=str(port))
        service = start_service("notifier", environment, tmp_path)
        try:
            await asyncio.to_thread(service.wait_ready)
            await produce(stack.kafka, environment["TOPIC_PILOTS"], records(announced))
            assert await asyncio.to_thread(recorder.holding.wait, 60), service.log_tail()
        finally:
            await terminate(service)
    finally:
        recorder.release.set()
        server.stop()

    # Cut off after the grace period: the held delivery waits for its lease, the rest are due.
    assert await states(announced.pilot_id) == Counter({"sent": 2, "sending": 1, "pending": 2})
    assert sorted(recorder.count().values()) == [1, 1]  # two sent, each once
