"""A MongoDB crash under webhook load: the server is SIGKILLed while the intake takes webhooks
and analytics applies them, and restarted on the same data. While it is down the intake answers
503 with `Retry-After` (never 500); once it is back every response answered 202 or 200 is counted
exactly once: the analytics API equals a hand recount and `verify` exits 0.

The MongoDB-wire server is the test's own (tests/private_servers.py); the shared stack's is never
touched. Intake and analytics run as operators run them, each in its own process.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.kafka import consumer_lag, ensure_topics
from tests.private_servers import MongoServer, private_mongodb
from tests.recount import assert_api_exact
from tests.support import (
    ServiceProcess,
    Stack,
    assert_clean_exit,
    eventually,
    start_service,
)
from tests.webhook_load import Phase, WebhookLoad, current, finish, webhook_secrets

pytestmark = [pytest.mark.integration, pytest.mark.fault]

CLIENTS = 4
BEFORE_OUTAGE = 60  # responses taken before the server is killed
ANSWERS_WHILE_DOWN = 8  # answers to requests sent and answered while it is down
AFTER_OUTAGE = 60  # responses taken after it is back
WAIT = 240.0  # seconds: generous, the machine is shared


@dataclass
class Services:
    """The intake and analytics processes of the test, and their settings."""

    environment: dict[str, str]
    intake: ServiceProcess
    analytics: ServiceProcess


@pytest.fixture
def mongodb(tmp_path: Path) -> Iterator[MongoServer]:
    own = private_mongodb(tmp_path / "ferretdb")
    try:
        yield own
    finally:
        own.close()


@pytest.fixture
def services(stack: Stack, run_id: str, mongodb: MongoServer, tmp_path: Path) -> Iterator[Services]:
    environment = {
        **stack.environment(run_id),
        "MONGODB_URL": mongodb.url,
        "ANALYTICS_BATCH_SIZE": "50",
        # A claim left `publishing` when the server died is taken over after this, not 30 s.
        "CLAIM_LEASE_SECONDS": "5",
        **webhook_secrets(),
    }
    asyncio.run(ensure_topics(stack.kafka, [environment["TOPIC_RESPONSES"]], partitions=3))
    intake = start_service("intake", environment, tmp_path)
    analytics = start_service("analytics", environment, tmp_path)
    try:
        intake.wait_ready(within=120)
        analytics.wait_ready(within=120)
        yield Services(environment, intake, analytics)
    finally:
        for service in (intake, analytics):
            assert_clean_exit(service, service.terminate())


@pytest.mark.timeout(600)
async def test_mongodb_sigkill_under_load_503_then_counted_exactly(
    services: Services, mongodb: MongoServer, stack: Stack, run_id: str
) -> None:
    environment = services.environment
    topic, group = environment["TOPIC_RESPONSES"], environment["ANALYTICS_GROUP_ID"]
    load = WebhookLoad(services.intake.url, run_id, seed=random.SystemRandom().randrange(2**32))
    print(f"seed {load.seed}")

    async def lag() -> int:
        return await consumer_lag(stack.kafka, group, topic)

    async with httpx.AsyncClient(timeout=60) as http:
        clients = await load.run(CLIENTS, http)
        try:
            await eventually(
                lambda: current(len(load.taken)), lambda n: n >= BEFORE_OUTAGE, within=WAIT
            )
            # The kill hits work in progress: webhooks in flight, records analytics has not
            # committed (so not applied, or applied and not committed).
            behind = await eventually(
                lambda: busy(load, lag), lambda seen: seen is not None, within=WAIT, interval=0.05
            )
            await asyncio.to_thread(mongodb.stop)
            load.phase = Phase.DOWN
            killed_at = time.monotonic()
            assert behind is not None
            in_flight, lag_at_kill = behind
            print(f"killed with {in_flight} requests in flight, analytics {lag_at_kill} behind")
            await eventually(
                lambda: current(len(load.answered_while(Phase.DOWN))),
                lambda n: n >= ANSWERS_WHILE_DOWN,
                within=WAIT,
            )
            # Nothing was taken while the server was away, so analytics is still behind.
            assert await lag() > 0
            load.phase = Phase.RESTARTING
            await asyncio.to_thread(mongodb.start)
            load.phase = Phase.BACK
            print(f"restarted after {time.monotonic() - killed_at:.1f}s")
            await eventually(
                lambda: current(load.taken_in(Phase.BACK)),
                lambda n: n >= AFTER_OUTAGE,
                within=WAIT,
            )
        finally:
            await finish(load, clients, within=WAIT)

    statuses = load.statuses()
    print(f"answers {dict(statuses)}, {len(load.taken)} responses taken")
    assert set(statuses) <= {200, 202, 503}, (statuses, services.intake.log_tail())
    assert load.errors == {}, load.errors
    assert all(a.retry_after for a in load.answers if a.status == 503)
    down = load.answered_while(Phase.DOWN)
    assert len(down) >= ANSWERS_WHILE_DOWN
    assert {a.status for a in down} == {503}
    assert set(load.taken) == set(load.sent)  # every client saw each of its responses through
    assert services.intake.process.poll() is None, services.intake.log_tail()
    assert services.analytics.process.poll() is None, services.analytics.log_tail()

    # Analytics caught up: every record committed, each response counted once.
    await eventually(lag, lambda n: n == 0, within=WAIT, interval=1.0)
    await assert_api_exact(environment, services.analytics, load.records(), random.Random(0))


async def busy(load: WebhookLoad, lag: Callable[[], Awaitable[int]]) -> tuple[int, int] | None:
    """(requests in flight, analytics' lag) when both are above zero, else None."""
    in_flight = load.in_flight
    if in_flight == 0:
        return None
    behind = await lag()
    return (in_flight, behind) if behind > 0 and load.in_flight > 0 else None
