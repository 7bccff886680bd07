"""A broker outage under load: the intake answers 503 while Kafka is away, and every response it
answered 202 for is in the topic once Kafka is back.

The broker is the test's own (tests/private_broker.py), killed and restarted mid-stream; the
shared stack's broker is never touched. The intake runs as operators run it, in its own process.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import httpx
import pytest

from shared.events import SurveyResponse
from shared.kafka import ensure_topics
from tests.private_broker import Broker, private_broker
from tests.support import (
    WEBHOOK_SECRET,
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

pytestmark = pytest.mark.integration

SURVEY = "cities-2024-priorities"
CLIENTS = 4
BEFORE_OUTAGE = 20  # responses accepted before the broker is killed
ANSWERS_WHILE_DOWN = 8  # answers sent and received entirely while it is down
AFTER_OUTAGE = 20  # responses accepted after it is back
RETRY_PAUSE = 0.3  # seconds; the intake's Retry-After (5 s) would only make the test slower


class Phase(IntEnum):
    """Where the broker is, as far as the test knows."""

    UP = 0
    DOWN = 1  # killed: the process is gone
    RESTARTING = 2  # restarted, or on its way
    BACK = 3  # serving again


@dataclass(frozen=True)
class Answer:
    """One request and its answer, with the phases around it."""

    response_id: str
    status: int
    retry_after: str | None
    sent_in: Phase
    answered_in: Phase


@dataclass
class Load:
    """Concurrent clients posting distinct responses, each retrying a 503 until it is taken."""

    webhook: str
    run_id: str
    phase: Phase = Phase.UP
    stopping: bool = False
    answers: list[Answer] = field(default_factory=list)
    sent: dict[str, dict[str, object]] = field(default_factory=dict)
    taken: dict[str, int] = field(default_factory=dict)  # response id -> 202 or 200
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def taken_in(self, phase: Phase) -> int:
        """Responses whose final answer came in `phase`."""
        return sum(1 for a in self.answers if a.status in (200, 202) and a.answered_in is phase)

    async def client(self, http: httpx.AsyncClient) -> None:
        """Post one response after another until told to stop; never give up on one."""
        while not self.stopping:
            number = next(self._ids)
            body = canonical_response(f"outage-{self.run_id}-{number}", answers={"n": number})
            response_id = f"generic:{body['response_id']}"
            self.sent[response_id] = body
            raw = dumps(body)
            for attempt in itertools.count():
                sent_in = self.phase
                answer = await http.post(
                    self.webhook, content=raw, headers=signed_headers(raw, f"{number}-{attempt}")
                )
                self.answers.append(
                    Answer(
                        response_id,
                        answer.status_code,
                        answer.headers.get("retry-after"),
                        sent_in,
                        self.phase,
                    )
                )
                if answer.status_code in (200, 202):
                    self.taken[response_id] = answer.status_code
                    break
                await asyncio.sleep(RETRY_PAUSE)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    own = private_broker(tmp_path / "kafka")
    try:
        yield own
    finally:
        own.close()


@pytest.fixture
def intake(stack: Stack, run_id: str, broker: Broker, tmp_path: Path) -> Iterator[ServiceProcess]:
    environment = {
        **stack.environment(run_id),
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "PUBLISH_TIMEOUT_SECONDS": "3",
        "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC": WEBHOOK_SECRET,
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
    load = Load(f"{intake.url}/v1/webhooks/generic/{SURVEY}", run_id)
    async with httpx.AsyncClient(timeout=60) as http:
        clients = [asyncio.create_task(load.client(http)) for _ in range(CLIENTS)]
        try:
            await eventually(
                lambda: current(len(load.taken)), lambda n: n >= BEFORE_OUTAGE, within=120
            )
            await asyncio.to_thread(broker.stop)
            load.phase = Phase.DOWN
            await eventually(
                lambda: current(answered_while_down(load)),
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
            load.stopping = True
            # Each client finishes the response in hand: it retries it until it is taken.
            await asyncio.wait_for(asyncio.gather(*clients), timeout=180)

    statuses = {answer.status for answer in load.answers}
    assert statuses <= {200, 202, 503}, (statuses, intake.log_tail())
    assert all(a.retry_after for a in load.answers if a.status == 503)
    down = [a for a in load.answers if a.sent_in is Phase.DOWN and a.answered_in is Phase.DOWN]
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
        expected = {
            **load.sent[event.response_id],
            "response_id": event.response_id,
            "source": "generic",
            "received_at": event.received_at,
        }
        assert event == SurveyResponse.model_validate(expected)  # what its client sent


def answered_while_down(load: Load) -> int:
    """Answers to requests sent after the broker was killed and answered before its restart."""
    return sum(1 for a in load.answers if a.sent_in is Phase.DOWN and a.answered_in is Phase.DOWN)


async def current(value: int) -> int:
    """`value`, as the awaitable probe `eventually` polls."""
    return value
