"""`python -m shared.kafka_topics`: create the project's topics and their DLQs, with the
configured partitions and replication factor (`KAFKA_TOPIC_PARTITIONS`,
`KAFKA_TOPIC_REPLICATION_FACTOR`)."""

from __future__ import annotations

import asyncio

from shared.kafka import ensure_topics, topics_with_dlq
from shared.kafka_security import kafka_security
from shared.settings import ServiceSettings


def main() -> None:
    """Create every topic of the configured names; safe to run any number of times (existing
    topics are left as they are)."""
    settings = ServiceSettings()
    names = topics_with_dlq(
        settings.topic_responses,
        settings.topic_pilots,
        settings.topic_reviews,
        settings.topic_erasures,
    )
    asyncio.run(
        ensure_topics(
            settings.kafka_bootstrap_servers,
            names,
            partitions=settings.kafka_topic_partitions,
            replication_factor=settings.kafka_topic_replication_factor,
            security=kafka_security(settings),
        )
    )
    print(
        f"topics ready: {', '.join(names)} (new ones: {settings.kafka_topic_partitions} "
        f"partitions, replication factor {settings.kafka_topic_replication_factor})"
    )


if __name__ == "__main__":
    main()
