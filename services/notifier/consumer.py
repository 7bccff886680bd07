"""The notifier's subscribers: responses feed the registry, reviews withhold or release the
focal points of the responses they review, pilots become deliveries.

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
from typing import Any, TypeVar

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

    @broker.subscriber(settings.topic_responses, group_id=registry_group, **common)
    async def on_response(message: KafkaMessage) -> None:
        response = await _parse(broker, message, SurveyResponse, registry_group)
        if response is not None:
            await _retrying(broker, message, notifier.on_response(response), registry_group)

    @broker.subscriber(settings.topic_reviews, group_id=reviews_group, **common)
    async def on_review(message: KafkaMessage) -> None:
        review = await _parse(broker, message, ResponseReview, reviews_group)
        if review is not None:
            await _retrying(broker, message, notifier.on_review(review), reviews_group)

    @broker.subscriber(settings.topic_pilots, group_id=pilots_group, **common)
    async def on_pilot(message: KafkaMessage) -> None:
        pilot = await _parse(broker, message, PilotAnnounced, pilots_group)
        if pilot is not None:
            await _retrying(broker, message, notifier.on_pilot(pilot), pilots_group)


async def _parse(broker: KafkaBroker, message: Any, model: type[Event], group: str) -> Event | None:
    record = message.raw_message
    event = decode_event(model, record.value)
    if isinstance(event, Rejection):
        await send_to_dlq(broker, record, event.error, reason=event.reason, group=group)
        return None
    return event


async def _retrying(broker: KafkaBroker, message: Any, work: Awaitable[Any], group: str) -> None:
    try:
        await work
    except Exception as exc:
        if classify(exc) is Disposition.DEAD_LETTER:
            # The same event would be refused at every attempt: park it, go on.
            error = f"refused by the database: {type(exc).__name__}: {exc}"
            await send_to_dlq(broker, message.raw_message, error, reason=REFUSED, group=group)
            return
        logger.exception("event handling failed; the event will be read again")
        await asyncio.sleep(RETRY_PAUSE_SECONDS)
        raise
