"""The intake's publisher bounds both waits, the hand-over to the producer and the broker's
acknowledgement, by one deadline, and tells them apart."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from faststream.kafka import KafkaBroker

from services.intake.publisher import BrokerUnavailable, EventPublisher, Unacknowledged


class FakeBroker:
    """Takes a record after `take_seconds` and acknowledges it with `ack` (never, if pending)."""

    def __init__(self, take_seconds: float, ack: asyncio.Future[Any]) -> None:
        self.take_seconds = take_seconds
        self.ack = ack
        self.records: list[bytes] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def publish(self, body: bytes, **_: Any) -> asyncio.Future[Any]:
        await asyncio.sleep(self.take_seconds)
        self.records.append(body)
        return self.ack


def publisher(broker: FakeBroker, timeout: float = 0.1) -> EventPublisher:
    return EventPublisher(cast(KafkaBroker, broker), timeout)


async def test_publish_acknowledged_returns() -> None:
    ack = asyncio.get_running_loop().create_future()
    ack.set_result(None)
    broker = FakeBroker(0, ack)

    await publisher(broker).publish("topic", "key", b'{"a": 1}')

    assert broker.records == [b'{"a": 1}']


async def test_publish_not_taken_in_time_unavailable() -> None:
    broker = FakeBroker(1.0, asyncio.get_running_loop().create_future())

    with pytest.raises(BrokerUnavailable) as raised:
        await publisher(broker).publish("topic", "key", b"{}")

    assert not isinstance(raised.value, Unacknowledged)  # never handed to the producer


async def test_publish_taken_not_acknowledged_gives_the_pending_ack() -> None:
    ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    broker = FakeBroker(0.05, ack)

    with pytest.raises(Unacknowledged) as raised:
        await publisher(broker, timeout=0.1).publish("topic", "key", b"{}")

    assert raised.value.ack is ack and not ack.cancelled()  # the producer's answer still comes
    ack.set_result(None)


async def test_publish_refused_by_the_broker_unavailable() -> None:
    ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    ack.set_exception(RuntimeError("not enough replicas"))

    with pytest.raises(BrokerUnavailable, match="not enough replicas"):
        await publisher(FakeBroker(0, ack)).publish("topic", "key", b"{}")
