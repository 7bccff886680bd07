"""Dead letters as `send_to_dlq` writes them, read back for inspection and replay."""

from __future__ import annotations

import json

import pytest
from aiokafka import ConsumerRecord

from shared.dlq import DeadLetter, DeadLetterTopic, DeadLetterTopicError


def record(
    headers: list[tuple[str, bytes]], topic: str = "survey.responses.v1.dlq"
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=2,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=b"generic:r1",
        value=b"not json",
        checksum=None,
        serialized_key_size=10,
        serialized_value_size=8,
        headers=headers,
    )


def test_read_dead_letter_headers_written_by_send_to_dlq() -> None:
    source = {"topic": "survey.responses.v1", "partition": 4, "offset": 41}
    letter = DeadLetter.of(
        record([("dlq-error", b"Invalid JSON"), ("dlq-source", json.dumps(source).encode())]),
        replayed=True,
    )
    assert (letter.partition, letter.offset, letter.key, letter.value) == (
        2,
        7,
        b"generic:r1",
        b"not json",
    )
    assert (letter.error, letter.source, letter.source_topic) == (
        "Invalid JSON",
        source,
        "survey.responses.v1",
    )
    assert letter.replayed


@pytest.mark.parametrize("headers", [[], [("dlq-source", b"{broken")], [("dlq-source", b"[1]")]])
def test_read_dead_letter_without_source_goes_back_to_the_topic_it_names(
    headers: list[tuple[str, bytes]],
) -> None:
    letter = DeadLetter.of(record(headers, topic="pilots.announced.v1.dlq"), replayed=False)
    assert (letter.source_topic, letter.source, letter.error) == ("pilots.announced.v1", {}, "")


def test_refuse_a_topic_that_is_not_a_dead_letter_topic() -> None:
    with pytest.raises(DeadLetterTopicError, match="not a dead-letter topic"):
        DeadLetterTopic("localhost:9092", "survey.responses.v1")


def test_read_dead_letter_reason_and_group() -> None:
    letter = DeadLetter.of(
        record([("dlq-reason", b"refused"), ("dlq-group", b"analytics"), ("dlq-error", b"x")]),
        replayed=False,
    )

    assert (letter.reason, letter.group, letter.error) == ("refused", "analytics", "x")


def test_read_dead_letter_parked_before_reasons_existed() -> None:
    letter = DeadLetter.of(record([("dlq-error", b"Invalid JSON")]), replayed=False)

    assert (letter.reason, letter.group) == ("", "")
