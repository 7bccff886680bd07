"""services.notifier.consumer: a write the database refuses parks the event; others retry."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import ConsumerRecord
from bson.errors import InvalidDocument
from pymongo.errors import AutoReconnect, OperationFailure

from services.notifier import consumer


class Broker:
    """Records what would be published."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    async def publish(self, value: bytes, **kwargs: Any) -> None:
        self.published.append({"value": value, **kwargs})


class Message:
    def __init__(self, value: bytes = b'{"pilot_id": "pilot-1"}') -> None:
        self.raw_message = ConsumerRecord(
            topic="pilots.announced.v1",
            partition=3,
            offset=12,
            timestamp=0,
            timestamp_type=0,
            key=b"pilot-1",
            value=value,
            checksum=None,
            serialized_key_size=7,
            serialized_value_size=len(value),
            headers=[],
        )


async def failing(exc: Exception) -> None:
    raise exc


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer, "RETRY_PAUSE_SECONDS", 0)


@pytest.mark.parametrize(
    "exc",
    [InvalidDocument("Key names must not contain the NULL byte"), OperationFailure("bad", 2)],
)
async def test_retrying_refused_write_parks_the_event(exc: Exception) -> None:
    broker = Broker()

    await consumer._retrying(broker, Message(), failing(exc), "notifier.pilots")  # type: ignore[arg-type]

    (parked,) = broker.published
    headers = parked["headers"]
    assert parked["topic"] == "pilots.announced.v1.dlq"
    assert parked["key"] == b"pilot-1"
    assert headers["dlq-reason"] == "refused"
    assert headers["dlq-group"] == "notifier.pilots"
    assert headers["dlq-error"].startswith("refused by the database: ")
    assert '"offset": 12' in headers["dlq-source"]


@pytest.mark.parametrize(
    "exc",
    [AutoReconnect("connection closed"), OperationFailure("database is locked", 1), OSError()],
)
async def test_retrying_transient_failure_raises_and_parks_nothing(exc: Exception) -> None:
    broker = Broker()

    with pytest.raises(type(exc)):
        await consumer._retrying(broker, Message(), failing(exc), "notifier.pilots")  # type: ignore[arg-type]

    assert broker.published == []


async def test_parse_garbage_parked_as_undecodable() -> None:
    broker = Broker()
    message = Message(b"\xff garbage")

    event = await consumer._parse(broker, message, consumer.PilotAnnounced, "notifier.pilots")  # type: ignore[arg-type]

    assert event is None
    assert broker.published[0]["headers"]["dlq-reason"] == "undecodable"
