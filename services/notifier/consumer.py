"""The notifier's subscribers: responses feed the registry, reviews withhold or release the
focal points of the responses they review, pilots become deliveries.

Responses come in batches (`REGISTRY_BATCH_SIZE`), registered together (`Notifier.on_responses`)
and committed once the whole batch is stored; on any other failure the batch is read again,
which registration makes harmless (a record already in is left as it is and copied into the
match index again).

No record stops its partition: one that is not an event or fails validation, or whose write
the database refuses for what it is (`shared.failures`), goes to the DLQ with the reason and
its position. Events are read tolerantly (`shared.events.TOLERANT`): a focal point or pilot with
a code newer than this service's taxonomy is registered and matched on that code. Any other
failure (MongoDB or SMTP away) parks nothing: the event is read again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeAlias, TypeVar

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel

from services.notifier.notifier import Notifier
from services.notifier.settings import NotifierSettings
from shared.events import PilotAnnounced, ResponseReview, SurveyResponse
from shared.failures import Disposition, classify
from shared.kafka import REFUSED, Rejection, decode_event, keep_raw, send_to_dlq

logger = logging.getLogger(__name__)
Event = TypeVar("Event", bound=BaseModel)
RETRY_PAUSE_SECONDS = 1.0
# Every batch costs a few commands whatever its size, so let the broker gather some data (at
# most a quarter of a second) rather than hand over a few records at a time.
FETCH_MIN_BYTES = 256 * 1024
FETCH_MAX_WAIT_MS = 250

Record: TypeAlias = ConsumerRecord[Any, Any]


def subscribe(broker: KafkaBroker, settings: NotifierSettings, notifier: Notifier) -> None:
    """Register both subscribers on `broker`; each commits only after its work is stored."""
    common: dict[str, Any] = {
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "decoder": keep_raw,
    }
    registry_group = f"{settings.notifier_group_id}.registry"
    pilots_group = f"{settings.notifier_group_id}.pilots"
    reviews_group = f"{settings.notifier_group_id}.reviews"

    @broker.subscriber(
        settings.topic_responses,
        group_id=registry_group,
        batch=True,
        max_records=settings.registry_batch_size,
        fetch_min_bytes=FETCH_MIN_BYTES,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        **common,
    )
    async def on_responses(message: KafkaMessage) -> None:
        records = message.raw_message
        batch = list(records) if isinstance(records, tuple) else [records]
        await handle_responses(batch, notifier, broker, registry_group)

    @broker.subscriber(settings.topic_reviews, group_id=reviews_group, **common)
    async def on_review(message: KafkaMessage) -> None:
        review = await _parse(broker, message.raw_message, ResponseReview, reviews_group)
        if review is not None:
            await _retrying(broker, message.raw_message, notifier.on_review(review), reviews_group)

    @broker.subscriber(settings.topic_pilots, group_id=pilots_group, **common)
    async def on_pilot(message: KafkaMessage) -> None:
        pilot = await _parse(broker, message.raw_message, PilotAnnounced, pilots_group)
        if pilot is not None:
            await _retrying(broker, message.raw_message, notifier.on_pilot(pilot), pilots_group)


async def handle_responses(
    records: list[Record], notifier: Notifier, broker: KafkaBroker, group: str
) -> None:
    """Register one batch of responses. What is not a valid response, and what the database
    refuses for what it is, goes to the DLQ before the batch's offsets are committed; the rest
    is registered."""
    valid: list[tuple[Record, SurveyResponse]] = []
    for record in records:
        event = decode_event(SurveyResponse, record.value)
        if isinstance(event, Rejection):
            await send_to_dlq(broker, record, event.error, reason=event.reason, group=group)
        else:
            valid.append((record, event))
    try:
        handled = await notifier.on_responses([event for _, event in valid])
    except Exception as exc:
        if classify(exc) is not Disposition.DEAD_LETTER:
            logger.exception("batch of %d responses failed; it will be read again", len(valid))
            await asyncio.sleep(RETRY_PAUSE_SECONDS)  # no busy loop while MongoDB is away
            raise
        # Refused, but not known for which response: one at a time finds it and parks it.
        for record, event in valid:
            await _retrying(broker, record, notifier.on_response(event), group)
        return
    for position, error in handled.refused:
        await _park(broker, valid[position][0], error, group)


async def _park(broker: KafkaBroker, record: Record, exc: Exception, group: str) -> None:
    """The same event would be refused at every attempt: park it, go on."""
    error = f"refused by the database: {type(exc).__name__}: {exc}"
    await send_to_dlq(broker, record, error, reason=REFUSED, group=group)


async def _parse(
    broker: KafkaBroker, record: Record, model: type[Event], group: str
) -> Event | None:
    event = decode_event(model, record.value)
    if isinstance(event, Rejection):
        await send_to_dlq(broker, record, event.error, reason=event.reason, group=group)
        return None
    return event


async def _retrying(broker: KafkaBroker, record: Record, work: Awaitable[Any], group: str) -> None:
    try:
        await work
    except Exception as exc:
        if classify(exc) is Disposition.DEAD_LETTER:
            await _park(broker, record, exc, group)
            return
        logger.exception("event handling failed; the event will be read again")
        await asyncio.sleep(RETRY_PAUSE_SECONDS)
        raise
