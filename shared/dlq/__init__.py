"""Dead letters: read what the consumers parked on `<topic>.dlq`, and publish it again.

`send_to_dlq` (in `shared.kafka`) keeps each poison message's key and value and adds the headers
`dlq-reason` (`undecodable`, `invalid` or `refused` by the database), `dlq-error`, `dlq-source`
(`{"topic", "partition", "offset"}`) and `dlq-group` (the consumer group that parked it). A
replay publishes the key and value unchanged to the source topic, once the cause is fixed. The
replay group's committed offsets on the DLQ topic record what was replayed, so running the
replay again takes only what came after. A replay that dies between publishing and committing
publishes those messages again at the next run: harmless, since analytics counts a response
once and the notifier emails a (pilot, focal point) pair once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker

from shared.kafka import new_broker
from shared.kafka_security import KafkaSecurity, kafka_security

DEFAULT_GROUP = "dlq-replay"
# Commit after this many published messages: fewer round trips, and at most this many are
# published twice when a replay dies.
COMMIT_EVERY = 100


class DeadLetterTopicError(Exception):
    """The topic is not a dead-letter topic, or does not exist."""


@dataclass(frozen=True)
class DeadLetter:
    """One parked message and where it came from."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    error: str
    reason: str
    group: str
    source_topic: str
    source: dict[str, Any]
    replayed: bool

    @classmethod
    def of(cls, record: ConsumerRecord[Any, Any], replayed: bool) -> DeadLetter:
        """From a record of the DLQ topic; a message without headers goes back to `<topic>`."""
        headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
        try:
            source = json.loads(headers.get("dlq-source", "{}"))
        except json.JSONDecodeError:
            source = None
        if not isinstance(source, dict):
            source = {}  # written by something else than `send_to_dlq`
        return cls(
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value or b"",
            error=headers.get("dlq-error", ""),
            reason=headers.get("dlq-reason", ""),
            group=headers.get("dlq-group", ""),
            source_topic=str(source.get("topic") or record.topic.removesuffix(".dlq")),
            source=source,
            replayed=replayed,
        )


class DeadLetterTopic:
    """A DLQ topic read by the replay group (which never joins the group: no rebalances)."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        group_id: str = DEFAULT_GROUP,
        *,
        security: KafkaSecurity | None = None,
    ) -> None:
        if not topic.endswith(".dlq"):
            raise DeadLetterTopicError(f"{topic!r} is not a dead-letter topic (`<topic>.dlq`)")
        self.topic = topic
        self._bootstrap_servers = bootstrap_servers
        self._options = (security if security is not None else kafka_security()).client_options()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self._options,
        )
        self._ends: dict[TopicPartition, int] = {}
        self._replayed: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> DeadLetterTopic:
        partitions = [TopicPartition(self.topic, p) for p in await self._partitions()]
        if not partitions:
            raise DeadLetterTopicError(f"no topic {self.topic!r}")
        await self._consumer.start()
        try:
            self._consumer.assign(partitions)
            # Messages parked after this point wait for the next run: the end is fixed now.
            self._ends = await self._consumer.end_offsets(partitions)
            for tp in partitions:
                self._replayed[tp] = await self._consumer.committed(tp) or 0
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def _partitions(self) -> list[int]:
        # From the admin client: a consumer's metadata knows only the topics it was given.
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap_servers, **self._options)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        return sorted(entry["partition"] for entry in described["partitions"])

    @property
    def pending(self) -> int:
        """Messages not replayed yet by this group."""
        return sum(end - self._replayed[tp] for tp, end in self._ends.items())

    async def read(
        self, *, everything: bool, limit: int | None = None
    ) -> AsyncIterator[DeadLetter]:
        """The messages up to the end fixed at the start, by partition and offset: all of them
        (`everything`) or only those the group has not replayed; at most `limit`."""
        for tp in self._ends:
            if everything:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, self._replayed[tp])
        left = limit
        for tp, end in self._ends.items():
            while left != 0 and await self._consumer.position(tp) < end:
                batch = await self._consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    if record.offset >= end or left == 0:
                        break
                    left = None if left is None else left - 1
                    yield DeadLetter.of(record, record.offset < self._replayed[tp])

    async def replay(self, letter: DeadLetter, broker: KafkaBroker) -> None:
        """Publish `letter` to its source topic; its offset is committed by `commit`."""
        await broker.publish(
            letter.value,
            topic=letter.source_topic,
            key=letter.key,
            headers={
                "dlq-replayed-from": json.dumps(
                    {"topic": self.topic, "partition": letter.partition, "offset": letter.offset}
                )
            },
        )
        tp = TopicPartition(self.topic, letter.partition)
        self._replayed[tp] = max(self._replayed[tp], letter.offset + 1)

    async def commit(self) -> None:
        """Record what was replayed so far in the replay group."""
        await self._consumer.commit(dict(self._replayed))


async def replay_broker(
    bootstrap_servers: str, *, security: KafkaSecurity | None = None
) -> KafkaBroker:
    """The project's producer (idempotent, `acks=all`), connected."""
    broker = new_broker(bootstrap_servers, client_id="dlq-replay", security=security)
    await broker.start()
    return broker
