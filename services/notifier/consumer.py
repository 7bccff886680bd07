"""The notifier's subscribers: responses feed the registry, pilots become deliveries."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeVar

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel, ValidationError

from services.notifier.notifier import Notifier
from services.notifier.settings import NotifierSettings
from shared.events import PilotAnnounced, SurveyResponse
from shared.kafka import keep_raw, send_to_dlq

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

    @broker.subscriber(
        settings.topic_responses, group_id=f"{settings.notifier_group_id}.registry", **common
    )
    async def on_response(message: KafkaMessage) -> None:
        response = await _parse(broker, message, SurveyResponse)
        if response is not None:
            await _retrying(notifier.on_response(response))

    @broker.subscriber(
        settings.topic_pilots, group_id=f"{settings.notifier_group_id}.pilots", **common
    )
    async def on_pilot(message: KafkaMessage) -> None:
        pilot = await _parse(broker, message, PilotAnnounced)
        if pilot is not None:
            await _retrying(notifier.on_pilot(pilot))


async def _parse(broker: KafkaBroker, message: Any, model: type[Event]) -> Event | None:
    record = message.raw_message
    try:
        return model.model_validate_json(record.value or b"")
    except ValidationError as exc:
        await send_to_dlq(broker, record, str(exc))
        return None


async def _retrying(work: Any) -> None:
    try:
        await work
    except Exception:
        logger.exception("event handling failed; the event will be read again")
        await asyncio.sleep(RETRY_PAUSE_SECONDS)
        raise
