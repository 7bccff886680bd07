"""The analytics subscribers: a batch of records in -> raw responses -> changes of the
responses' states -> aggregate increments. Reviews (`survey.reviews.v1`) go the same way from
the second step (`states.py`).

Offsets are committed only after both steps succeeded; on an error the batch is read again,
which the store makes harmless (see `store.py`). No record stops its partition: one that is not
an event, fails validation, or that the database refuses for what it is goes to the DLQ with the
reason and its position, and the rest of its batch is counted. A failure that is not the
record's (the database away, a timeout) parks nothing: the batch is read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.analytics.settings import AnalyticsSettings
from services.analytics.states import Change, review_partition
from services.analytics.store import (
    AnalyticsStore,
    Positioned,
    PositionedReview,
    RawInsert,
    Recorded,
    first_changes,
)
from shared.events import ResponseReview, SurveyResponse
from shared.kafka import REFUSED, Rejection, decode_event, keep_raw, send_to_dlq
from shared.mongo import Document

logger = logging.getLogger(__name__)
RETRY_PAUSE_SECONDS = 1.0
# Every batch costs a few writes per aggregate document whatever its size, so let the broker
# gather some data rather than hand over a few records at a time, but wait at most 50 ms for it:
# each record waits up to that long before it can be counted, and with a backlog the minimum is
# reached at once. Measured (`bench.pipeline`, 200 webhooks/s): a 250 ms wait made the p95 from
# webhook to visible count 527 ms, 50 ms made it 207-232 ms, with the campaign's time unchanged.
FETCH_MIN_BYTES = 256 * 1024
FETCH_MAX_WAIT_MS = 50
# Responses decoded and stored together within a batch (`record_chunks`); measured on 2 cores,
# smaller chunks cost the database more commands than the overlap gains.
RECORD_CHUNK = 1000
YIELD_EVERY = 100
# Chunks whose raw insert may be under way at once: while one insert waits for the database's
# writer, the server reads and decodes the next. Measured (`bench.analytics`, 100,000 responses,
# batches of 10,000, runs alternated): one at a time 5,058 and 5,340 responses/s, two 5,571 and
# 5,864; three did no better than two.
INSERTS_IN_FLIGHT = 2

Record: TypeAlias = ConsumerRecord[Any, Any]


@dataclass(frozen=True)
class Inserting:
    """A chunk's raw insert under way: where the chunk starts in the batch's valid responses,
    the raw `_id`s it stores, and the insert."""

    start: int
    ids: frozenset[str]
    task: asyncio.Task[RawInsert]


async def handle_batch(
    records: list[Record], store: AnalyticsStore, broker: KafkaBroker, group: str | None = None
) -> int:
    """Apply one batch; what cannot be decoded, validated or stored goes to the DLQ (before
    the offsets are committed, so a crash parks it again rather than never). Returns how many
    responses counted."""
    # Redelivered after a crash or a rebalance, records the aggregates already cover are done:
    # left out before any read (on FerretDB each duplicate check scans the stored responses, so
    # catching up would otherwise cost more the more is stored).
    done = await store.applied((record.partition, record.offset) for record in records)
    todo = [record for record in records if (record.partition, record.offset) not in done]
    recorded = await record_chunks(todo, store, broker, group)
    changes = await store.track(list(recorded.counted), recorded.inserted, recorded.firsts)
    await store.apply(changes)
    await store.drop_receipts(recorded.receipts)  # applied: a redelivery skips it whole
    return len(changes)


async def record_chunks(
    records: list[Record], store: AnalyticsStore, broker: KafkaBroker, group: str | None
) -> Recorded:
    """Decode the records and store the raw responses, `RECORD_CHUNK` at a time: each chunk is
    decoded while the database inserts those before it (on a full batch the decoding takes
    about as long as an insert, and the two use different cores), up to `INSERTS_IN_FLIGHT`
    inserts at once. A chunk that stores an `_id` a chunk in flight stores too (a replay within
    the batch) waits for it, so the first position in the batch stores it, as one insert after
    the other would. Each chunk is inserted with its receipt, and all are settled together as
    one `record_each` of the whole batch would be: what a redelivered batch finds stored, its
    receipts place, and the stored responses are read (a scan on FerretDB) at most once per
    batch, for the rest."""
    valid: list[Positioned] = []
    documents: list[Document] = []
    firsts: dict[str, Change] = {}
    by_position: dict[tuple[int, int], Record] = {}
    raw = RawInsert({}, frozenset())
    inserting: list[Inserting] = []
    try:
        for start in range(0, len(records), RECORD_CHUNK):
            chunk: list[Positioned] = []
            for number, record in enumerate(records[start : start + RECORD_CHUNK]):
                if number % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let the chunks being inserted send and read meanwhile
                event = decode_event(SurveyResponse, record.value)
                if isinstance(event, Rejection):
                    await send_to_dlq(broker, record, event.error, reason=event.reason, group=group)
                    continue
                chunk.append(Positioned(event, record.partition, record.offset))
                by_position[record.partition, record.offset] = record
            made = store.documents_of(chunk, tracked=True)
            ids = frozenset(str(document["_id"]) for document in made)
            while inserting and (
                len(inserting) >= INSERTS_IN_FLIGHT or any(ids & i.ids for i in inserting)
            ):
                done = inserting.pop(0)
                raw = raw.after(done.start, await done.task)
            task = asyncio.create_task(store.insert_raw(made, receipt=True))
            inserting.append(Inserting(len(valid), ids, task))
            # While the database stores the chunk, work out what `track` would for its new
            # responses (about a tenth of the consumer's work), once the insert is on its way:
            # before it, or in `track` after the batch's inserts, the database idles meanwhile.
            await asyncio.sleep(0)
            firsts.update(first_changes(chunk))
            valid += chunk
            documents += made
        while inserting:
            done = inserting.pop(0)
            raw = raw.after(done.start, await done.task)
    except BaseException:
        # The batch is read again: its chunks in flight need not finish.
        for pending in inserting:
            pending.task.cancel()
        for pending in inserting:
            with contextlib.suppress(BaseException):
                await pending.task
        raise
    recorded = replace(await store.settle_raw(valid, documents, raw), firsts=firsts)
    for item, error in recorded.refused:
        record = by_position[item.partition, item.offset]
        await send_to_dlq(broker, record, error, reason=REFUSED, group=group)
    return recorded


async def handle_reviews(
    records: list[Record], store: AnalyticsStore, broker: KafkaBroker, group: str | None = None
) -> int:
    """Apply one batch of reviews and retractions; returns how many changed a response."""
    reviews: list[PositionedReview] = []
    # As for responses: a redelivered review the aggregates already cover needs no read.
    done = await store.applied((review_partition(r.partition), r.offset) for r in records)
    for record in records:
        if (review_partition(record.partition), record.offset) in done:
            continue
        event = decode_event(ResponseReview, record.value)
        if isinstance(event, Rejection):
            await send_to_dlq(broker, record, event.error, reason=event.reason, group=group)
            continue
        reviews.append(PositionedReview(event, review_partition(record.partition), record.offset))
    changes = await store.track(list(reviews))
    await store.apply(changes)
    return len(changes)


def subscribe(broker: KafkaBroker, settings: AnalyticsSettings, store: AnalyticsStore) -> None:
    """Register the batch subscriber of `survey.responses.v1` on `broker`."""

    @broker.subscriber(
        settings.topic_responses,
        group_id=settings.analytics_group_id,
        batch=True,
        max_records=settings.analytics_batch_size,
        fetch_min_bytes=FETCH_MIN_BYTES,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=keep_raw,
    )
    async def on_responses(message: KafkaMessage) -> None:
        records = message.raw_message
        batch = list(records) if isinstance(records, tuple) else [records]
        try:
            counted = await handle_batch(batch, store, broker, settings.analytics_group_id)
        except Exception:
            logger.exception("batch of %d failed; it will be read again", len(batch))
            await asyncio.sleep(RETRY_PAUSE_SECONDS)  # no busy loop while MongoDB is away
            raise
        logger.debug("batch of %d applied, %d counted", len(batch), counted)
        if settings.analytics_commit_delay_seconds:
            await asyncio.sleep(settings.analytics_commit_delay_seconds)  # fault tests only

    reviews_group = reviews_group_id(settings)

    @broker.subscriber(
        settings.topic_reviews,
        group_id=reviews_group,
        batch=True,
        max_records=settings.analytics_batch_size,
        fetch_min_bytes=FETCH_MIN_BYTES,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=keep_raw,
    )
    async def on_reviews(message: KafkaMessage) -> None:
        records = message.raw_message
        batch = list(records) if isinstance(records, tuple) else [records]
        try:
            changed = await handle_reviews(batch, store, broker, reviews_group)
        except Exception:
            logger.exception("batch of %d reviews failed; it will be read again", len(batch))
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
            raise
        logger.debug("batch of %d reviews applied, %d changed a response", len(batch), changed)
        if settings.analytics_commit_delay_seconds:
            await asyncio.sleep(settings.analytics_commit_delay_seconds)  # fault tests only


def reviews_group_id(settings: AnalyticsSettings) -> str:
    """The consumer group of the reviews: the analytics group's, with `.reviews`."""
    return f"{settings.analytics_group_id}.reviews"
