"""`python -m services.intake.asyncapi [FILE]`: the AsyncAPI document of the events the intake
publishes (`make asyncapi` writes it to docs/asyncapi.yaml)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from shared import topics
from shared.events import ErasureRequested, PilotAnnounced, ResponseReview, SurveyResponse


def specification(bootstrap_servers: str = "localhost:9092") -> str:
    """The AsyncAPI 3.0 document of the topics, as YAML."""
    # A broker that is never started: it only declares what the intake publishes.
    broker = KafkaBroker(bootstrap_servers, description="Apache Kafka (KAFKA_BOOTSTRAP_SERVERS)")
    broker.publisher(
        topics.RESPONSES,
        title=topics.RESPONSES,
        description=(
            "One revision of a validated survey response, published once after the broker "
            "acknowledged it (idempotent producer, acks=all). Key: `response_id`, so every "
            "revision of a response is in one partition. A higher `revision` (1 when absent) of "
            "the same `survey_id` and `response_id` replaces a lower one; consumers keep the "
            "highest they have seen, whatever order revisions arrive in. Consumed by analytics "
            f"and the notifier; poison records go to `{topics.dlq(topics.RESPONSES)}`."
        ),
        schema=SurveyResponse,
    )
    broker.publisher(
        topics.PILOTS,
        title=topics.PILOTS,
        description=(
            "A demonstration pilot open for applications, announced by an operator through "
            "`POST /v1/pilots`. Key: `pilot_id`. Consumed by the notifier; poison records go to "
            f"`{topics.dlq(topics.PILOTS)}`."
        ),
        schema=PilotAnnounced,
    )
    broker.publisher(
        topics.ERASURES,
        title=topics.ERASURES,
        description=(
            "A person's request to erase what is kept about their address, taken by an operator "
            "through `POST /v1/erasure-requests`; it names the person by the keyed hash of the "
            "address, never the address. Key: `request_id`. Consumed by analytics and the "
            "notifier, each in its own group; poison records go to "
            f"`{topics.dlq(topics.ERASURES)}`."
        ),
        schema=ErasureRequested,
    )
    broker.publisher(
        topics.REVIEWS,
        title=topics.REVIEWS,
        description=(
            "A review (`pending`, `approved`, `rejected`) or a retraction (`retracted`) of one "
            "response, taken by an operator through `POST /v1/responses/{survey_id}/"
            "{response_id}/review`, the bulk CSV command, or `DELETE /v1/responses/{survey_id}/"
            "{response_id}`. Key: `<survey_id>/<response_id>`. Of the reviews of one response the "
            "one with the highest `order` (nanoseconds on the intake's clock, ties by "
            "`review_id`) wins, whatever order they arrive in; a response's own `review` "
            "(Kobo's validation status) counts as a review taken at its `received_at`. Rejected "
            "and retracted responses are left out of the counts, and their focal points get no "
            "mail because of them; a later review brings them back. Consumed by analytics and "
            f"the notifier; poison records go to `{topics.dlq(topics.REVIEWS)}`."
        ),
        schema=ResponseReview,
    )
    document = AsyncAPI(
        broker,
        title="Cities survey pipeline events",
        version="1",
        description=(
            "The events the intake publishes. JSON values; codes from the project's taxonomy; "
            "countries as ISO 3166-1 alpha-2; times as UTC `YYYY-MM-DDTHH:MM:SSZ`."
        ),
        schema_version="3.0.0",
    )
    return _ordered(document.to_specification().to_yaml())


def _ordered(text: str) -> str:
    # FastStream lists channels and operations in no fixed order: sort them by name, so that
    # the committed document changes only when the events do.
    document = yaml.safe_load(text)
    for section in (document, document.get("components", {})):
        for name in ("channels", "operations", "messages", "schemas"):
            if isinstance(section.get(name), dict):
                section[name] = dict(sorted(section[name].items()))
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def main() -> None:
    """Print the document, or write it to the file given as the only argument."""
    text = specification()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
