"""Batches of responses through the notifier on the real MongoDB-wire server: one focal point's
responses in one batch keep their order, a batch spread over many buckets copies every entry
into the match index, a batch read again after a crash between the records and the index
repairs the index, and a review noted while a batch is written withholds its focal point
without the confirmation request its first record was stored with."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from services.notifier import match_index, matching, reviews
from services.notifier import registry as registry_module
from services.notifier.deliveries import Deliveries
from services.notifier.matching import Bucket, bucket_of
from services.notifier.notifier import Notifier
from services.notifier.registry import MATCH_BATCH, Registry
from shared import mongo
from shared.events import PilotAnnounced
from tests.integration.notifier_support import addresses, notifier_settings, pilot
from tests.integration.test_notifier_registry import T0, response
from tests.integration.test_notifier_review import Parts
from tests.integration.test_notifier_review import parts as parts
from tests.support import Stack

pytestmark = pytest.mark.integration
ANYWHERE = pilot("p", eligible_countries=[])


@pytest.mark.parametrize("later_first", [False, True])
async def test_on_responses_one_address_twice_in_a_batch_later_kept(
    parts: Parts, run_id: str, later_first: bool
) -> None:
    email = f"twice-{run_id}@example.org"
    earlier = response(1, email, at=T0, interests=("housing",))
    later = response(2, email, at=T0 + timedelta(days=1), interests=("climate-resilience",))
    other = response(3, f"other-{run_id}@example.org", at=T0)
    batch = [later, other, earlier] if later_first else [earlier, other, later]

    handled = await parts.notifier.on_responses(batch)
    record = await parts.registry.get(parts.registry.key(email))
    found = dict(await parts.registry.candidates(ANYWHERE))

    assert handled.refused == []
    assert record is not None and record.response_id == later.response_id
    assert record.survey_codes == ("climate-resilience",)
    # Each response of the address written in turn: revision 2 when the later came second.
    assert record.revision == (1 if later_first else 2)
    assert found[record.key] == ["climate-resilience"]
    assert parts.registry.key(str(other.focal_point.email if other.focal_point else "")) in found


async def test_on_responses_batch_over_many_buckets_each_entry_indexed(
    parts: Parts, run_id: str
) -> None:
    emails = addresses(run_id, "many", 600)
    keys = {parts.registry.key(email) for email in emails}

    handled = await parts.notifier.on_responses(
        [response(n, email) for n, email in enumerate(emails)]
    )
    found = await parts.registry.candidates(ANYWHERE)

    assert handled.refused == []
    assert len({bucket_of(key) for key in keys}) > 200  # spread over most of the 256 buckets
    assert sorted(key for key, _ in found) == sorted(keys)


async def test_candidates_matched_batch_by_batch_off_the_event_loop(
    parts: Parts, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    emails = addresses(run_id, "threads", 600)
    await parts.notifier.on_responses([response(n, email) for n, email in enumerate(emails)])
    calls: list[tuple[str, int]] = []

    def recorded(pilot: PilotAnnounced, buckets: list[Bucket]) -> list[tuple[str, list[str]]]:
        calls.append((threading.current_thread().name, len(buckets)))
        return matching.match(pilot, buckets)

    monkeypatch.setattr(registry_module, "match", recorded)
    found = await parts.registry.candidates(ANYWHERE)

    # Each batch of buckets matched in a worker thread while the next one is read: one bucket
    # document for each bucket a key fell into.
    buckets = {bucket_of(parts.registry.key(email)) for email in emails}
    assert [size for _, size in calls] == [
        min(MATCH_BATCH, len(buckets) - start) for start in range(0, len(buckets), MATCH_BATCH)
    ]
    assert threading.main_thread().name not in {thread for thread, _ in calls}
    assert sorted(key for key, _ in found) == sorted(parts.registry.key(e) for e in emails)


async def test_on_responses_crash_before_index_write_repaired_when_read_again(
    parts: Parts, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    emails = addresses(run_id, "crash", 50)
    batch = [response(n, email) for n, email in enumerate(emails)]

    async def dies(self: match_index.MatchIndex, records: object, fresh: object = ()) -> None:
        raise ConnectionError("the replica died before the index write")

    with monkeypatch.context() as patched:
        patched.setattr(match_index.MatchIndex, "copy", dies)
        with pytest.raises(ConnectionError):
            await parts.notifier.on_responses(batch)
    stored = [await parts.registry.get(parts.registry.key(email)) for email in emails[:3]]
    before = await parts.registry.candidates(ANYWHERE)
    handled = await parts.notifier.on_responses(batch)  # the batch is read again
    after = await parts.registry.candidates(ANYWHERE)

    assert all(record is not None and record.revision == 1 for record in stored)
    assert before == []
    assert handled.refused == []
    assert sorted(key for key, _ in after) == sorted(parts.registry.key(e) for e in emails)


async def test_on_responses_review_noted_during_write_first_request_dropped(
    stack: Stack, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = mongo.new_client(stack.mongodb_url)
    db = mongo.database(client, f"test_{run_id}")
    settings = notifier_settings(stack, run_id, smtp_port=9)  # double opt-in, as in service
    registry = Registry(db, settings.email_keys())
    deliveries = Deliveries(db, timedelta(seconds=60))
    notifier = Notifier(settings, registry, deliveries)
    rejected, asked = (
        response(1, f"rejected-{run_id}@example.org"),
        response(2, f"asked-{run_id}@example.org"),
    )
    # Registered and asked before; its later response is rejected too: its request stays.
    known = f"known-{run_id}@example.org"
    await notifier.on_responses([response(3, known)])
    known_later = response(4, known, at=T0 + timedelta(days=1))
    write_many = Registry._write_many

    async def rejected_meanwhile(self: Registry, *args: Any) -> Any:
        written = await write_many(self, *args)
        # An operator's rejections, noted after the reviews were read and the records written.
        for n, of in enumerate((rejected, known_later)):
            await self._note(reviews.NotedReview(f"r{n}", of.identity, "rejected", (1, f"r{n}")))
        return written

    monkeypatch.setattr(Registry, "_write_many", rejected_meanwhile)
    try:
        handled = await notifier.on_responses([rejected, asked, known_later])
        records = [
            await registry.get(registry.key(f"{who}-{run_id}@example.org"))
            for who in ("rejected", "asked", "known")
        ]
        emails = [await deliveries.of_focal_point(r.key) for r in records if r]
    finally:
        await client.close()

    withheld, kept, known_record = records
    assert handled.created == 1
    assert withheld is not None and withheld.withheld and withheld.request is None
    assert kept is not None and kept.request is not None and kept.request.number == 1
    assert known_record is not None and known_record.withheld
    assert known_record.request is not None and known_record.request.number == 1
    assert [[d.request for d in found] for found in emails] == [[], [1], [1]]
