"""An intake process SIGKILLed while it publishes a response: the next delivery of it, to another
process, takes the dead one's claim over once its lease ran out and publishes it, once.

The kill lands on work in progress: the broker (the test's own, tests/private_broker.py) is down,
so the first process holds the response's pending record and has not answered its request.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest
from pymongo import AsyncMongoClient

from services.intake.app import RESPONSE_CLAIMS
from shared import mongo
from shared.events import SurveyResponse
from shared.kafka import ensure_topics
from tests.private_broker import Broker
from tests.support import (
    ServiceProcess,
    Stack,
    assert_clean_exit,
    canonical_response,
    dumps,
    eventually,
    read_topic,
    signed_headers,
    start_service,
)
from tests.webhook_load import webhook_secrets

pytestmark = pytest.mark.integration

SURVEY = "cities-2024-priorities"
WEBHOOK = f"/v1/webhooks/generic/{SURVEY}"
LEASE_SECONDS = 3


def intake_environment(stack: Stack, run_id: str, broker: Broker) -> dict[str, str]:
    return {
        **stack.environment(run_id),
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "PUBLISH_TIMEOUT_SECONDS": "60",  # the request still waits when the process is killed
        "CLAIM_LEASE_SECONDS": str(LEASE_SECONDS),
        **webhook_secrets(),
    }


async def pending_keys(client: AsyncMongoClient[mongo.Document], run_id: str) -> list[str]:
    pending = client[f"test_{run_id}"][f"{RESPONSE_CLAIMS}_pending"]
    return [document["_id"] async for document in pending.find({}, ["_id"])]


async def test_intake_killed_mid_publish_next_delivery_takes_over_published_once(
    stack: Stack,
    run_id: str,
    broker: Broker,
    mongo_client: AsyncMongoClient[mongo.Document],
    tmp_path: Path,
) -> None:
    environment = intake_environment(stack, run_id, broker)
    topic = environment["TOPIC_RESPONSES"]
    await ensure_topics(broker.bootstrap, [topic], partitions=1, replication_factor=1)
    body = dumps(canonical_response("crash-1"))
    key = f"{SURVEY}/generic:crash-1"
    client = mongo_client
    first: ServiceProcess = start_service("intake", environment, tmp_path)
    second: ServiceProcess | None = None
    try:
        await asyncio.to_thread(first.wait_ready, 120)
        await asyncio.to_thread(broker.stop)
        async with httpx.AsyncClient(timeout=90) as http:
            request = asyncio.ensure_future(
                http.post(f"{first.url}{WEBHOOK}", content=body, headers=signed_headers(body, "m1"))
            )
            # Work in progress: claimed, being published, not answered.
            await eventually(lambda: pending_keys(client, run_id), lambda keys: keys == [key])
            assert not request.done()
            first.process.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(first.process.wait, 10) == -signal.SIGKILL
            with pytest.raises(httpx.HTTPError):
                await request

            await asyncio.to_thread(broker.start)
            second = start_service("intake", environment, tmp_path)
            await asyncio.to_thread(second.wait_ready, 120)

            async def deliver(message_id: str) -> httpx.Response:
                headers = signed_headers(body, message_id)
                return await http.post(f"{second.url}{WEBHOOK}", content=body, headers=headers)

            # In flight until the dead process's lease ran out (503), then taken over.
            retried = await eventually(
                lambda: deliver("m2"), lambda answer: answer.status_code != 503, within=60
            )
            again = await deliver("m3")

        assert (retried.status_code, retried.json()["status"]) == (202, "accepted"), (
            second.log_tail()
        )
        assert (again.status_code, again.json()["status"]) == (200, "duplicate")
        records = await read_topic(broker.bootstrap, topic)
        events = [SurveyResponse.model_validate_json(record.value) for record in records]
        assert [event.response_id for event in events] == ["generic:crash-1"]  # once
        await eventually(lambda: pending_keys(client, run_id), lambda keys: keys == [])
    finally:
        if first.process.poll() is None:
            first.process.kill()
        if second is not None:
            assert_clean_exit(second, second.terminate())
