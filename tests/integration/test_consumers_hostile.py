"""Hostile records on the real broker and MongoDB-wire server: no record stops a partition, and
a code newer than the consumers' taxonomy is counted, not parked.

The records are written straight to the topic (as any producer could), all on one partition,
the poison between good ones: the good one after the poison is counted only if the consumer
moved past it.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.analytics import maintenance
from services.analytics.aggregates import OVERALL
from services.analytics.store import AnalyticsStore, Positioned
from services.notifier.app import create_app as create_notifier
from shared import mongo, topics
from shared.events import SurveyResponse
from shared.kafka import (
    INVALID,
    REFUSED,
    UNDECODABLE,
    Rejection,
    consumer_lag,
    decode_event,
    ensure_topics,
    topics_with_dlq,
)
from tests.integration.notifier_support import notifier_settings
from tests.integration.test_dlq_replay import dlq_command
from tests.recount import assert_api_exact
from tests.support import (
    OPERATOR,
    Mailbox,
    ServiceProcess,
    Stack,
    canonical_response,
    confirm_focal_points,
    eventually,
    produce,
    read_topic,
    serving,
    start_service,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def environment(stack: Stack, run_id: str) -> AsyncIterator[dict[str, str]]:
    """This test's settings, its topics made with one partition (so records keep their order);
    the topics and the database are removed afterwards."""
    env = stack.environment(run_id)
    for topic in (env["TOPIC_RESPONSES"], env["TOPIC_PILOTS"]):
        await ensure_topics(stack.kafka, topics_with_dlq(topic), partitions=1)
    yield env
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka)
    await admin.start()
    try:
        mine = [name for name in await admin.list_topics() if name.startswith(f"test-{run_id}.")]
        await admin.delete_topics(mine)
    finally:
        await admin.close()
    client = mongo.new_client(stack.mongodb_url)
    try:
        await client.drop_database(env["MONGODB_DATABASE"])
    finally:
        await client.close()


@pytest.fixture
async def analytics(environment: dict[str, str], tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    """Analytics run as operators run it, consuming this test's topic."""
    service = start_service("analytics", environment, tmp_path)
    try:
        service.wait_ready()
        yield service
    finally:
        if service.process.poll() is None:
            service.terminate()


def body(number: int, run_id: str, **overrides: Any) -> dict[str, Any]:
    """A response event as the intake writes it, received now: its answers are stored (one
    received past `PERSONAL_DATA_RETENTION_DAYS` is stored without them)."""
    return {
        **canonical_response(f"generic:{run_id}-{number}", **overrides),
        "source": "generic",
        "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def record(event: dict[str, Any]) -> tuple[bytes, bytes]:
    return event["response_id"].encode(), json.dumps(event).encode()


async def is_ferretdb(stack: Stack) -> bool:
    """FerretDB refuses keys starting with `$` and nested arrays; MongoDB stores them."""
    client = mongo.new_client(stack.mongodb_url)
    try:
        return "ferretdbVersion" in await client.admin.command("buildInfo")
    finally:
        await client.close()


def poison(run_id: str) -> dict[str, tuple[bytes, bytes]]:
    """Records no consumer may stop on, by name."""
    return {
        "garbage": (b"garbage", b"\x00\xff\xfe not an event \x01"),
        "invalid": record(body(90, run_id, capacity_needs=["Not A Code"])),
        # BSON cannot carry these: refused before anything is sent to the server.
        "nul-key": record(body(91, run_id, answers={"q\u0000": "x"})),
        "huge-int": record(body(92, run_id, answers={"n": 2**70})),
        # The server itself refuses this one (FerretDB), or stores it (MongoDB).
        "dollar-key": record(body(93, run_id, answers={"$where": "sleep(1000)"})),
    }


def dead_letters(parked: list[Any]) -> dict[bytes, dict[str, Any]]:
    """The parked records by key: reason, group, source position and value."""
    found = {}
    for letter in parked:
        headers = {name: value.decode() for name, value in letter.headers}
        found[letter.key] = {
            "reason": headers["dlq-reason"],
            "group": headers.get("dlq-group"),
            "error": headers["dlq-error"],
            "source": json.loads(headers["dlq-source"]),
            "value": letter.value,
        }
    return found


def expected_reason(value: bytes, stored_by_server: bool) -> str | None:
    """Why a consumer parks `value`: the event model's rejection if it has one (the model may
    refuse more than it does today), else `refused` unless the database stores it."""
    event = decode_event(SurveyResponse, value)
    if isinstance(event, Rejection):
        return event.reason
    return None if stored_by_server else REFUSED


async def test_consume_poison_between_good_records_parked_and_partition_moves_on(
    stack: Stack, run_id: str, environment: dict[str, str], analytics: ServiceProcess
) -> None:
    topic = environment["TOPIC_RESPONSES"]
    ferretdb = await is_ferretdb(stack)
    bad = poison(run_id)
    first, last = (
        body(1, run_id),
        body(2, run_id, respondent={"type": "cso", "country": "KE", "city": "Kisumu"}),
    )
    ordered = [record(first), *bad.values(), record(last)]
    expected = {
        key: reason
        for name, (key, value) in bad.items()
        if (
            reason := expected_reason(value, stored_by_server=name == "dollar-key" and not ferretdb)
        )
    }
    assert expected[b"garbage"] == UNDECODABLE
    assert expected[bad["invalid"][0]] == INVALID
    good = [first, last] + [json.loads(v) for k, v in bad.values() if k not in expected]

    await produce(stack.kafka, topic, ordered)

    # Every record committed: nothing holds the partition.
    await eventually(
        lambda: consumer_lag(stack.kafka, environment["ANALYTICS_GROUP_ID"], topic),
        lambda lag: lag == 0,
        within=60,
    )
    parked = dead_letters(await read_topic(stack.kafka, topics.dlq(topic), idle_seconds=2))
    assert {key: letter["reason"] for key, letter in parked.items()} == expected
    for offset, (key, value) in enumerate(ordered):
        if key in parked:
            letter = parked[key]
            assert letter["source"] == {"topic": topic, "partition": 0, "offset": offset}
            assert letter["value"] == value
            assert letter["group"] == environment["ANALYTICS_GROUP_ID"]
            assert letter["error"]
    if ferretdb and expected[bad["dollar-key"][0]] == REFUSED:
        assert "$where" in parked[bad["dollar-key"][0]]["error"]
    # The API's numbers are a hand recount of the good records alone; `verify` finds no drift.
    await assert_api_exact(environment, analytics, good, random.Random(1))

    # The operators' view of them, then a replay: parked again, the numbers stay the same.
    dlq = topics.dlq(topic)
    shown = [
        json.loads(line)
        for line in (await dlq_command(stack, "show", "--topic", dlq, "--json")).splitlines()
    ]
    assert {(letter["key"], letter["reason"]) for letter in shown} == {
        (key.decode(errors="replace"), reason) for key, reason in expected.items()
    }
    assert {letter["group"] for letter in shown} == {environment["ANALYTICS_GROUP_ID"]}
    group = f"replay-{environment['ANALYTICS_GROUP_ID']}"
    output = await dlq_command(stack, "replay", "--topic", dlq, "--group", group)
    assert f"replayed {len(expected)} of {dlq}: {len(expected)} to {topic}" in output
    await eventually(
        lambda: read_topic(stack.kafka, dlq, idle_seconds=1),
        lambda letters: len(letters) == 2 * len(expected),
        within=60,
    )
    await eventually(
        lambda: consumer_lag(stack.kafka, environment["ANALYTICS_GROUP_ID"], topic),
        lambda lag: lag == 0,
        within=60,
    )
    await assert_api_exact(environment, analytics, good, random.Random(1))


async def test_record_each_refused_never_counts_and_a_replay_counts_the_same(
    stack: Stack, run_id: str, environment: dict[str, str]
) -> None:
    client = mongo.new_client(stack.mongodb_url)
    store = AnalyticsStore(mongo.database(client, environment["MONGODB_DATABASE"]))
    ferretdb = await is_ferretdb(stack)
    valid = SurveyResponse.model_validate(body(0, run_id))

    def event(number: int, answers: dict[str, Any]) -> SurveyResponse:
        # Built without validation: the store must cope whatever the event model lets through.
        return valid.model_copy(
            update={"response_id": f"generic:{run_id}-{number}", "answers": answers}
        )

    events = [
        event(1, {"q": "fine"}),
        event(2, {"q\u0000": "x"}),  # BSON cannot carry it: refused before sending
        event(3, {"n": 2**70}),
        event(4, {"$where": "1", "grid": [[1, 2]]}),  # FerretDB refuses it, MongoDB stores it
        event(5, {"q": "fine too"}),
    ]
    batch = [Positioned(item, 0, offset) for offset, item in enumerate(events)]
    try:
        first = await store.record_each(batch)
        await store.apply(first.counted)
        # The same batch read again (a crash before the commit), then its tail alone.
        again = await store.record_each(batch)
        await store.apply(again.counted)
        tail = await store.record_each(batch[2:])
        await store.apply(tail.counted)
        overall = await store.aggregate(OVERALL)
        audit = await maintenance.verify(store)
    finally:
        await client.close()

    refused = [(item.offset, reason.split(":")[0]) for item, reason in first.refused]
    server_refused = [(3, "refused by the database")] if ferretdb else []
    assert refused == [(1, "not storable"), (2, "not storable"), *server_refused]
    assert [(i.offset, r) for i, r in again.refused] == [(i.offset, r) for i, r in first.refused]
    counted = [0, 4] if ferretdb else [0, 3, 4]
    assert [i.offset for i in first.counted] == [i.offset for i in again.counted] == counted
    assert [i.offset for i in tail.counted] == [o for o in counted if o >= 2]
    assert overall is not None and overall["total"] == len(counted)
    assert audit.drifts == []
    assert audit.counters > 0


async def test_notifier_registry_moves_past_poison(
    stack: Stack, run_id: str, environment: dict[str, str]
) -> None:
    settings = notifier_settings(stack, run_id)
    topic = settings.topic_responses
    people = [f"poison-{n}-{run_id}@example.org" for n in range(3)]

    def focal(number: int, email: str, **overrides: Any) -> dict[str, Any]:
        point = {"name": "Lê Thị Hoa", "email": email, "language": "en", "consent": True}
        return body(number, run_id, focal_point=point, **overrides)

    bad = poison(run_id)
    # For the notifier, an answers key BSON cannot carry is no poison: it keeps no answers
    # (unless the event model refuses such keys itself: then it is parked as invalid).
    nul_key_person = record(focal(91, people[2], answers={"q\u0000": "x"}))
    nul_key_invalid = isinstance(decode_event(SurveyResponse, nul_key_person[1]), Rejection)
    ordered = [
        record(focal(1, people[0])),
        *bad.values(),
        nul_key_person,
        record(focal(2, people[1])),
    ]
    app = create_notifier(settings)
    registry = app.state.notifier.registry
    async with serving(app):
        await produce(stack.kafka, topic, ordered)
        for person in people[:2] if nul_key_invalid else people:
            registered = await eventually(
                lambda person=person: registry.get(registry.key(person)),
                lambda r: r is not None,
                within=60,
            )
            assert registered.consent is True
        await eventually(
            lambda: consumer_lag(stack.kafka, f"{settings.notifier_group_id}.registry", topic),
            lambda lag: lag == 0,
            within=30,
        )
    parked = dead_letters(await read_topic(stack.kafka, topics.dlq(topic), idle_seconds=2))
    # What the event model refuses is parked; the rest is no poison to the notifier.
    poison_keys = [
        key for key, value in ordered if isinstance(decode_event(SurveyResponse, value), Rejection)
    ]
    assert b"garbage" in poison_keys and bad["invalid"][0] in poison_keys
    assert (nul_key_person[0] in poison_keys) == nul_key_invalid
    assert sorted(parked) == sorted(poison_keys)
    for offset, (key, _) in enumerate(ordered):
        if key in parked:
            assert parked[key]["source"] == {"topic": topic, "partition": 0, "offset": offset}
    assert parked[b"garbage"]["reason"] == UNDECODABLE
    assert parked[bad["invalid"][0]]["reason"] == INVALID
    assert {letter["group"] for letter in parked.values()} == {
        f"{settings.notifier_group_id}.registry"
    }


async def test_unknown_code_counted_labelled_and_matched_not_parked(
    stack: Stack, run_id: str, environment: dict[str, str], analytics: ServiceProcess
) -> None:
    new_theme = "ocean-economy"  # a theme added to the taxonomy after these consumers were built
    email = f"ocean-{run_id}@example.org"
    known = body(1, run_id)
    newer = body(
        2,
        run_id,
        schema_version=2,  # and a field of that newer schema version, unknown here
        coastline_km=40,
        development_priorities=["sdg-14"],
        capacity_needs=[new_theme, "housing"],
        collaboration_interests=[new_theme],
        focal_point={"name": "Lê Thị Hoa", "email": email, "language": "en", "consent": True},
    )
    pilot = {
        "pilot_id": f"pilot-ocean-{run_id}",
        "title": "Blue economy for coastal cities",
        "themes": [new_theme],
        "sdgs": [],
        "eligible_countries": ["VN"],
        "apply_by": "2099-12-31",
        "url": "https://example.org/pilots/ocean",
        "schema_version": 2,
    }
    settings = notifier_settings(stack, run_id)
    app = create_notifier(settings)
    registry = app.state.notifier.registry
    async with serving(app) as client:
        # Both consumers are running when the events arrive.
        await produce(stack.kafka, environment["TOPIC_RESPONSES"], [record(known), record(newer)])
        registered = await eventually(
            lambda: registry.get(registry.key(email)), lambda r: r is not None, within=60
        )
        await confirm_focal_points(client, Mailbox(stack.mail_api), email)
        await produce(
            stack.kafka,
            environment["TOPIC_PILOTS"],
            [(pilot["pilot_id"].encode(), json.dumps(pilot).encode())],
        )
        # Matched on the new code: the pilot's email reaches the focal point.
        messages = await eventually(
            lambda: Mailbox(stack.mail_api).messages_to(email),
            lambda found: any(pilot["title"] in m["Subject"] for m in found),
            within=60,
        )
        await eventually(
            lambda: consumer_lag(
                stack.kafka, environment["ANALYTICS_GROUP_ID"], environment["TOPIC_RESPONSES"]
            ),
            lambda lag: lag == 0,
            within=60,
        )

    assert new_theme in registered.survey_codes
    assert [m["Subject"] for m in messages if pilot["title"] in m["Subject"]] == [
        f"New pilot for your city: {pilot['title']}"
    ]
    for topic in (environment["TOPIC_RESPONSES"], environment["TOPIC_PILOTS"]):
        assert await read_topic(stack.kafka, topics.dlq(topic), idle_seconds=1) == []
    async with httpx.AsyncClient(base_url=analytics.url, timeout=30, headers=OPERATOR) as client:
        overview = (await client.get("/v1/overview")).json()
        summary = (await client.get("/v1/surveys/cities-2024-priorities/summary")).json()
    for shaped in (overview, summary):
        assert shaped["capacity_needs"][new_theme] == 1
        assert shaped["collaboration_interests"][new_theme] == 1
        assert shaped["unknown_codes"] == [new_theme]
    # Counted under its code like any other, and `verify` agrees (inside `assert_api_exact`).
    await assert_api_exact(environment, analytics, [known, newer], random.Random(2))
