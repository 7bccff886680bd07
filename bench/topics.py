"""Topics of a benchmark: filled before the clock starts, and read by a bare consumer as the
baseline a service's consumer is held against."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.kafka_security import kafka_security


async def fill(bootstrap: str, topic: str, bodies: list[dict[str, Any]]) -> None:
    """Produce the responses, keyed by response id."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, **kafka_security().client_options()
    )
    await producer.start()
    try:
        pending = []
        for body in bodies:
            pending.append(
                await producer.send(
                    topic, json.dumps(body).encode(), key=body["response_id"].encode()
                )
            )
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def consume_only(bootstrap: str, topic: str, events: int, time_limit: float = 600.0) -> float:
    """The baseline: records/s of a bare consumer reading the whole topic."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-baseline-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kafka_security().client_options(),
    )
    await consumer.start()
    try:
        read = 0
        started = time.perf_counter()
        while read < events:
            if time.perf_counter() - started > time_limit:
                raise TimeoutError(f"baseline read {read} of {events}")
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            read += sum(len(records) for records in batch.values())
            await consumer.commit()  # as the service does, once per batch
        return events / (time.perf_counter() - started)
    finally:
        await consumer.stop()
