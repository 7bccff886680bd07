"""Topic creation against the real broker: the configured partitions, and a replication factor
the cluster cannot give refused loudly instead of leaving the topics missing."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import InvalidReplicationFactorError

from shared.kafka import ensure_topics
from shared.kafka_security import kafka_security
from tests.support import Stack

pytestmark = pytest.mark.integration


async def partitions_of(stack: Stack, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka, **kafka_security().client_options())
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return len(described["partitions"])


async def test_create_topics_with_the_configured_partitions(
    stack: Stack, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_TOPIC_PARTITIONS", "2")
    monkeypatch.setenv("KAFKA_TOPIC_REPLICATION_FACTOR", "1")
    topic = f"test-{run_id}.configured"
    await ensure_topics(stack.kafka, [topic])
    assert await partitions_of(stack, topic) == 2
    # An existing topic is left as it is, whatever the settings say now.
    await ensure_topics(stack.kafka, [topic], partitions=4)
    assert await partitions_of(stack, topic) == 2


async def test_create_topics_refuses_more_replicas_than_brokers(stack: Stack, run_id: str) -> None:
    topic = f"test-{run_id}.replicated"
    with pytest.raises(InvalidReplicationFactorError, match=topic):
        # The local and test brokers are single nodes (Compose and testcontainers too).
        await ensure_topics(stack.kafka, [topic], partitions=1, replication_factor=3)
    assert await partitions_of(stack, topic) == 0
