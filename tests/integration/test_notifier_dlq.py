"""Poison events on either topic go to `<topic>.dlq` with the error, and the notifier moves on."""

from __future__ import annotations

import json

import pytest

from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from shared.topics import dlq
from tests.integration.notifier_support import focal_response, notifier_settings, pilot, records
from tests.support import (
    Mailbox,
    Stack,
    confirm_focal_points,
    eventually,
    produce,
    read_topic,
    serving,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(stack: Stack, run_id: str) -> NotifierSettings:
    return notifier_settings(stack, run_id)


async def test_poison_events_both_topics_to_dlq_and_consumer_moves_on(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    person = f"dlq-{run_id}@example.org"
    good_response = focal_response(1, person, interests=["climate-resilience"])
    bad_email = json.loads(good_response.model_dump_json())
    bad_email["focal_point"]["email"] = "not-an-address"
    poison_responses = [b"not json at all", json.dumps(bad_email).encode()]
    good_pilot = pilot(f"pilot-{run_id}")
    # A theme code newer than the notifier is read (see test_consumers_hostile); one that is no
    # code at all is poison.
    malformed_theme = {**json.loads(good_pilot.model_dump_json()), "themes": ["No Such Theme"]}
    poison_pilots = [b"{}", json.dumps(malformed_theme).encode()]
    mailbox = Mailbox(stack.mail_api)
    await produce(
        stack.kafka,
        settings.topic_responses,
        [(b"bad-1", poison_responses[0]), (b"bad-2", poison_responses[1]), *records(good_response)],
    )
    async with serving(create_app(settings)) as client:
        # The good response behind the poison was registered: its person confirms.
        await confirm_focal_points(client, mailbox, person)
        # The poison goes first on the same partition: the good event behind it still counts.
        await produce(
            stack.kafka,
            settings.topic_pilots,
            [(good_pilot.pilot_id.encode(), v) for v in poison_pilots] + records(good_pilot),
        )
        await eventually(lambda: mailbox.messages_to(person), lambda m: len(m) == 1, within=60)
    parked = {
        topic: await read_topic(stack.kafka, dlq(topic), idle_seconds=2)
        for topic in (settings.topic_responses, settings.topic_pilots)
    }

    for topic, poison in (
        (settings.topic_responses, poison_responses),
        (settings.topic_pilots, poison_pilots),
    ):
        assert sorted(r.value for r in parked[topic]) == sorted(poison)
        for record in parked[topic]:
            headers = dict(record.headers)
            assert json.loads(headers["dlq-source"])["topic"] == topic
            assert b"validation error" in headers["dlq-error"]
            assert headers["dlq-reason"] in (b"undecodable", b"invalid")
    errors = b" ".join(dict(r.headers)["dlq-error"] for r in parked[settings.topic_pilots])
    assert b"'No Such Theme' is neither a known theme code nor a well-formed new one" in errors
