"""`python -m services.analytics verify | rebuild` against the real MongoDB-wire server."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import AutoReconnect

from services.analytics.aggregates import OVERALL, survey_key
from services.analytics.audit import flatten
from services.analytics.documents import version_id
from services.analytics.store import (
    AGGREGATES,
    HEAD_EVERY,
    AnalyticsStore,
    PartsWrite,
    Positioned,
)
from shared import mongo
from shared.events import SurveyResponse
from shared.mongo import Document
from tests.support import Stack, canonical_response, run_service_command

pytestmark = pytest.mark.integration
PRIORITIES = survey_key("cities-2024-priorities")


def event(number: int, **overrides: object) -> SurveyResponse:
    body = canonical_response(f"generic:m{number}", **overrides)
    return SurveyResponse.model_validate(
        {**body, "source": "generic", "received_at": datetime.now(UTC)}
    )


def run_command(stack: Stack, run_id: str, command: str) -> subprocess.CompletedProcess[str]:
    return run_service_command("analytics", command, stack.environment(run_id))


async def corrupt(
    mongo_client: AsyncMongoClient[Document], run_id: str, key: str, update: Document
) -> None:
    """Change the newest version of an aggregate document behind the service's back."""
    aggregates = mongo_client[f"test_{run_id}"][AGGREGATES]
    head = await aggregates.find_one({"_id": key})
    assert head is not None
    result = await aggregates.update_one({"_id": version_id(key, head["latest"])}, update)
    assert result.modified_count == 1


async def fill(store: AnalyticsStore) -> list[Positioned]:
    """A consumer's work: 12 responses over two partitions and two surveys, one duplicate."""
    responses = [
        event(
            n,
            survey_id="cities-2024-capacity" if n % 4 == 0 else "cities-2024-priorities",
            respondent={"type": "cso", "country": "KE" if n % 2 else "VN", "city": "Kisumu"},
        )
        for n in range(12)
    ]
    items = [Positioned(r, n % 2, n // 2) for n, r in enumerate(responses)]
    items.append(Positioned(responses[3], 1, 6))  # r3 again, later in its partition
    await store.apply(await store.record(items))
    return items


async def test_verify_clean_run_passes(
    stack: Stack, run_id: str, mongo_client: AsyncMongoClient[Document]
) -> None:
    await fill(AnalyticsStore(mongo_client[f"test_{run_id}"]))

    result = run_command(stack, run_id, "verify")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no drift" in result.stdout


async def test_verify_corrupted_counter_names_it_and_rebuild_repairs(
    stack: Stack, run_id: str, mongo_client: AsyncMongoClient[Document]
) -> None:
    store = AnalyticsStore(mongo_client[f"test_{run_id}"])
    await fill(store)
    before = await store.aggregates()
    await corrupt(mongo_client, run_id, PRIORITIES, {"$inc": {"by_country.KE": 3}})
    await corrupt(mongo_client, run_id, OVERALL, {"$set": {"capacity_needs.housing": 2}})

    failed = run_command(stack, run_id, "verify")
    rebuilt = run_command(stack, run_id, "rebuild")
    repaired = run_command(stack, run_id, "verify")

    assert failed.returncode == 1, failed.stdout + failed.stderr
    drifting = [line for line in failed.stdout.splitlines() if line.startswith("drift:")]
    kenya = before[PRIORITIES]["by_country"]["KE"]
    assert drifting == [
        "drift: all capacity_needs.housing: running 2, recount 0",
        f"drift: {PRIORITIES} by_country.KE: running {kenya + 3}, recount {kenya}",
    ]
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    after = await store.aggregates()
    assert {key: flatten(doc) for key, doc in after.items()} == {
        key: flatten(doc) for key, doc in before.items()
    }
    # Every document now carries the overall document's watermarks: the rebuild's boundary.
    assert all(doc["applied"] == before[OVERALL]["applied"] for doc in after.values())


async def test_rebuild_after_crash_then_replay_counts_once(
    stack: Stack, run_id: str, mongo_client: AsyncMongoClient[Document]
) -> None:
    store = AnalyticsStore(mongo_client[f"test_{run_id}"])
    items = await fill(store)
    # The next batch was stored, then the process died before applying it: not committed.
    late = [Positioned(event(100 + n), 0, 7 + n) for n in range(3)]
    await store.record(late)
    await mongo_client[f"test_{run_id}"][AGGREGATES].update_one(
        {"_id": OVERALL}, {"$inc": {"total": 7}}
    )

    result = run_command(stack, run_id, "rebuild")
    await store.apply(await store.record(late + items[-3:]))  # Kafka delivers it again

    assert result.returncode == 0, result.stdout + result.stderr
    overall = await store.aggregate(OVERALL)
    assert overall is not None
    assert overall["total"] == 15
    assert overall["surveys"] == {"cities-2024-priorities": 12, "cities-2024-capacity": 3}
    audit = run_command(stack, run_id, "verify")
    assert audit.returncode == 0, audit.stdout


async def test_rebuild_below_a_survey_then_redelivery_counts_once(
    stack: Stack, run_id: str, mongo_client: AsyncMongoClient[Document]
) -> None:
    store = AnalyticsStore(mongo_client[f"test_{run_id}"])
    await fill(store)
    before = await store.newest(OVERALL)
    assert before is not None
    late = [Positioned(event(100 + n), 0, 7 + n) for n in range(3)]
    await store.apply(await store.record(late))
    # The process died between the survey's document and the overall one: the overall
    # document is one batch behind, and the rebuild takes the survey's back to it.
    await store.replace_aggregates({OVERALL: before})

    result = run_command(stack, run_id, "rebuild")
    # Kafka delivers the batch again to a consumer that last saw the survey's document ahead.
    await store.apply(await store.record(late))

    assert result.returncode == 0, result.stdout + result.stderr
    overall = await store.aggregate(OVERALL)
    survey = await store.aggregate(PRIORITIES)
    assert overall is not None and survey is not None
    assert (overall["total"], survey["total"]) == (15, 12)
    audit = run_command(stack, run_id, "verify")
    assert audit.returncode == 0, audit.stdout


async def test_single_document_format_continued_by_next_write(
    stack: Stack, run_id: str, mongo_client: AsyncMongoClient[Document]
) -> None:
    # What the first release wrote: one document per key, counters and watermarks in place.
    legacy = event(50)
    await mongo_client[f"test_{run_id}"][AGGREGATES].insert_one(
        {"_id": OVERALL, "total": 1, "surveys": {"cities-2024-priorities": 1}, "applied": {"p0": 0}}
    )
    store = AnalyticsStore(mongo_client[f"test_{run_id}"])
    await store.record([Positioned(legacy, 0, 0)])

    before = await store.aggregate(OVERALL)
    await store.apply(await store.record([Positioned(event(51), 0, 1)]))
    after = await store.aggregate(OVERALL)

    assert before == {"_id": OVERALL, "total": 1, "surveys": {"cities-2024-priorities": 1}}
    assert after is not None
    assert after["total"] == 2
    assert after["surveys"] == {"cities-2024-priorities": 2}


async def test_aggregate_lagging_head_on_a_dead_writers_version_reads_the_newest(
    stack: Stack, run_id: str, mongo_client: AsyncMongoClient[Document]
) -> None:
    writer = AnalyticsStore(mongo_client[f"test_{run_id}"])
    for n in range(HEAD_EVERY):  # one version of each document per batch: the head moves
        await writer.apply(await writer.record([Positioned(event(60 + n), 0, n)]))
    newest = await writer.aggregate(OVERALL)
    aggregates = mongo_client[f"test_{run_id}"][AGGREGATES]
    head = await aggregates.find_one({"_id": OVERALL})
    assert head is not None and head["latest"] == HEAD_EVERY
    whole = await aggregates.find_one({"_id": version_id(OVERALL, HEAD_EVERY)})
    assert whole is not None
    # A writer killed after inserting version 3 and before making version 1 a tombstone is
    # what leaves such a version whole; the head lags on it when the writers that moved it
    # died too, or when a `$max` lost a race on a server without atomic updates.
    await aggregates.replace_one(
        {"_id": version_id(OVERALL, 3)}, {**whole, "_id": version_id(OVERALL, 3), "version": 3}
    )
    await aggregates.update_one({"_id": OVERALL}, {"$set": {"latest": 3}})
    assert (await aggregates.find_one({"_id": version_id(OVERALL, 4)}) or {}).get("superseded")

    reader = AnalyticsStore(mongo_client[f"test_{run_id}"])
    read = await asyncio.wait_for(reader.aggregate(OVERALL), timeout=60)
    await writer.apply(await writer.record([Positioned(event(70), 0, HEAD_EVERY)]))
    after = await asyncio.wait_for(reader.aggregate(OVERALL), timeout=60)

    assert read == newest
    assert after is not None and newest is not None
    assert after["total"] == newest["total"] + 1


class UpdateCounter(monitoring.CommandListener):
    """Counts the update commands sent to the aggregates (each a scan on FerretDB)."""

    def __init__(self) -> None:
        self.updates = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update" and event.command.get("update") == AGGREGATES:
            self.updates += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_apply_batches_retire_old_versions_in_one_update_each(
    stack: Stack, run_id: str, mongo_client: AsyncMongoClient[Document]
) -> None:
    counter = UpdateCounter()
    watched = mongo.new_client(stack.mongodb_url, event_listeners=[counter])
    store = AnalyticsStore(watched[f"test_{run_id}"])
    surveys = ("cities-2024-priorities", "cities-2024-capacity")
    updates = []
    try:
        for n in range(6):  # versions 1..6 of three documents (overall and two surveys)
            batch = [
                Positioned(event(80 + 2 * n + s, survey_id=surveys[s]), 0, 2 * n + s)
                for s in (0, 1)
            ]
            before = counter.updates
            await store.apply(await store.record(batch))
            await store.retired()  # shrunk behind the batch: counted with the batch
            updates.append(counter.updates - before)
        total = await store.aggregate(OVERALL)
    finally:
        await watched.close()
    stored = mongo_client[f"test_{run_id}"][AGGREGATES]
    old = [d async for d in stored.find({"version": {"$lte": 4}})]
    whole = [d async for d in stored.find({"version": {"$gt": 4}})]

    # Batch 1 sets the three heads; from version 3 on, each batch makes the three versions it
    # superseded tombstones in one update (one scan on FerretDB, not one per document).
    assert updates == [3, 0, 1, 1, 1, 1]
    assert len(old) == 12 and all(set(d) == {"_id", "key", "version", "superseded"} for d in old)
    assert len(whole) == 6 and not any(d.get("superseded") for d in whole)
    assert total is not None and total["total"] == 12


class VersionInserts(monitoring.CommandListener):
    """The aggregate versions inserted: when each insert started and when it was answered, in
    the order these happened."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []  # ("started" | "succeeded", version `_id`)
        self._ids: dict[int, list[str]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "insert" and event.command.get("insert") == AGGREGATES:
            ids = [str(document["_id"]) for document in event.command["documents"]]
            self._ids[event.request_id] = ids
            self.events += [("started", id_) for id_ in ids]

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.events += [("succeeded", id_) for id_ in self._ids.pop(event.request_id, [])]

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._ids.pop(event.request_id, None)


SURVEYS = ("cities-2024-priorities", "cities-2024-capacity", "cities-2024-collaboration")


async def test_apply_overall_version_inserted_after_every_survey_version(
    stack: Stack, run_id: str
) -> None:
    inserts = VersionInserts()
    watched = mongo.new_client(stack.mongodb_url, event_listeners=[inserts])
    store = AnalyticsStore(watched[f"test_{run_id}"])
    try:
        for batch in range(3):
            await store.apply(
                await store.record(
                    [
                        Positioned(event(300 + 3 * batch + s, survey_id=survey), 0, 3 * batch + s)
                        for s, survey in enumerate(SURVEYS)
                    ]
                )
            )
    finally:
        await watched.close()

    # The boundary `rebuild` relies on: the overall version of a batch is asked for only once
    # every survey's version of the batch is stored.
    for version in (1, 2, 3):
        overall = inserts.events.index(("started", version_id(OVERALL, version)))
        surveys = [
            inserts.events.index(("succeeded", version_id(survey_key(survey), version)))
            for survey in SURVEYS
        ]
        assert max(surveys) < overall, inserts.events


class SurveyWritesFail(AnalyticsStore):
    """The real store, but the versions of one survey's document cannot be inserted, as when
    the database goes away in the middle of a batch."""

    async def _insert_version(
        self,
        key: str,
        version: int,
        counters: Document,
        marks: Mapping[int, int],
        parts: PartsWrite,
        previous: Document | None,
    ) -> bool:
        if key == PRIORITIES:
            raise AutoReconnect("the database went away")
        return await super()._insert_version(key, version, counters, marks, parts, previous)


async def test_apply_survey_write_failing_no_overall_version_and_read_again_counts_once(
    run_id: str, mongo_client: AsyncMongoClient[Document]
) -> None:
    database = mongo_client[f"test_{run_id}"]
    capacity = survey_key("cities-2024-capacity")
    batch = [
        Positioned(event(400), 0, 0),
        Positioned(event(401, survey_id="cities-2024-capacity"), 0, 1),
    ]
    failing = SurveyWritesFail(database)

    with pytest.raises(AutoReconnect):
        await failing.apply(await failing.record(batch))
    overall_first = await database[AGGREGATES].find_one({"_id": version_id(OVERALL, 1)})
    store = AnalyticsStore(database)  # the batch read again, the database back
    await store.apply(await store.record(batch))

    assert overall_first is None
    assert await database[AGGREGATES].find_one({"_id": version_id(capacity, 1)}) is not None
    for key, total in ((OVERALL, 2), (PRIORITIES, 1), (capacity, 1)):
        document = await store.aggregate(key)
        assert document is not None and document["total"] == total, key
