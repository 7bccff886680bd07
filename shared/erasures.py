"""The subscriber of `privacy.erasures.v1` that every service holding personal data registers.

Each service reads the topic in its own consumer group and commits a record only after its
handler has erased everything (`AckPolicy.NACK_ON_ERROR`): a crash mid-way reads the event
again, and the handlers' steps are idempotent, so the rerun finishes the work. A record that is
not an erasure event goes to the DLQ; a failure that is not the record's (the database away) is
retried after a pause, parking nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.events import ErasureRequested
from shared.kafka import Rejection, decode_event, keep_raw, send_to_dlq

logger = logging.getLogger(__name__)
RETRY_PAUSE_SECONDS = 1.0


def subscribe_erasures(
    broker: KafkaBroker,
    topic: str,
    group_id: str,
    erase: Callable[[ErasureRequested], Awaitable[Any]],
) -> None:
    """Register `erase` for every erasure event of `topic`, in consumer group `group_id`."""

    @broker.subscriber(
        topic,
        group_id=group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=keep_raw,
    )
    async def on_erasure(message: KafkaMessage) -> None:
        record: Any = message.raw_message
        event = decode_event(ErasureRequested, record.value)
        if isinstance(event, Rejection):
            await send_to_dlq(broker, record, event.error, reason=event.reason, group=group_id)
            return
        try:
            await erase(event)
        except Exception:
            logger.exception("erasure %s failed; it will be read again", event.request_id)
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
            raise
