"""The Kafka adapter of the intake: publish an event and wait for the broker's acknowledgement."""

from __future__ import annotations

import asyncio
import logging

from faststream.kafka import KafkaBroker
from pydantic import BaseModel

logger = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """Kafka did not take the event in time; the client should retry later."""


class EventPublisher:
    """Publishes events keyed by their id; connects lazily so the intake starts without Kafka."""

    def __init__(self, broker: KafkaBroker, timeout_seconds: float) -> None:
        self._broker = broker
        self._timeout = timeout_seconds
        self._started = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect the producer; raises `BrokerUnavailable` when Kafka cannot be reached."""
        async with self._lock:
            if self._started:
                return
            try:
                await asyncio.wait_for(self._broker.start(), self._timeout)
            except Exception as exc:
                await self._broker.stop()
                raise BrokerUnavailable(f"cannot connect to Kafka: {exc}") from exc
            self._started = True

    async def stop(self) -> None:
        """Flush and close the producer."""
        await self._broker.stop()
        self._started = False

    async def publish(self, topic: str, key: str, event: BaseModel) -> None:
        """Return once the broker acknowledged (`acks=all`), else raise `BrokerUnavailable`."""
        await self.start()
        try:
            await asyncio.wait_for(
                self._broker.publish(
                    event.model_dump_json().encode(),
                    topic=topic,
                    key=key.encode(),
                    headers={"content-type": "application/json"},
                ),
                self._timeout,
            )
        except Exception as exc:
            logger.warning("publish to %s failed: %s", topic, exc)
            raise BrokerUnavailable(f"Kafka did not acknowledge the event: {exc!r}") from exc

    async def ping(self) -> None:
        """Raise unless the producer is connected (for `/readyz`)."""
        await self.start()
