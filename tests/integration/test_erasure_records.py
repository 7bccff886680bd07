"""Erasure and retention on the real MongoDB-wire server, step by step: the same request twice
changes nothing more, a replayed older response does not bring the person back while a later
one (a new consent) does, and the retention sweeps anonymise only what is old enough."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.analytics.documents import raw_document
from services.analytics.erasure import AnalyticsErasure
from services.analytics.store import (
    MARKS_COMPLETE,
    PERSONAL_HOURS,
    RESPONSES,
    AnalyticsStore,
    Positioned,
)
from services.notifier.deliveries import Deliveries
from services.notifier.erasure import NotifierErasure
from services.notifier.registry import Registry
from services.notifier.rekey import rekey
from shared import mongo
from shared.events import ErasureRequested, SurveyResponse
from shared.mongo import Document
from shared.personal import EmailKeys
from tests.integration.notifier_support import pilot
from tests.support import Stack, canonical_response

pytestmark = pytest.mark.integration
T0 = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)


def confirmed_registry(db: AsyncDatabase[Document], keys: EmailKeys) -> Registry:
    """A registry whose people count as confirmed: these tests are about erasure and re-keying,
    not double opt-in (test_notifier_consent.py)."""
    return Registry(db, keys, require_confirmation=False)


@pytest.fixture
async def db(stack: Stack, run_id: str) -> AsyncIterator[AsyncDatabase[Document]]:
    client = mongo.new_client(stack.mongodb_url)
    try:
        yield mongo.database(client, f"test_{run_id}")
    finally:
        await client.close()


@pytest.fixture
def keys(stack: Stack, run_id: str) -> EmailKeys:
    return EmailKeys(stack.environment(run_id)["EMAIL_KEY_SECRET"])


def response(
    number: int, email: str, *, at: datetime = T0, received: datetime | None = None
) -> SurveyResponse:
    body: dict[str, Any] = canonical_response(
        f"generic:{number}",
        submitted_at=at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        collaboration_interests=["climate-resilience"],
        focal_point={"name": "Trần Thị Bình", "email": email, "consent": True},
        answers={"comments": f"Write to {email}", "staff": 4},
    )
    return SurveyResponse.model_validate(
        {**body, "source": "generic", "received_at": received or at}
    )


def erasure(keys: EmailKeys, email: str, request_id: str = "req-1") -> ErasureRequested:
    return ErasureRequested(
        request_id=request_id, email_key=keys.key(email), requested_at=datetime.now(UTC)
    )


async def snapshot(db: AsyncDatabase[Document]) -> dict[str, list[str]]:
    """Every document of every collection, as text, in a stable order."""
    documents = {}
    for name in sorted(await db.list_collection_names()):
        texts = [json.dumps(d, default=str, sort_keys=True) async for d in db[name].find()]
        documents[name] = sorted(texts)
    return documents


async def test_notifier_erasure_twice_changes_nothing_more(
    db: AsyncDatabase[Document], keys: EmailKeys
) -> None:
    email = "Twice.Erased@example.org"
    registry = confirmed_registry(db, keys)
    deliveries = Deliveries(db, timedelta(seconds=60))
    eraser = NotifierErasure(db, registry)
    await eraser.ensure_indexes()
    await registry.register(response(1, email))
    await registry.remember_link("link-id-of-the-person", keys.key(email))
    for number in range(3):
        await deliveries.create(f"p{number}", keys.key(email), ["climate-resilience"])
    await deliveries.mark_sent([f"p0|{keys.key(email)}"], "<m@test>")

    first = await eraser.erase(erasure(keys, email))
    after_first = await snapshot(db)
    again = await eraser.erase(erasure(keys, email))

    assert await snapshot(db) == after_first
    assert again == first
    assert first["removed"] == {
        "focal_points": 1,
        "link_ids": 1,
        "deliveries_sent": 1,
        "deliveries_cancelled": 2,
    }
    assert email.lower() not in json.dumps(after_first, ensure_ascii=False).lower()
    counts = sorted([d.state for p in ("p0", "p1", "p2") for d in await deliveries.for_pilot(p)])
    assert counts == ["cancelled", "cancelled", "sent"]


async def test_notifier_erasure_older_response_stays_out_newer_is_new_consent(
    db: AsyncDatabase[Document], keys: EmailKeys
) -> None:
    email = "comes.back@example.org"
    registry = confirmed_registry(db, keys)
    eraser = NotifierErasure(db, registry)
    await registry.register(response(1, email, at=T0))
    request = erasure(keys, email)
    await eraser.erase(request)

    replayed = await registry.register(response(1, email, at=T0))
    found_after_replay = await registry.candidates(pilot("p", eligible_countries=[]))
    later = request.requested_at + timedelta(minutes=1)
    again = await registry.register(response(2, email, at=later))
    found_after_consent = await registry.candidates(pilot("p", eligible_countries=[]))

    assert replayed is not None and replayed.email is None and replayed.consent is False
    assert found_after_replay == []
    assert again is not None and again.email == email and again.consent is True
    assert found_after_consent == [(keys.key(email), ["climate-resilience"])]


async def test_notifier_erasure_read_after_a_newer_consent_keeps_it(
    db: AsyncDatabase[Document], keys: EmailKeys
) -> None:
    email = "consented.after@example.org"
    registry = confirmed_registry(db, keys)
    deliveries = Deliveries(db, timedelta(seconds=60))
    request = erasure(keys, email)
    # The person answered again after asking, and that was read before the request.
    await registry.register(response(1, email, at=request.requested_at + timedelta(minutes=1)))
    await deliveries.create("p", keys.key(email), ["climate-resilience"])

    record = await NotifierErasure(db, registry).erase(request)
    kept = await registry.get(keys.key(email))

    assert record["state"] == "done" and record["removed"] == {"newer_consent": 1}
    assert kept is not None and kept.email == email and kept.consent is True
    assert [d.state for d in await deliveries.for_pilot("p")] == ["pending"]


async def test_notifier_erasure_then_new_consent_link_written_again(
    db: AsyncDatabase[Document], keys: EmailKeys
) -> None:
    email = "linked.again@example.org"
    registry = confirmed_registry(db, keys)  # one replica: it remembers the links it wrote
    first = await registry.register(response(1, email))
    assert first is not None
    await registry.remember_link("the-link-id", keys.key(email), first.revision)
    request = erasure(keys, email)
    await NotifierErasure(db, registry).erase(request)
    gone = await registry.by_link("the-link-id")

    again = await registry.register(response(2, email, at=request.requested_at + timedelta(1)))
    assert again is not None
    await registry.remember_link("the-link-id", keys.key(email), again.revision)
    found = await registry.by_link("the-link-id")

    assert gone is None
    assert found is not None and found.email == email


async def test_analytics_erasure_twice_counts_unchanged(
    db: AsyncDatabase[Document], keys: EmailKeys
) -> None:
    email = "analysed@example.org"
    store = AnalyticsStore(db, keys)
    eraser = AnalyticsErasure(db)
    await eraser.ensure_indexes()
    batch = [
        Positioned(response(n, email if n < 2 else "other@example.org"), 0, n) for n in range(3)
    ]
    await store.apply(await store.record(batch))
    counts_before = await store.recount()
    running_before = await store.aggregates()

    first = await eraser.erase(erasure(keys, email))
    after_first = await snapshot(db)
    again = await eraser.erase(erasure(keys, email))

    assert await snapshot(db) == after_first
    assert again == first and first["removed"] == {"stored_responses_answers": 2}
    assert await store.recount() == counts_before
    assert await store.aggregates() == running_before
    text = json.dumps(after_first, ensure_ascii=False).lower()
    assert email not in text and "other@example.org" in text


async def test_retention_sweeps_anonymise_only_old_records(
    db: AsyncDatabase[Document], keys: EmailKeys
) -> None:
    now = datetime.now(UTC)
    old, recent = "old.enough@example.org", "recent@example.org"
    store = AnalyticsStore(db, keys)
    analytics = AnalyticsErasure(db)
    await analytics.ensure_indexes()
    await store.record(
        [
            Positioned(response(1, old, received=now - timedelta(days=40)), 0, 0),
            Positioned(response(2, recent, received=now - timedelta(days=10)), 0, 1),
        ]
    )
    deliveries = Deliveries(db, timedelta(seconds=60))
    notifier = NotifierErasure(db, confirmed_registry(db, keys))
    for email in (old, recent):
        await deliveries.create("p", keys.key(email), ["climate-resilience"])
        await deliveries.mark_failed([f"p|{keys.key(email)}"], f"550 <{email}> no such user")
    await db["notifier_deliveries"].update_one(
        {"_id": f"p|{keys.key(old)}"}, {"$set": {"created_at": now - timedelta(days=40)}}
    )

    swept = [await analytics.sweep(timedelta(days=30)), await notifier.sweep(timedelta(days=30))]
    again = [await analytics.sweep(timedelta(days=30)), await notifier.sweep(timedelta(days=30))]
    text = json.dumps(await snapshot(db), ensure_ascii=False).lower()

    assert swept == [1, 1] and again == [0, 0]
    assert old not in text and recent in text
    [kept] = [d for d in await deliveries.for_pilot("p") if d.email_key == keys.key(old)]
    # The stored document itself: retention removes the fields, not only their values.
    stored = await db["notifier_deliveries"].find_one({"_id": kept.key})
    assert kept.state == "failed" and stored is not None
    assert "codes" not in stored and "last_error" not in stored


async def test_retention_sweep_nothing_due_reads_no_stored_response(
    db: AsyncDatabase[Document], keys: EmailKeys
) -> None:
    now = datetime.now(UTC)
    store, analytics = AnalyticsStore(db, keys), AnalyticsErasure(db)
    await store.record([Positioned(response(1, "recent@example.org", received=now), 0, 0)])
    # Stored behind the store's back, unmarked: only a scan of the stored responses finds it.
    old = response(2, "unmarked@example.org", received=now - timedelta(days=40))
    await db[RESPONSES].insert_one(raw_document(Positioned(old, 0, 1), keys))

    swept = await analytics.sweep(timedelta(days=30))

    assert swept == 0  # the marks said nothing is due: no scan
    assert await db[RESPONSES].count_documents({"personal": True}) == 2


async def test_retention_sweep_due_hour_swept_and_its_mark_dropped(
    db: AsyncDatabase[Document], keys: EmailKeys
) -> None:
    now = datetime.now(UTC)
    store, analytics = AnalyticsStore(db, keys), AnalyticsErasure(db)
    received = [now - timedelta(days=40), now - timedelta(days=10)]
    await store.record(
        [
            Positioned(response(n, f"p{n}@example.org", received=at), 0, n)
            for n, at in enumerate(received)
        ]
    )

    swept = await analytics.sweep(timedelta(days=30))
    marks = {d["_id"] async for d in db[PERSONAL_HOURS].find({})}

    assert swept == 1
    assert marks == {MARKS_COMPLETE, received[1].strftime("%Y-%m-%dT%H")}


async def test_retention_sweep_responses_stored_before_marks_still_scanned(
    db: AsyncDatabase[Document], keys: EmailKeys
) -> None:
    now = datetime.now(UTC)
    old = response(1, "before.marks@example.org", received=now - timedelta(days=40))
    await db[RESPONSES].insert_one(raw_document(Positioned(old, 0, 0), keys))
    store, analytics = AnalyticsStore(db, keys), AnalyticsErasure(db)
    await store.record([Positioned(response(2, "later@example.org", received=now), 0, 1)])

    swept = await analytics.sweep(timedelta(days=30))

    # Something was stored unmarked before the first mark: the marks are never complete.
    assert swept == 1
    assert {
        d["_id"]
        async for d in db[PERSONAL_HOURS].find({"_id": {"$in": ["complete", "incomplete"]}})
    } == {"incomplete"}


class AddressKeys(EmailKeys):
    """The keys of the format before the keyed hash: the lower-cased address itself."""

    def key(self, email: str) -> str:
        return email.strip().lower()


async def test_rekey_records_by_address_moved_to_keyed_hash(
    db: AsyncDatabase[Document], keys: EmailKeys
) -> None:
    people = ["Moved.One@example.org", "moved.two@example.org"]
    old = confirmed_registry(db, AddressKeys(""))
    deliveries = Deliveries(db, timedelta(seconds=60))
    for number, email in enumerate(people):
        await old.register(response(number, email))
        await deliveries.create("p", email.lower(), ["climate-resilience"])
    await old.unsubscribe(people[1].lower())
    await old.remember_link("old-link-id", people[0].lower())
    await deliveries.mark_sent([f"p|{people[0].lower()}"], "<m@test>")

    moved = await rekey(db, keys, require_confirmation=False)
    again = await rekey(db, keys, require_confirmation=False)
    registry = confirmed_registry(db, keys)
    stored = await snapshot(db)

    assert moved == {"focal_points": 2, "deliveries": 2, "link_ids": 1, "index_entries": 2}
    assert again == {}
    by_link = await registry.by_link("old-link-id")  # links already sent keep working
    assert by_link is not None and by_link.email == people[0]
    assert await registry.candidates(pilot("p", eligible_countries=[])) == [
        (keys.key(people[0]), ["climate-resilience"])
    ]
    states = {d.key: d.state for d in await deliveries.for_pilot("p")}
    assert states == {f"p|{keys.key(people[0])}": "sent", f"p|{keys.key(people[1])}": "pending"}
    unsubscribed = await registry.get(keys.key(people[1]))
    assert unsubscribed is not None and unsubscribed.unsubscribed is True
    # The addresses are left only in the registry's `email` fields.
    for name, texts in stored.items():
        for email in people:
            found = [t for t in texts if email.lower() in t.lower()]
            assert not found or name == "notifier_focal_points", (name, found)
