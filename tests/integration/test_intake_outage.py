"""A broker outage under load: the intake answers 503 while Kafka is away, and every response it
answered 202 for is in the topic once Kafka is back.

The broker is the test's own (tests/private_broker.py), killed and restarted mid-stream; the
shared stack's broker is never touched. The intake runs as operators run it, in its own process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.events import SurveyResponse
from shared.kafka import ensure_topics
from tests.private_broker import Broker
from tests.support import (
    ServiceProcess,
    Stack,
    assert_clean_exit,
    eventually,
    read_topic,
    start_service,
)
from tests.webhook_load import Phase, WebhookLoad, current, finish, webhook_secrets

pytestmark = pytest.mark.integration

CLIENTS = 4
BEFORE_OUTAGE = 20  # responses accepted before the broker is killed
ANSWERS_WHILE_DOWN = 8  # answers sent and received entirely while it is down
AFTER_OUTAGE = 20  # responses accepted after it is back


@pytest.fixture
def intake(stack: Stack, run_id: str, broker: Broker, tmp_path: Path) -> Iterator[ServiceProcess]:
    environment = {
        **stack.environment(run_id),
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "PUBLISH_TIMEOUT_SECONDS": "3",
        **webhook_secrets(),
    }
    asyncio.run(
        ensure_topics(
            broker.bootstrap,
            [environment["TOPIC_RESPONSES"]],
            partitions=3,
            replication_factor=1,
        )
    )
    service = start_service("intake", environment, tmp_path)
    try:
        service.wait_ready(within=120)
        yield service
    finally:
        assert_clean_exit(service, service.terminate())


async def test_receive_webhook_broker_outage_503_then_nothing_accepted_lost(
    intake: ServiceProcess, broker: Broker, stack: Stack, run_id: str
) -> None:
    load = WebhookLoad(intake.url, run_id)
    async with httpx.AsyncClient(timeout=60) as http:
        clients = await load.run(CLIENTS, http)
        try:
            await eventually(
                lambda: current(len(load.taken)), lambda n: n >= BEFORE_OUTAGE, within=120
            )
            await asyncio.to_thread(broker.stop)
            load.phase = Phase.DOWN
            await eventually(
                lambda: current(len(load.answered_while(Phase.DOWN))),
                lambda n: n >= ANSWERS_WHILE_DOWN,
                within=120,
            )
            load.phase = Phase.RESTARTING
            await asyncio.to_thread(broker.start)
            load.phase = Phase.BACK
            await eventually(
                lambda: current(load.taken_in(Phase.BACK)),
                lambda n: n >= AFTER_OUTAGE,
                within=180,
            )
        finally:
            await finish(load, clients, within=180)

    statuses = {answer.status for answer in load.answers}
    assert statuses <= {200, 202, 503}, (statuses, intake.log_tail())
    assert all(a.retry_after for a in load.answers if a.status == 503)
    down = load.answered_while(Phase.DOWN)
    assert len(down) >= ANSWERS_WHILE_DOWN
    assert {a.status for a in down} == {503}
    assert set(load.taken) == set(load.sent)  # every client saw each of its responses through

    records = await read_topic(broker.bootstrap, stack.environment(run_id)["TOPIC_RESPONSES"])
    events = [SurveyResponse.model_validate_json(record.value) for record in records]
    published = [event.response_id for event in events]
    assert sorted(set(load.taken) - set(published)) == []  # not one accepted response lost
    assert sorted(published) == sorted(set(published))  # nor published twice
    assert set(published) <= set(load.sent)
    for record, event in zip(records, events, strict=True):
        assert record.key == event.response_id.encode()
        expected = {**load.sent[event.response_id], "received_at": event.received_at}
        assert event == SurveyResponse.model_validate(expected)  # what its client sent
