"""Kafka topic names: a contract between the services (see DESIGN.md, "Events")."""

RESPONSES = "survey.responses.v1"
PILOTS = "pilots.announced.v1"
ERASURES = "privacy.erasures.v1"
REVIEWS = "survey.reviews.v1"
PARTITIONS = 6


def dlq(topic: str) -> str:
    """Name of the dead-letter topic that receives the poison messages of `topic`."""
    return f"{topic}.dlq"
