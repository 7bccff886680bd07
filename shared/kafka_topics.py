"""`python -m shared.kafka_topics`: create the project's topics (6 partitions) and their DLQs."""

from __future__ import annotations

import asyncio

from shared.kafka import ensure_topics, topics_with_dlq
from shared.settings import ServiceSettings


def main() -> None:
    """Create every topic of the configured names; safe to run any number of times."""
    settings = ServiceSettings()
    names = topics_with_dlq(settings.topic_responses, settings.topic_pilots)
    asyncio.run(ensure_topics(settings.kafka_bootstrap_servers, names))
    print(f"topics ready: {', '.join(names)}")


if __name__ == "__main__":
    main()
