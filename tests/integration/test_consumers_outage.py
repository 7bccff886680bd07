"""A MongoDB-wire server that goes away while analytics consumes: transient failures are
retried, never dead-lettered, and every response is counted once the server is back.

The server is a FerretDB of this test's own (the local stack's binary, on a free port, with its
data under `tmp_path`), killed and restarted on the same data; the shared one is never touched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.analytics import maintenance
from services.analytics.aggregates import OVERALL
from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import AnalyticsStore
from shared import topics
from shared.kafka import consumer_lag, ensure_topics, topics_with_dlq
from tests.support import (
    REPO,
    Stack,
    canonical_response,
    eventually,
    free_port,
    produce,
    read_topic,
    serving,
    settings_for,
)

pytestmark = pytest.mark.integration

FERRETDB = Path(os.environ.get("STACK_DIR", REPO / ".stack")) / "bin" / "ferretdb"


class PrivateFerretDB:
    """A FerretDB process of one test: started, killed and started again on the same data."""

    def __init__(self, data: Path) -> None:
        self.port = free_port()
        self.url = f"mongodb://127.0.0.1:{self.port}"
        self._data = data
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._data.mkdir(parents=True, exist_ok=True)
        log = (self._data.parent / "ferretdb.log").open("ab")
        self._process = subprocess.Popen(
            [str(FERRETDB), "-listen", f"127.0.0.1:{self.port}", "-data", str(self._data)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise AssertionError("the private FerretDB did not start in 30 s")

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)


@pytest.fixture
def ferretdb(tmp_path: Path) -> Iterator[PrivateFerretDB]:
    if not FERRETDB.exists():
        pytest.skip(f"no FerretDB binary at {FERRETDB} (the stack comes from containers)")
    server = PrivateFerretDB(tmp_path / "ferretdb" / "data")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def settings(
    stack: Stack, run_id: str, ferretdb: PrivateFerretDB
) -> AsyncIterator[AnalyticsSettings]:
    configured = settings_for(
        AnalyticsSettings, stack.environment(run_id), mongodb_url=ferretdb.url
    )
    await ensure_topics(stack.kafka, topics_with_dlq(configured.topic_responses), partitions=1)
    yield configured
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka)
    await admin.start()
    try:
        await admin.delete_topics(topics_with_dlq(configured.topic_responses))
    finally:
        await admin.close()


def records(run_id: str, numbers: range) -> list[tuple[bytes, bytes]]:
    made = []
    for number in numbers:
        body = {
            **canonical_response(f"generic:{run_id}-{number}"),
            "source": "generic",
            "received_at": "2024-05-02T10:31:02Z",
        }
        made.append((body["response_id"].encode(), json.dumps(body).encode()))
    return made


async def test_consume_store_outage_parks_nothing_and_counts_everything(
    stack: Stack,
    run_id: str,
    ferretdb: PrivateFerretDB,
    settings: AnalyticsSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="services.analytics.consumer")
    topic = settings.topic_responses
    app = create_app(settings)
    store: AnalyticsStore = app.state.store

    async def total() -> int:
        document = await store.aggregate(OVERALL)
        return int((document or {}).get("total", 0))

    async def lag() -> int:
        return await consumer_lag(stack.kafka, settings.analytics_group_id, topic)

    async with serving(app):
        await produce(stack.kafka, topic, records(run_id, range(20)))
        await eventually(total, lambda n: n == 20, within=60)

        ferretdb.kill()
        await produce(stack.kafka, topic, records(run_id, range(20, 50)))
        # The fault hits work in progress: the consumer has these records and cannot store
        # them; it keeps them uncommitted instead of parking them.
        stuck = []
        for _ in range(3):
            await asyncio.sleep(2)
            stuck.append(await lag())
        assert stuck == [30, 30, 30]
        failed = [r for r in caplog.records if "will be read again" in r.getMessage()]
        assert failed, "the consumer never met the outage"

        ferretdb.start()
        await eventually(total, lambda n: n == 50, within=90)
        await eventually(lag, lambda n: n == 0, within=30)
        audit = await maintenance.verify(store)

    assert await read_topic(stack.kafka, topics.dlq(topic), idle_seconds=1) == []
    assert audit.drifts == []
    assert audit.counters > 0
