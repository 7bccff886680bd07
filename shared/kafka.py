"""The one Kafka helper: broker factory, topic creation, lag and the dead-letter path. How
clients connect (TLS, SASL) is `shared.kafka_security`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError, for_code
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY
from pydantic import BaseModel, ValidationError

from shared import topics
from shared.events import TOLERANT
from shared.kafka_security import KafkaSecurity, check_access, kafka_security
from shared.observability import DLQ_MESSAGES, track_lag
from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)
Event = TypeVar("Event", bound=BaseModel)


def new_broker(
    bootstrap_servers: str, *, client_id: str, security: KafkaSecurity | None = None
) -> KafkaBroker:
    """A broker whose producer never loses an acknowledged event: idempotent, `acks=all`.
    `security` None: as the environment configures it (`kafka_security()`)."""
    security = security if security is not None else kafka_security()
    return KafkaBroker(
        bootstrap_servers,
        security=security.faststream(),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=10_000,
        logger=logger,
        # Events published and consumed, with sizes and durations, on the service's /metrics.
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY, app_name=client_id)],
    )


def new_topics(
    names: Iterable[str],
    partitions: int,
    replication_factor: int,
    retention_ms: Mapping[str, int] | None = None,
) -> list[NewTopic]:
    """Topic specifications. A replicated topic gets `min.insync.replicas` = replication factor
    minus one (2 of 3): an event acknowledged with `acks=all` is then on at least two brokers,
    and one broker may be down without stopping writes. A topic named in `retention_ms` keeps
    its records that long (`retention.ms`), others the broker's default."""
    configs = {"min.insync.replicas": str(replication_factor - 1)} if replication_factor > 1 else {}
    return [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            topic_configs={**configs, **_retention(name, retention_ms or {})},
        )
        for name in names
    ]


def _retention(name: str, retention_ms: Mapping[str, int]) -> dict[str, str]:
    return {"retention.ms": str(retention_ms[name])} if name in retention_ms else {}


def personal_retention_ms(settings: ServiceSettings) -> dict[str, int]:
    """`retention.ms` of the topics that carry personal data in clear: the responses topic and
    its DLQ, `KAFKA_RESPONSES_RETENTION_DAYS`."""
    milliseconds = int(settings.kafka_responses_retention_days * 86_400_000)
    return dict.fromkeys(topics_with_dlq(settings.topic_responses), milliseconds)


async def ensure_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    *,
    partitions: int | None = None,
    replication_factor: int | None = None,
    attempts: int = 30,
    security: KafkaSecurity | None = None,
) -> None:
    """Create the topics that do not exist yet; waits for a broker that is still starting.

    Partitions and replication factor not given are read from the environment
    (`KAFKA_TOPIC_PARTITIONS`, `KAFKA_TOPIC_REPLICATION_FACTOR`), so that a service creating a
    missing topic makes it as the operators configured it; the responses topic and its DLQ get
    `KAFKA_RESPONSES_RETENTION_DAYS` as `retention.ms`. Refused credentials raise
    `KafkaAccessRefused` at once: no retry cures them.
    """
    security = security if security is not None else kafka_security()
    configured = ServiceSettings()
    if partitions is None:
        partitions = configured.kafka_topic_partitions
    if replication_factor is None:
        replication_factor = configured.kafka_topic_replication_factor
    wanted = new_topics(names, partitions, replication_factor, personal_retention_ms(configured))
    for attempt in range(1, attempts + 1):
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers, **security.client_options()
        )
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [topic for topic in wanted if topic.name not in existing]
            if missing:
                _raise_topic_errors(await admin.create_topics(missing))
            return
        except KafkaConnectionError:
            # A refusal is logged by aiokafka but reported as a failed bootstrap: ask directly,
            # and stop at once if it is one (no retry cures it).
            await check_access(bootstrap_servers, security)
            if attempt == attempts:
                raise
            await asyncio.sleep(1)
        finally:
            await admin.close()


async def delete_topics(
    bootstrap_servers: str, prefix: str, *, security: KafkaSecurity | None = None
) -> list[str]:
    """Delete every topic whose name starts with `prefix` (tests' and benchmarks' own topics);
    the names deleted.

    Twice, a moment apart: a metadata request for a missing topic makes a broker that creates
    topics on demand create it a moment later, after a first look found nothing.
    """
    security = security if security is not None else kafka_security()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **security.client_options())
    await admin.start()
    deleted: list[str] = []
    try:
        for look in range(2):
            if look:
                await asyncio.sleep(0.5)
            doomed = sorted(name for name in await admin.list_topics() if name.startswith(prefix))
            if doomed:
                await admin.delete_topics(doomed, timeout_ms=60_000)
                deleted += doomed
        return deleted
    finally:
        await admin.close()


def _raise_topic_errors(response: Any) -> None:
    # The admin client returns the broker's refusals (e.g. a replication factor above the number
    # of brokers) instead of raising them: unchecked, the topics would silently not exist.
    for name, code, message in response.topic_errors:
        # Another replica may have created the topic between our list and our create.
        if code not in (0, TopicAlreadyExistsError.errno):
            raise for_code(code)(f"cannot create topic {name}: {message}")


async def keep_raw(message: Any) -> None:
    """A FastStream decoder that decodes nothing: handlers parse each record themselves, so that
    one poison record goes to the DLQ instead of failing its batch over and over."""
    return None


async def consumer_lag(
    bootstrap_servers: str, group_id: str, topic: str, *, security: KafkaSecurity | None = None
) -> int:
    """Records of `topic` the consumer group has not committed yet (all of them for a new group)."""
    options = (security if security is not None else kafka_security()).client_options()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **options)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, **options
    )
    await admin.start()
    await consumer.start()
    try:
        # From the admin client: the consumer's own metadata knows only subscribed topics, and
        # an empty partition list would report no lag at all.
        (described,) = await admin.describe_topics([topic])
        partitions = [
            TopicPartition(topic, entry["partition"]) for entry in described["partitions"]
        ]
        if not partitions:
            return 0  # no such topic (yet): nothing to lag behind
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group_id, partitions=partitions)
        # A partition without a commit reads as offset -1: nothing of it is committed.
        return sum(
            max(0, end - (max(0, committed[tp].offset) if tp in committed else 0))
            for tp, end in ends.items()
        )
    finally:
        await consumer.stop()
        await admin.close()


def topics_with_dlq(*names: str) -> list[str]:
    """The topics and their dead-letter topics."""
    return [name for topic in names for name in (topic, topics.dlq(topic))]


# Why a record was parked (the `dlq-reason` header): it is not an event at all, it is an event
# that fails validation, or the database refuses to store it.
UNDECODABLE: Final = "undecodable"
INVALID: Final = "invalid"
REFUSED: Final = "refused"


@dataclass(frozen=True)
class Rejection:
    """A record a consumer cannot use: why (`UNDECODABLE`, `INVALID`, `REFUSED`) and the error."""

    reason: str
    error: str


def decode_event(model: type[Event], value: bytes | None) -> Event | Rejection:
    """The event in a record's value, read tolerantly (`shared.events.TOLERANT`), or why not.

    Pure and total: whatever the bytes are, the answer is an event or a rejection, never an
    exception, so that no record can stop its partition."""
    try:
        return model.model_validate_json(value or b"", context=TOLERANT)
    except ValidationError as exc:
        undecodable = any(error["type"] == "json_invalid" for error in exc.errors())
        return Rejection(UNDECODABLE if undecodable else INVALID, str(exc))
    except Exception as exc:  # a validator that trips over odd input: still this record's fault
        return Rejection(INVALID, f"{type(exc).__name__}: {exc}")


async def send_to_dlq(
    broker: KafkaBroker,
    record: ConsumerRecord[Any, Any],
    error: str,
    *,
    reason: str = INVALID,
    group: str | None = None,
) -> None:
    """Park a poison message on `<topic>.dlq`, so consumption can go on.

    Key and value are kept as they were (a replay publishes them unchanged); the headers say
    why (`dlq-reason`, `dlq-error`), where it was read (`dlq-source`: topic, partition and
    offset) and by which consumer group (`dlq-group`)."""
    logger.warning(
        "poison message to DLQ",
        extra={
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "reason": reason,
            "group": group,
        },
    )
    DLQ_MESSAGES.labels(record.topic).inc()
    value = record.value if isinstance(record.value, bytes) else bytes(record.value or b"")
    headers = {
        "dlq-reason": reason,
        "dlq-error": error[:2000],
        "dlq-source": json.dumps(
            {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        ),
    }
    if group is not None:
        headers["dlq-group"] = group
    await broker.publish(value, topic=topics.dlq(record.topic), key=record.key, headers=headers)


def readiness_check(broker: KafkaBroker, timeout: float = 2.0) -> Callable[[], Awaitable[None]]:
    """A `/readyz` check that raises unless the broker answers within `timeout` seconds."""

    async def check() -> None:
        if not await broker.ping(timeout):
            raise ConnectionError("Kafka does not answer")

    return check


def start_lag_tracking(
    bootstrap_servers: str,
    groups: list[tuple[str, str]],
    *,
    security: KafkaSecurity | None = None,
) -> list[asyncio.Task[None]]:
    """Keep the `consumer_lag` gauge of each (group, topic) fresh; cancel the tasks to stop."""
    security = security if security is not None else kafka_security()
    return [
        asyncio.create_task(
            track_lag(
                partial(consumer_lag, bootstrap_servers, group, topic, security=security),
                group,
                topic,
            ),
            name=f"lag:{group}",
        )
        for group, topic in groups
    ]
