"""The Kafka adapter of the intake: publish an event and wait for the broker's acknowledgement."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faststream.kafka import KafkaBroker
from pydantic import BaseModel

logger = logging.getLogger(__name__)
FLUSH_ON_STOP_SECONDS = 5.0  # with the claims' settling, within the 10 s from SIGTERM to exit


class BrokerUnavailable(Exception):
    """Kafka did not take the event in time; the client should retry later."""


class Unacknowledged(BrokerUnavailable):
    """The producer holds the event but the broker did not acknowledge it in time.

    The producer keeps retrying it (idempotently), so it may still be written once Kafka is back:
    `ack` settles with the broker's answer, or with the producer's final failure.
    """

    def __init__(self, message: str, ack: asyncio.Future[Any]) -> None:
        super().__init__(message)
        self.ack = ack


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
        """Flush and close the producer, waiting at most `FLUSH_ON_STOP_SECONDS` for the broker."""
        bound = min(self._timeout, FLUSH_ON_STOP_SECONDS)
        try:
            # Unbounded, a flush to a broker that is down would hold the shutdown forever; what
            # is left was answered 503 and its claim is taken over once its lease runs out.
            await asyncio.wait_for(self._broker.stop(), bound)
        except TimeoutError:
            logger.warning("Kafka did not take the pending events within %ss", bound)
        self._started = False

    async def publish(self, topic: str, key: str, event: BaseModel | bytes) -> None:
        """Return once the broker acknowledged (`acks=all`), else raise `BrokerUnavailable`:
        `Unacknowledged` when the event was handed to the producer and may still be written.
        `event` as a model, or already encoded as its JSON."""
        await self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        try:
            # `asyncio.timeout`, not `wait_for`: the same bound without a task of its own.
            async with asyncio.timeout_at(deadline):
                ack = await self._broker.publish(
                    event if isinstance(event, bytes) else event.model_dump_json().encode(),
                    topic=topic,
                    key=key.encode(),
                    headers={"content-type": "application/json"},
                    no_confirm=True,
                )
        except Exception as exc:
            logger.warning("publish to %s failed: %s", topic, exc)
            raise BrokerUnavailable(f"Kafka did not take the event: {exc!r}") from exc
        try:
            # Shielded: on our timeout the producer goes on retrying the record, and the caller
            # must learn how that ends (a cancelled future would hide it).
            async with asyncio.timeout_at(deadline):
                await asyncio.shield(ack)
        except TimeoutError as exc:
            logger.warning("publish to %s not acknowledged within %ss", topic, self._timeout)
            raise Unacknowledged(
                f"Kafka did not acknowledge the event within {self._timeout}s", ack
            ) from exc
        except Exception as exc:
            logger.warning("publish to %s failed: %s", topic, exc)
            raise BrokerUnavailable(f"Kafka did not acknowledge the event: {exc!r}") from exc

    async def ping(self) -> None:
        """Raise unless the producer is connected (for `/readyz`)."""
        await self.start()
