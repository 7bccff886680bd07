"""The analytics MongoDB adapter; the only module that knows its collection names.

Exactly-once effect without transactions, from two single-document atomic steps:

1. Every response is stored raw under `_id = survey_id/response_id` (`SurveyResponse.identity`:
   one generic id may be used in two surveys) with the Kafka position (partition,
   offset) of the first message that carried it. A message *counts* only where its own position is
   the stored one: a duplicate elsewhere in the topic never counts, and a replay of the very same
   message still counts (in case the crash came before step 2).
2. Each aggregate document carries a watermark per partition: the last offset applied to it. Its
   increments are applied by compare-and-set on those watermarks, counting only offsets above them,
   so a batch applied twice, by a zombie or after a crash, adds nothing the second time.

The compare-and-set is an *insert*: an aggregate document is a chain of immutable versions
(`_id = "<key>#<version>"`), and a writer inserts version n+1 computed from version n. The unique
`_id` lets exactly one writer win; the others read the winner's version and try again on top of
it. A conditional `update` would not do: FerretDB evaluates its filter and writes the result in
two steps, so two concurrent writers can both pass the same guard and one increment is lost
(measured: 240 successful guarded updates left 70 increments). A head document (`_id = <key>`)
points readers at a recent version; old versions shrink to tombstones as new ones arrive.

A version holds every counter but the high-cardinality breakdowns (`by_city`), which have no
bound: those live in immutable *parts*, and each version names the parts that make up its
counters (`parts.py` plans them). Parts are written before the version that names them, so the
version's insert stays the one compare-and-set: parts of a writer that lost are never named, and
it deletes them. The parts of one generation share a collection of their own; a version that
starts a new generation lists the old collection in its `garbage`, which is dropped once the
version before is a tombstone. A reader of a superseded version may therefore find its parts
gone: it reads the newest version instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bson.errors import InvalidDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DocumentTooLarge, DuplicateKeyError, PyMongoError

from services.analytics.aggregates import (
    OVERALL,
    Counted,
    document_increments,
    survey_key,
)
from services.analytics.aggregates import Positioned as Positioned
from services.analytics.audit import (
    GARBAGE,
    KEY,
    LATEST,
    PARTS,
    VERSION,
    WATERMARKS,
    add_counters,
    counters_of,
    flatten,
    nest,
    watermark_fields,
    watermarks,
)
from services.analytics.documents import (
    FIRST,
    ORIGIN,
    PLACEHOLDER,
    TRACKED,
    displaced_id,
    from_raw_document,
    layouts,
    main_counters,
    origin_of,
    part_id,
    part_ids,
    placeholder_document,
    positioned_from_raw,
    probe_document,
    raw_document,
    version_id,
)
from services.analytics.parts import (
    SPLIT_FIELDS,
    Layout,
    Step,
    decide,
    merged,
    new_parts,
    next_layout,
    split_increments,
)
from services.analytics.states import (
    Change,
    State,
    after_response,
    after_review,
    legacy_state,
)
from shared.events import ResponseReview, SurveyResponse
from shared.failures import Disposition, classify_write_error, unstorable
from shared.mongo import Document
from shared.observability import STORED_PROBES, STORED_READS
from shared.personal import EmailKeys

logger = logging.getLogger(__name__)
RESPONSES = "analytics_responses"
AGGREGATES = "analytics_aggregates"
# The chains of response states (`states.py`): one immutable entry per change, `_id`
# `<identity>@<seq>`, the unique insert that decides which writer's change comes next.
STATES = "analytics_response_states"
# Receipts of the raw inserts of a batch in progress (`insert_raw`): the positions whose raw
# response it stored, as runs of offsets (a record at a position never changes, so neither does
# the `_id` stored from it). A batch read again after a crash learns from them, without reading
# the stored responses (a scan on FerretDB, which grows with the campaign), that what it finds
# stored is its own earlier insert. A batch's receipts go once it is applied: few remain.
RECEIPTS = "analytics_raw_receipts"
# Marks the receipt of a probe (`AnalyticsStore._probe`): the positions it asked about.
PROBE = "probe"
# The hours in which responses that hold personal data were received (`_id`: `received_at` to
# the hour, marked before such a response is stored) and, once every stored response is marked
# so, a document `complete`: the retention sweep reads these few documents and scans the stored
# responses only when an hour is due (`erasure.py`).
PERSONAL_HOURS = "analytics_personal_hours"
MARKS_COMPLETE = "complete"
MARKS_INCOMPLETE = "incomplete"  # responses were stored before the first mark
# Each generation of parts is a collection `analytics_aggregate_parts-<key hash>-<field>-<version
# that compacted>-<writer token>`.
AGGREGATE_PARTS = "analytics_aggregate_parts"
FIELD = "field"
COUNTS = "counts"
# A reader that keeps finding parts gone is overtaken by writers again and again; it gives up
# (the request fails and can be retried) rather than loop for ever.
READ_ATTEMPTS = 20
# Fetching a few parts by `_id` one by one is cheaper on FerretDB than one `$in` query, which
# decodes the whole collection.
FEW_PARTS = 4
# Deleting a probe by its `_id` alone FerretDB does in SQL (about 0.65 s at 1,000,000 stored
# responses, on 2 cores), where a delete by `$in` decodes the whole collection (some 145 s): up
# to this many probes go one by one.
FEW_PROBES = 64
DUPLICATE_KEY = 11000
SUPERSEDED = "superseded"
# On FerretDB every read or write by `_id` scans the collection (it uses no index for them), so
# it pays to keep few whole versions (older ones are tombstones) and to move the head at every
# eighth version only: each move is a write (a scan) per document and batch, while the head
# serves only a reader that knows no version yet (a process starting). Such a reader probes
# forward from the head, or, when the head names a tombstone by then, finds the newest whole
# version by one scan.
KEEP_VERSIONS = 2
HEAD_EVERY = 8


def key_hash(key: str) -> str:
    """A short name of an aggregate document key, safe in a collection name."""
    return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


def generation_collection(key: str, field: str, version: int, token: str) -> str:
    """The collection of the parts of one field that one writer compacted for one version."""
    return f"{AGGREGATE_PARTS}-{key_hash(key)}-{field}-{version:012d}-{token}"


def generation_of(collection: str) -> tuple[str, int] | None:
    """(key hash, version) of a generation's collection name; None for any other name."""
    prefix, _, rest = collection.partition("-")
    parts = rest.split("-")
    if prefix != AGGREGATE_PARTS or len(parts) != 4 or not parts[2].isdigit():
        return None
    return parts[0], int(parts[2])


class MissingPart(Exception):
    """A part named by a version is gone: the version has been superseded since it was read."""


@dataclass(frozen=True)
class PartsWrite:
    """The parts written for one new version: each split field's layout, the generations'
    collections it created, the parts it added to existing ones (collection -> ids), and the
    collections of the generations it ended (to drop once no reachable version names them)."""

    layouts: dict[str, Layout]
    created: list[str]
    appended: dict[str, list[str]]
    garbage: list[str]
    written: list[str]


class StoreRefusedError(Exception):
    """The database refused a response for what it is (see `shared.failures`)."""


@dataclass(frozen=True)
class Recorded:
    """A batch of raw responses stored: what counts, and what the database refused;
    `inserted`: the raw `_id`s these very messages stored (this call, or an earlier attempt
    at the same positions that a receipt or the stored position proves); `receipts`: those
    to drop once the batch is applied (`drop_receipts`); `firsts`: the first chain entries of
    its revisions 1, worked out ahead for `track` (`first_changes`)."""

    counted: list[Positioned]
    refused: list[tuple[Positioned, str]]
    inserted: frozenset[str] = frozenset()
    receipts: frozenset[str] = frozenset()
    firsts: Mapping[str, Change] | None = None


@dataclass(frozen=True)
class RawInsert:
    """An insert of raw documents, by index: those the database refused for what they are
    (with why), and those whose `_id` was taken already (a redelivery, or a duplicate)."""

    refused: dict[int, str]
    taken: frozenset[int]
    receipts: tuple[str, ...] = ()

    def after(self, shift: int, other: RawInsert) -> RawInsert:
        """This insert followed by `other`, whose indexes start at `shift`."""
        refused = self.refused | {shift + i: why for i, why in other.refused.items()}
        taken = self.taken | {shift + i for i in other.taken}
        return RawInsert(refused, taken, self.receipts + other.receipts)


@dataclass(frozen=True)
class PositionedReview:
    """A review and where it sits (its partition shifted: `states.review_partition`)."""

    review: ResponseReview
    partition: int
    offset: int


Message = Positioned | PositionedReview


@dataclass(frozen=True)
class OffsetRun:
    """Consecutive offsets `first`..`last` of one partition."""

    partition: int
    first: int
    last: int


def offset_runs(positions: Iterable[tuple[int, int]]) -> list[OffsetRun]:
    """These (partition, offset) positions as runs of consecutive offsets, fewest first."""
    runs: list[OffsetRun] = []
    for partition, offset in sorted(set(positions)):
        if runs and runs[-1].partition == partition and runs[-1].last + 1 == offset:
            runs[-1] = OffsetRun(partition, runs[-1].first, offset)
        else:
            runs.append(OffsetRun(partition, offset, offset))
    return runs


def runs_fields(runs: list[OffsetRun]) -> Document:
    """Runs as a receipt stores them: three lists side by side (the local MongoDB-wire server
    stores no nested arrays)."""
    return {
        "partitions": [run.partition for run in runs],
        "firsts": [run.first for run in runs],
        "lasts": [run.last for run in runs],
    }


def runs_of(receipt: Document) -> list[OffsetRun]:
    """The runs a receipt stores (`runs_fields`)."""
    fields = (receipt["partitions"], receipt["firsts"], receipt["lasts"])
    return [OffsetRun(*run) for run in zip(*fields, strict=True)]


def holds(runs: Iterable[OffsetRun], position: Mapping[str, int]) -> bool:
    """Whether one of these runs holds `position`."""
    return any(
        run.partition == position["partition"] and run.first <= position["offset"] <= run.last
        for run in runs
    )


def placed(wanted: Mapping[str, list[Document]], runs: list[OffsetRun]) -> dict[str, Document]:
    """Of these `_id`s, each with the positions that carry it, those whose position one of the
    runs holds, with that position."""
    found: dict[str, Document] = {}
    for key, positions in wanted.items():
        for position in positions:
            if holds(runs, position):
                found[key] = position
                break
    return found


def _identity(message: Message) -> str:
    return message.response.identity if isinstance(message, Positioned) else message.review.identity


def _survey(message: Message) -> str:
    return (
        message.response.survey_id if isinstance(message, Positioned) else message.review.survey_id
    )


def state_id(identity: str, seq: int) -> str:
    """The `_id` of one entry of a response's chain of states."""
    return f"{identity}@{seq:08d}"


def change_of(document: Document) -> Change:
    """A chain entry as a change."""
    before = document.get("before")
    position = document["position"]
    return Change(
        identity=document["identity"],
        seq=int(document["seq"]),
        before=None if before is None else State.from_document(before),
        after=State.from_document(document["after"]),
        partition=int(position["partition"]),
        offset=int(position["offset"]),
    )


def first_change(response: SurveyResponse, partition: int, offset: int) -> Change:
    """The first entry of a response's chain when its revision 1 came first: that revision,
    with the review it carries, at the position of the message that carried it."""
    after = after_response(State(survey_id=response.survey_id), response)
    if after is None:  # revisions start at 1: a first revision always changes a fresh state
        raise ValueError(f"revision {response.revision} of {response.identity} changes nothing")
    return Change(response.identity, 1, None, after, partition, offset)


def first_changes(items: Iterable[Positioned]) -> dict[str, Change]:
    """`first_change` of each revision 1 among these, by identity (of an identity given twice,
    the last, as `track` takes it): worked out ahead for `track`, which takes one where its
    response turns out new."""
    return {
        item.response.identity: first_change(item.response, item.partition, item.offset)
        for item in items
        if item.response.revision == 1
    }


def first_of(document: Document) -> Change:
    """The first entry of a chain, from the revision 1 stored first under its identity.

    The stored document keeps no focal point (`documents.raw_document`), only whether there was
    one and whether it consented: the state takes those from it."""
    item = positioned_from_raw(document)
    change = first_change(item.response, item.partition, item.offset)
    after = replace(
        change.after,
        consenting=bool(document.get("consenting_focal_point", False)),
        has_focal_point=bool(document.get("has_focal_point", False)),
    )
    return replace(change, after=after)


def personal_hours(documents: Iterable[Document]) -> set[str]:
    """The hours (`received_at` to the hour: `2024-05-02T10`) in which those of these raw
    documents that hold personal data were received."""
    return {str(document["received_at"])[:13] for document in documents if document["personal"]}


def _claims(found: Mapping[str, Document], raw: str) -> bool:
    """Whether a placeholder is stored under this raw `_id`."""
    return bool(found.get(raw, {}).get(PLACEHOLDER))


@dataclass
class Chains:
    """What `track` knows of some responses: their chains, those stored before states existed
    (state, position), and the identities something is stored under."""

    chains: dict[str, list[Change]]
    legacy: dict[str, tuple[State, dict[str, int]]]
    claimed: set[str]


def change_document(change: Change) -> Document:
    """A change as its chain entry."""
    return {
        "_id": state_id(change.identity, change.seq),
        "identity": change.identity,
        "seq": change.seq,
        "survey_id": change.survey_id,
        "position": change.position,
        "before": None if change.before is None else change.before.document(),
        "after": change.after.document(),
    }


@dataclass(frozen=True)
class Retiring:
    """A superseded version to shrink to a tombstone: its `_id`, the fields to remove, and the
    generations of parts to drop once it is one."""

    version_id: str
    fields: frozenset[str]
    garbage: tuple[str, ...]


class AnalyticsStore:
    """Raw responses and aggregate documents."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        keys: EmailKeys | None = None,
        retention: timedelta | None = None,
    ) -> None:
        self._db = db
        self._keys = keys  # None: responses are stored without `focal_point_key`
        # Personal fields of responses received longer ago than this are not stored at all.
        self._retention = retention
        self._responses = db[RESPONSES]
        self._aggregates = db[AGGREGATES]
        self._states = db[STATES]
        self._receipts = db[RECEIPTS]
        self._hours = db[PERSONAL_HOURS]
        self._marked: set[str] = set()  # hours this process marked
        self._marking = False  # whether it checked that every stored response is marked
        # Held for that check: two chunks inserted at once must not both decide it, one before
        # and one after the other's responses are stored.
        self._marking_lock = asyncio.Lock()
        self._indexed = False
        # The newest version of each document this process has seen: a starting point for
        # probing, so a steady writer reads one document per write.
        self._known: dict[str, tuple[int, Document]] = {}
        # The counters of the parts those versions name (parts never change): a steady writer
        # reads no part, and a reader only the parts written since its last read.
        self._part_cache: dict[str, dict[str, int]] = {}
        self._writing: set[str] = set()  # parts written for versions not inserted yet
        # Versions to shrink to tombstones once the batch is written (`_retire`): one update of
        # them all, where one each would cost a scan of the aggregates each on FerretDB.
        self._retiring: list[Retiring] = []
        # The newest `_retire` under way in the background; each waits for the one before.
        self._retirement: asyncio.Task[None] | None = None

    async def record(self, batch: list[Positioned]) -> list[Positioned]:
        """Store the raw responses; return those that count at their own position. Raises
        `StoreRefusedError` when the database refuses one (consumers use `record_each`)."""
        recorded = await self.record_each(batch)
        if recorded.refused:
            raise StoreRefusedError(recorded.refused[0][1])
        return recorded.counted

    def documents_of(self, batch: list[Positioned], tracked: bool = False) -> list[Document]:
        """What `record_each` stores of each response; no I/O, so that a caller can build the
        next chunk's documents while the database stores the last."""
        expired = datetime.now(UTC) - self._retention if self._retention else None
        return [raw_document(item, self._keys, tracked, personal_after=expired) for item in batch]

    async def record_each(
        self,
        batch: list[Positioned],
        tracked: bool = False,
        documents: list[Document] | None = None,
    ) -> Recorded:
        """Store the raw responses, each on its own: those the database refuses for what they
        are (`shared.failures`) are left out and returned with the reason, the others are
        stored. Returns those that count at their own position. `documents`: the batch's
        `documents_of`, when the caller built them already.

        A refused response is never stored, so it never counts, and storing the same batch
        again refuses it again and counts the same others: the exactly-once design holds.
        A transient failure raises, for the whole batch to be read again."""
        if documents is None:
            documents = self.documents_of(batch, tracked)
        return await self.settle_raw(batch, documents, await self.insert_raw(documents))

    async def insert_raw(self, documents: list[Document], receipt: bool = False) -> RawInsert:
        """The first half of `record_each`: insert the raw documents, each on its own; which
        the database refused for what they are and which were there already. `receipt`: then
        also store a receipt of what this stored (`RECEIPTS`), for `settle_raw` of the same
        batch read again after a crash. A transient failure raises."""
        await self._mark_personal(documents)
        refused: dict[int, str] = {}
        try:
            errors = await self._insert_unordered(documents, list(range(len(documents))))
        except (InvalidDocument, DocumentTooLarge, OverflowError):
            # The driver refuses the whole batch before sending it: find the documents BSON
            # cannot carry, and store the others.
            refused = {
                i: why for i, document in enumerate(documents) if (why := unstorable(document))
            }
            if not refused:
                raise
            kept = [i for i in range(len(documents)) if i not in refused]
            errors = await self._insert_unordered([documents[i] for i in kept], kept)
        taken: set[int] = set()
        for index, error in errors:
            if classify_write_error(error) is Disposition.DEAD_LETTER:
                refused[index] = f"refused by the database: {error.get('errmsg', '')}"
            else:
                taken.add(index)
        receipts: tuple[str, ...] = ()
        stored = [d for i, d in enumerate(documents) if i not in taken and i not in refused]
        if receipt and stored:
            receipts = (secrets.token_hex(8),)
            runs = offset_runs(
                (d["position"]["partition"], d["position"]["offset"]) for d in stored
            )
            # Positions alone, not `_id`s: a receipt of a full chunk is a few hundred bytes, where
            # its `_id`s made it some 60 KB to insert, read and delete.
            await self._receipts.insert_one({"_id": receipts[0], **runs_fields(runs)})
        return RawInsert(refused, frozenset(taken), receipts)

    async def settle_raw(
        self, batch: list[Positioned], documents: list[Document], raw: RawInsert
    ) -> Recorded:
        """The second half of `record_each`: what counts of `batch` after `insert_raw` of its
        `documents`. What was there already, a receipt may place (`_receipted`), or a probe
        find stored from its own position (`_probe`: after a crash during the insert); only
        what neither does is read (one read of the stored responses, a scan on FerretDB), so
        a caller that inserts in chunks settles them all at once."""
        refused = dict(raw.refused)
        stored = [item for i, item in enumerate(batch) if i not in refused]
        failed = raw.taken | set(refused)
        inserted = frozenset(documents[i]["_id"] for i in range(len(batch)) if i not in failed)
        receipts = frozenset(raw.receipts)
        if not raw.taken:
            out = [(batch[i], why) for i, why in sorted(refused.items())]
            return Recorded(stored, out, inserted, receipts)
        kept = [i for i in range(len(batch)) if i not in refused]
        ids = {i: str(documents[i]["_id"]) for i in kept}
        # What this call stored is at its own position; of the rest, a receipt may say where
        # it was stored, a probe that it was stored from here, and only the others are read.
        found: dict[str, Document] = {
            ids[i]: {"position": batch[i].position} for i in kept if i not in raw.taken
        }
        wanted: dict[str, list[Document]] = {}  # each unknown `_id`, at its positions here
        for i in kept:
            if ids[i] not in found:
                wanted.setdefault(ids[i], []).append(batch[i].position)
        unknown = sorted(wanted)
        receipted, consulted = await self._receipted(wanted)
        found.update({key: {"position": position} for key, position in receipted.items()})
        probed, probes = await self._probe(
            {key: wanted[key] for key in unknown if key not in receipted}, documents
        )
        read = await self._stored([key for key in unknown if key not in receipted | probed])
        read.update(probed)
        found.update(read)
        inserted |= {ids[i] for i in kept if receipted.get(ids[i]) == batch[i].position}
        # A revision 1 read back at this very position was stored by an earlier attempt at it,
        # as a receipt would have said: its chain starts with it, with no read of its own.
        inserted |= {
            ids[i]
            for i in kept
            if read.get(ids[i], {}).get("position") == batch[i].position and read[ids[i]].get(FIRST)
        }
        receipts |= consulted | probes
        # A revision 1 whose identity a placeholder claimed is stored beside it.
        moved = {
            i: displaced_id(batch[i].response.identity) for i in kept if _claims(found, ids[i])
        }
        if moved:
            # Without `ORIGIN`: a probe of this position asks about the `_id` under the identity,
            # which holds the placeholder, and must not find this document's position for it.
            beside = [
                {k: v for k, v in documents[i].items() if k not in (FIRST, ORIGIN)}
                | {"_id": moved[i]}
                for i in moved
            ]
            errors = await self._insert_unordered(beside, list(moved))
            for index, error in errors:
                if classify_write_error(error) is Disposition.DEAD_LETTER:
                    refused[index] = f"refused by the database: {error.get('errmsg', '')}"
            not_beside = {index for index, _ in errors}
            inserted = inserted | {moved[i] for i in moved if i not in not_beside}
            ids.update(moved)
            found.update(await self._stored(list(moved.values())))
        out = [(batch[i], why) for i, why in sorted(refused.items())]
        counted = [
            batch[i]
            for i in kept
            if i not in refused and found.get(ids[i], {}).get("position") == batch[i].position
        ]
        return Recorded(counted, out, inserted, receipts)

    async def _mark_personal(self, documents: list[Document]) -> None:
        """Mark the hours in which these responses that hold personal data were received,
        before they are stored (a crash in between leaves a mark too many, never one too few).
        The first time in a database, also mark the marks complete if nothing is stored yet,
        else incomplete for good."""
        if not self._marking:
            async with self._marking_lock:
                if not self._marking:
                    await self._check_marks()
        hours = personal_hours(documents) - self._marked
        if not hours:
            return
        try:
            await self._hours.insert_many([{"_id": hour} for hour in sorted(hours)], ordered=False)
        except BulkWriteError as exc:  # marked already by another process: the same mark
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(
                error.get("code") != DUPLICATE_KEY for error in errors
            ):
                raise
        # Remembered only where an hour the sweep has dropped cannot come again: a response
        # received then is stored anonymised at once (`retention`).
        if self._retention:
            self._marked |= hours

    async def _check_marks(self) -> None:
        """Mark the marks complete if nothing is stored yet, else incomplete, unless either is
        marked already (by this process or another)."""
        # Counting the stored responses is a scan on FerretDB: once per database, ever.
        if await self._hours.find_one({"_id": {"$in": [MARKS_COMPLETE, MARKS_INCOMPLETE]}}) is None:
            empty = await self._responses.estimated_document_count() == 0
            with contextlib.suppress(DuplicateKeyError):
                await self._hours.insert_one({"_id": MARKS_COMPLETE if empty else MARKS_INCOMPLETE})
        self._marking = True

    async def _receipted(
        self, wanted: Mapping[str, list[Document]]
    ) -> tuple[dict[str, Document], frozenset[str]]:
        """Where the receipts of batches in progress say these raw `_id`s were stored (each
        given with the positions in this batch of the messages that carry it), and the receipts
        to drop once this batch is applied: those that said so, and those of batches the overall
        watermarks this process knows cover already. Reads the receipts collection, which holds
        the receipts of the batches in progress only.

        A receipt places an `_id` at a position of this batch that it lists. An `_id` stored from
        another position (a duplicate) is not placed, and `settle_raw` reads it."""
        where: dict[str, Document] = {}
        consulted: set[str] = set()
        if not wanted:
            return {}, frozenset()
        known = self._known.get(OVERALL)
        marks = watermarks(known[1]) if known else {}
        async for receipt in self._receipts.find({}):
            if "ids" in receipt:  # written before receipts listed runs of positions
                listed = list(
                    zip(receipt["ids"], receipt["partitions"], receipt["offsets"], strict=True)
                )
                runs = [OffsetRun(p, o, o) for _, p, o in listed]
                places = {key: {"partition": p, "offset": o} for key, p, o in listed}
            else:
                runs = runs_of(receipt)
                # A probe's receipt (`_probe`) lists the positions it asked about: it places none.
                places = {} if receipt.get(PROBE) else placed(wanted, runs)
            if all(run.last <= marks.get(run.partition, -1) for run in runs):
                # Its batch is applied (a crash came before its receipts were dropped): no
                # redelivery asks about it again, so it goes with this batch's.
                consulted.add(str(receipt["_id"]))
                continue
            for key, position in places.items():
                if key in wanted:
                    where[key] = position
                    consulted.add(str(receipt["_id"]))
        return where, frozenset(consulted)

    async def _probe(
        self, wanted: Mapping[str, list[Document]], documents: list[Document]
    ) -> tuple[dict[str, Document], frozenset[str]]:
        """Of these `_id`s, taken with no receipt (each with its positions in this batch, whose
        raw `documents` are given), those stored from one of these positions, by an attempt at
        this batch that a crash cut short during its insert: each with that position and
        whether it starts its chain. Also the receipt of the probe, to drop with the batch's.

        Asks by inserting, for each position, a `probe_document` that collides on the unique
        `ORIGIN` exactly when a raw document was stored from there: the database checks that
        by its index, where reading the stored responses is a scan on FerretDB. What does not
        collide was stored from another position (a duplicate): `settle_raw` reads it, and its
        probe is deleted again (`_delete_probes`).

        Another probe of the same position (one a crash left behind, or another process's at
        the same batch) collides as well, and proves nothing: each probe stores its receipt
        first, and a position that another probe's receipt holds is read instead."""
        at = {document[ORIGIN]: document for document in documents if ORIGIN in document}
        asked = [
            (key, position)
            for key, positions in wanted.items()
            for position in positions
            if origin_of(position) in at
        ]
        if not asked:
            return {}, frozenset()
        await self.ensure_indexes()
        STORED_PROBES.inc(len(asked))
        token = secrets.token_hex(8)
        runs = offset_runs((position["partition"], position["offset"]) for _, position in asked)
        await self._receipts.insert_one({"_id": token, PROBE: True, **runs_fields(runs)})
        probes = [probe_document(token, n, position) for n, (_, position) in enumerate(asked)]
        errors = dict(await self._insert_unordered(probes, list(range(len(probes)))))
        await self._delete_probes([probes[n]["_id"] for n in range(len(probes)) if n not in errors])
        others = [
            run
            async for receipt in self._receipts.find({PROBE: True, "_id": {"$ne": token}})
            for run in runs_of(receipt)
        ]
        found: dict[str, Document] = {}
        for n, error in sorted(errors.items()):
            key, position = asked[n]
            if error.get("code") == DUPLICATE_KEY and not holds(others, position):
                found[key] = {"position": position, FIRST: bool(at[origin_of(position)].get(FIRST))}
        return found, frozenset({token})

    async def _delete_probes(self, ids: list[str]) -> None:
        """Delete these probes, stored because nothing was stored from their position (a
        duplicate of a response stored before). One a crash leaves behind is passed over by
        every reader, and never asked about again: its position is read again only until its
        batch is applied, and its probe's receipt says so meanwhile."""
        if not ids:
            return
        STORED_READS.labels("probe").inc()
        if len(ids) > FEW_PROBES:
            await self._responses.delete_many({"_id": {"$in": ids}})
            return
        for probe in ids:
            await self._responses.delete_one({"_id": probe})

    async def drop_receipts(self, receipts: Iterable[str]) -> None:
        """Drop these receipts: their batch is applied, and a redelivery of it needs none."""
        dropped = sorted(receipts)
        if dropped:
            await self._receipts.delete_many({"_id": {"$in": dropped}})

    async def _stored(self, ids: list[str]) -> dict[str, Document]:
        """The position (or placeholder mark) stored under each of these raw `_id`s, and
        whether it is a revision 1 that starts its chain (`FIRST`)."""
        if not ids:
            return {}
        STORED_READS.labels("settle").inc()
        logger.info("reading %d stored responses that no receipt places", len(ids))
        projection = {"position": 1, PLACEHOLDER: 1, FIRST: 1}
        return {
            document["_id"]: document
            async for document in self._responses.find({"_id": {"$in": ids}}, projection)
        }

    async def ensure_indexes(self) -> None:
        """The index the chains are read by (MongoDB uses it; FerretDB scans regardless), and
        the unique `ORIGIN` of the stored responses that `_probe` collides on (the database
        checks it on insert, by the index, on FerretDB too)."""
        if not self._indexed:
            await self._states.create_index("identity")
            await self._responses.create_index(ORIGIN, unique=True, sparse=True)
            self._indexed = True

    async def track(
        self,
        messages: list[Message],
        inserted: frozenset[str] = frozenset(),
        firsts: Mapping[str, Change] | None = None,
    ) -> list[Change | Positioned]:
        """The changes of response states these messages cause, each stored once in its
        response's chain (`states.py`); what the aggregates then apply. A message whose change
        is in the chain already (a replay) gives that change again; one that changes nothing
        gives nothing. A response stored before states existed, read again at its own position,
        counts as it did then (its `Positioned`). `inserted`: raw `_id`s this batch stored
        first; `firsts`: their first entries worked out ahead (`first_changes`), if any.

        A chain starts under the response's identity in the responses collection, whose unique
        `_id` decides which message was first: a revision 1 stored there (`FIRST`) is itself
        the chain's first entry, so the common case (a new response) costs no write and no
        read beyond its raw insert; a review or a later revision that comes first stores a
        placeholder there, and the chain starts in the states collection. Every later change
        is an entry of the states collection, whose unique `_id` (`<identity>@<seq>`) lets one
        writer win each place in the chain.

        Per round, one read of the chains of the batch's responses that are not new, and one
        insert of at most one entry per response; a response whose entry (or placeholder) lost
        the race (another consumer, or a zombie, changed it meanwhile) is read again and
        decided on top of the winner's."""
        queues: dict[str, list[Message]] = {}
        for message in messages:
            queues.setdefault(_identity(message), []).append(message)
        if not queues:
            return []
        chains: dict[str, list[Change]] = {}
        ahead = firsts or {}
        for message in messages:
            if (
                isinstance(message, Positioned)
                and message.response.revision == 1
                and message.response.identity in inserted
            ):
                identity = message.response.identity
                first = ahead.get(identity)
                if first is None or (first.partition, first.offset) != (
                    message.partition,
                    message.offset,
                ):
                    first = first_change(message.response, message.partition, message.offset)
                chains[identity] = [first]
        fresh = set(chains)
        result: list[Change | Positioned] = []
        for identity in list(chains):  # in the messages' order, as the rounds below give theirs
            if len(queues[identity]) == 1:  # a new response alone in its batch: its first entry
                result.append(chains[identity][0])
                del queues[identity]
        read = await self._read([identity for identity in queues if identity not in fresh])
        chains.update(read.chains)
        legacy, claimed = read.legacy, read.claimed | fresh
        while queues:
            entries: dict[str, Change] = {}
            for identity in list(queues):
                queue, chain = queues[identity], chains.setdefault(identity, [])
                while queue and identity not in entries:
                    message = queue[0]
                    found = next(
                        (
                            change
                            for change in chain
                            if (change.partition, change.offset)
                            == (message.partition, message.offset)
                        ),
                        None,
                    )
                    if found is not None:  # a replay: the change it caused before
                        result.append(found)
                        queue.pop(0)
                        continue
                    old = legacy.get(identity)
                    if (
                        not chain
                        and old is not None
                        and isinstance(message, Positioned)
                        and old[1] == message.position
                    ):
                        result.append(message)  # counted as before states existed
                        queue.pop(0)
                        continue
                    before = chain[-1].after if chain else (old[0] if old else None)
                    base = before or State(survey_id=_survey(message))
                    after = (
                        after_response(base, message.response)
                        if isinstance(message, Positioned)
                        else after_review(base, message.review)
                    )
                    if after is None:
                        queue.pop(0)
                        continue
                    seq = chain[-1].seq + 1 if chain else 1
                    entries[identity] = Change(
                        identity, seq, before, after, message.partition, message.offset
                    )
                if not queue and identity not in entries:
                    del queues[identity]
            if not entries:
                break
            lost = await self._claim([c for i, c in entries.items() if i not in claimed])
            claimed |= set(entries)  # a placeholder or a revision 1 is there now, either way
            lost |= await self._insert_states(
                [change for identity, change in entries.items() if identity not in lost]
            )
            for identity, change in entries.items():
                if identity in lost:
                    continue
                chains[identity].append(change)
                result.append(change)
                queues[identity].pop(0)
                if not queues[identity]:
                    del queues[identity]
            if lost:
                again = await self._read(sorted(lost))
                chains.update(again.chains)
                legacy.update(again.legacy)
        return result

    async def _claim(self, changes: list[Change]) -> set[str]:
        """Store a placeholder under the identity of each of these responses, which start a
        chain before any revision 1 of theirs is stored; the identities where something was
        stored first."""
        if not changes:
            return set()
        documents = [placeholder_document(c.identity, c.survey_id) for c in changes]
        try:
            await self._responses.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(
                error.get("code") != DUPLICATE_KEY for error in errors
            ):
                raise
            return {changes[error["index"]].identity for error in errors}
        return set()

    async def _insert_states(self, changes: list[Change]) -> set[str]:
        """Insert these chain entries; the identities whose entry lost the race."""
        if not changes:
            return set()
        await self.ensure_indexes()
        try:
            await self._states.insert_many(
                [change_document(change) for change in changes], ordered=False
            )
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(
                error.get("code") != DUPLICATE_KEY for error in errors
            ):
                raise
            return {changes[error["index"]].identity for error in errors}
        return set()

    async def _read(self, identities: list[str]) -> Chains:
        """The chains of these responses, each in order: their first entry from what is stored
        under their identity (a revision 1 stored first, a placeholder, or a response stored
        before states existed), the others from the states collection."""
        read = Chains({identity: [] for identity in identities}, {}, set())
        if not identities:
            return read
        STORED_READS.labels("chains").inc()
        query = {"_id": {"$in": identities}}
        async for document in self._responses.find(query, {"answers": 0}):
            identity = str(document["_id"])
            read.claimed.add(identity)
            if document.get(FIRST):
                read.chains[identity].append(first_of(document))
            elif not document.get(TRACKED):
                item = positioned_from_raw(document)
                read.legacy[identity] = (legacy_state(item.response), item.position)
        async for document in self._states.find({"identity": {"$in": identities}}):
            read.chains[document["identity"]].append(change_of(document))
        for chain in read.chains.values():
            chain.sort(key=lambda change: change.seq)
        return read

    async def _insert_unordered(
        self, documents: list[Document], indexes: list[int]
    ) -> list[tuple[int, dict[str, Any]]]:
        """Insert every document that can be; the write errors of the others, by batch index
        (`indexes[i]` is the batch index of `documents[i]`). Raises on a transient failure."""
        if not documents:
            return []
        try:
            await self._responses.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(
                classify_write_error(error) is Disposition.RETRY for error in errors
            ):
                raise
            return [(indexes[error["index"]], error) for error in errors]
        return []

    async def apply(self, counted: Sequence[Counted]) -> None:
        """Add the counted responses (or changes of their states) to every aggregate they
        touch, each exactly once."""
        documents: defaultdict[str, list[Counted]] = defaultdict(list)
        for item in counted:
            documents[survey_key(item.survey_id)].append(item)
        # The surveys' documents side by side, the overall one last: everything at or below the
        # overall watermarks is then in every document (the boundary `rebuild` relies on).
        await asyncio.gather(*(self._apply_to(key, items) for key, items in documents.items()))
        if counted:
            await self._apply_to(OVERALL, counted)
        # Behind the batch, not in its way: until a superseded version is shrunk, readers pass
        # over it anyway. Awaited here, the update held every batch back with no raw insert
        # under way meanwhile, some 5% of the consumer's time on FerretDB (`bench.analytics`).
        self._retirement = asyncio.create_task(self._retire_after(self._retirement))

    async def retired(self) -> None:
        """Wait until the versions superseded by the batches applied so far are shrunk, or
        their update failed (they are then retried with the next batch)."""
        if self._retirement is not None:
            await self._retirement

    async def _retire_after(self, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # however it ended: this one retires what is left
        try:
            await self._retire()
        except PyMongoError as exc:
            logger.warning("superseded aggregate versions are left for the next batch: %s", exc)

    async def _apply_to(self, key: str, items: Sequence[Counted]) -> None:
        partitions = {item.partition for item in items}
        # Straight on top of the version this process wrote or read last: the insert itself
        # tells whether it is still the newest, which saves a read per document and batch
        # whenever no other consumer wrote in between (a read that misses costs a scan).
        cached = self._known.get(key)
        version, current = cached or await self._latest(key)
        while True:
            marks = watermarks(current)
            fresh = [i for i in items if i.offset > marks.get(i.partition, -1)]
            if not fresh and cached is None:
                return
            if fresh:
                for p in partitions:
                    offsets = (i.offset for i in items if i.partition == p)
                    marks[p] = max(marks.get(p, -1), *offsets)
                delta = document_increments(key, fresh)
                if await self._write_next(key, version, current, delta, marks):
                    return
            # Another consumer wrote that version first, or, when nothing looked fresh in the
            # version known here, a rebuild may have lowered the watermarks since: read the
            # newest version and decide again on top of it.
            cached = None
            version, current = await self._latest(key)

    async def _write_next(
        self,
        key: str,
        version: int,
        current: Document | None,
        delta: Mapping[str, int],
        marks: Mapping[int, int],
    ) -> bool:
        """Version `version + 1`: `current` (version `version`) plus `delta`; False when another
        writer got there first."""
        main, split = split_increments(delta)
        counters = add_counters(main_counters(current), main)
        try:
            parts = await self._write_parts(key, version + 1, current, split)
        except MissingPart:
            return False  # `current` was superseded long ago: read the newest version
        return await self._insert_version(key, version + 1, counters, marks, parts, current)

    async def _write_parts(
        self,
        key: str,
        version: int,
        current: Document | None,
        split: Mapping[str, Mapping[str, int]],
        replace: bool = False,
    ) -> PartsWrite:
        """Write the parts of version `version`: `split` added to those of `current` (or in
        their stead when `replace`)."""
        token = secrets.token_hex(4)
        before = layouts(current)
        after: dict[str, Layout] = {}
        inserts: defaultdict[str, list[Document]] = defaultdict(list)
        created: list[str] = []
        garbage: list[str] = []
        for field in SPLIT_FIELDS:
            delta = Counter(split.get(field, {}))
            inline = {} if replace else (current or {}).get(field, {})
            delta.update(inline)  # a document of the format before parts held them inline
            layout = before[field]
            step = Step("compact") if replace else decide(layout, delta, forced=bool(inline))
            written = new_parts(step, delta, await self._load(layout.collection, step.reads))
            collection = layout.collection
            if step.kind == "compact":
                collection = generation_collection(key, field, version, token)
                created.append(collection)
                garbage += [layout.collection] if layout.collection else []
            ids = [part_id(key, field, version, step.kind, n, token) for n in range(len(written))]
            inserts[collection] += [
                {"_id": part, KEY: key, FIELD: field, VERSION: version, COUNTS: counts}
                for part, counts in zip(ids, written, strict=True)
            ]
            after[field] = next_layout(step, layout, ids, written, collection)
        for collection, documents in inserts.items():
            if documents:
                self._writing.update(d["_id"] for d in documents)
                self._part_cache.update({d["_id"]: d[COUNTS] for d in documents})
                await self._db[collection].insert_many(documents, ordered=False)
        appended = {
            collection: [d["_id"] for d in documents]
            for collection, documents in inserts.items()
            if documents and collection not in created
        }
        every = [d["_id"] for documents in inserts.values() for d in documents]
        return PartsWrite(after, created, appended, garbage, every)

    async def _discard(self, parts: PartsWrite) -> None:
        """Remove the parts of a version that lost the race: no version names them."""
        for collection in parts.created:
            await self._db.drop_collection(collection)
        for collection, ids in parts.appended.items():
            # One by one: FerretDB finds a single `_id` in SQL, but decodes the whole
            # collection for `$in`.
            for part in ids:
                await self._db[collection].delete_one({"_id": part})

    async def _insert_version(
        self,
        key: str,
        version: int,
        counters: Document,
        marks: Mapping[int, int],
        parts: PartsWrite,
        previous: Document | None,
    ) -> bool:
        """The compare-and-set: insert the next version, or learn that someone else did."""
        document = {
            **counters,
            "_id": version_id(key, version),
            KEY: key,
            VERSION: version,
            WATERMARKS: watermark_fields(marks),
            PARTS: {field: layout.stored() for field, layout in parts.layouts.items()},
            GARBAGE: parts.garbage,
        }
        try:
            await self._aggregates.insert_one(document)
        except DuplicateKeyError:
            await self._discard(parts)
            return False
        finally:
            self._writing.difference_update(parts.written)
        self._known[key] = (version, document)
        self._prune_parts()
        if version == 1 or version % HEAD_EVERY == 0:
            # The head is a hint for readers (`$max` may lose a race on servers without atomic
            # updates; readers probe forward from it, so it may lag but never misleads).
            with contextlib.suppress(DuplicateKeyError):
                await self._aggregates.update_one(
                    {"_id": key}, {"$max": {LATEST: version}}, upsert=True
                )
        if version > KEEP_VERSIONS:
            # An old version shrinks to a tombstone but is never deleted: a slow writer still
            # trying to insert the version after an old one must fail, not fork the chain.
            old = version - KEEP_VERSIONS
            # The generations the tombstone named and the version after it no longer does: no
            # version a reader can still reach names them once it is a tombstone.
            after = previous is not None and previous.get(VERSION) == old + 1
            garbage = tuple(previous.get(GARBAGE, [])) if previous is not None and after else ()
            fields = (set(previous or {}) | set(document)) - {"_id", KEY, VERSION, SUPERSEDED}
            self._retiring.append(Retiring(version_id(key, old), frozenset(fields), garbage))
        return True

    async def _retire(self) -> None:
        """Shrink the versions superseded by this batch's writes to tombstones, all in one
        update, then drop the generations of parts they alone named.

        Only a tombstone's `superseded` mark matters to readers (a version left whole, as by a
        writer killed before this, is passed over by `_latest`); shrinking keeps the scans of
        the aggregates short. A failed update keeps them pending for the next batch."""
        pending, self._retiring = self._retiring, []
        if not pending:
            return
        fields = sorted(frozenset().union(*(item.fields for item in pending)))
        try:
            await self._aggregates.update_many(
                {"_id": {"$in": [item.version_id for item in pending]}},
                {"$set": {SUPERSEDED: True}, "$unset": dict.fromkeys(fields, "")},
            )
        except BaseException:
            self._retiring[:0] = pending
            raise
        for item in pending:
            for collection in item.garbage:
                await self._db.drop_collection(collection)

    async def _load(self, collection: str, ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """The counters of these parts of one generation, from the cache or the database;
        `MissingPart` when one is gone."""
        wanted = list(ids)
        missing = [part for part in wanted if part not in self._part_cache]
        found: list[Document] = []
        if missing and collection:
            parts = self._db[collection]
            if len(missing) > FEW_PARTS:
                found = [d async for d in parts.find({"_id": {"$in": missing}}, {COUNTS: 1})]
            else:
                fetched = await asyncio.gather(
                    *(parts.find_one({"_id": part}, {COUNTS: 1}) for part in missing)
                )
                found = [document for document in fetched if document is not None]
        if len(found) < len(missing):
            raise MissingPart(f"{len(missing) - len(found)} part(s) gone")
        self._part_cache.update({document["_id"]: document[COUNTS] for document in found})
        return {part: self._part_cache[part] for part in wanted}

    def _prune_parts(self) -> None:
        """Forget the cached parts that no version known here names any more."""
        named = set(self._writing).union(*(part_ids(doc) for _, doc in self._known.values()))
        for part in [part for part in self._part_cache if part not in named]:
            del self._part_cache[part]

    async def _latest(self, key: str) -> tuple[int, Document | None]:
        """The newest version of an aggregate document (0, None when it has none).

        Starts from the version this process saw last (versions never change, so it is still
        right about that version), else from the head, and probes forward by `_id`."""
        version, document = self._known.get(key) or await self._from_head(key)
        while True:
            newer = await self._aggregates.find_one({"_id": version_id(key, version + 1)})
            if newer is None:
                break
            if newer.get(SUPERSEDED):  # far behind: jump to a recent version
                ahead, found = await self._from_head(key)
                if ahead <= version:
                    # The head is no help: it lags (a writer died before moving it) and names a
                    # version a dead writer left whole (it died before making it a tombstone).
                    # Probing on from there would come back here for ever: one scan instead.
                    ahead, found = await self._newest_by_scan(key)
                if ahead <= version:
                    break  # nothing newer than what is known here is whole
                version, document = ahead, found
                continue
            version, document = version + 1, newer
        if document is not None:
            self._known[key] = (version, document)
        return version, document

    async def _from_head(self, key: str) -> tuple[int, Document | None]:
        head = await self._aggregates.find_one({"_id": key})
        if head is not None and LATEST not in head:
            return 0, head  # a document of the single-document format: version 0 of its chain
        version = int(head[LATEST]) if head else 0
        if not version:
            return 0, None
        document = await self._aggregates.find_one({"_id": version_id(key, version)})
        if document is None or document.get(SUPERSEDED):
            # The head lagged behind the superseded versions: one scan finds the newest.
            return await self._newest_by_scan(key)
        return version, document

    async def _newest_by_scan(self, key: str) -> tuple[int, Document | None]:
        """The newest version that is not a tombstone, by one scan of the chain."""
        document = await self._aggregates.find_one(
            {KEY: key, SUPERSEDED: {"$exists": False}}, sort=[(VERSION, -1)]
        )
        return (int(document[VERSION]) if document else 0), document

    async def _newest_whole(self, key: str) -> Document | None:
        """The newest version with the counters of its parts in place (`by_city` as in the
        format before parts), without the part names."""
        for _ in range(READ_ATTEMPTS):
            _, document = await self._latest(key)
            if document is None:
                return None
            try:
                found = {
                    field: await self._load(layout.collection, layout.part_ids)
                    for field, layout in layouts(document).items()
                    if layout.part_ids
                }
            except MissingPart:
                self._known.pop(key, None)  # superseded meanwhile: probe again from the head
                continue
            whole = {k: v for k, v in document.items() if k not in (PARTS, GARBAGE)}
            for field, counts in found.items():
                whole[field] = dict(merged(counts.values()))
            self._prune_parts()
            return whole
        raise MissingPart(f"{key}: overtaken by writers {READ_ATTEMPTS} times in a row")

    async def newest(self, key: str) -> Document | None:
        """The newest version of one aggregate document, watermarks included."""
        return await self._newest_whole(key)

    async def aggregate(self, key: str) -> Document | None:
        """One aggregate document (`all` or `survey:<id>`): its counters, under `_id` = key."""
        document = await self._newest_whole(key)
        return None if document is None else {"_id": key, **counters_of(document)}

    async def survey_documents(self, known: Iterable[str]) -> dict[str, Document]:
        """The newest version of every survey's aggregate document, read side by side, by key:
        those of `known` (survey keys) and of every survey the overall document counts."""
        # Not a `distinct` over the heads: a filter on anything but `_id` makes FerretDB decode
        # every document of the collection.
        _, overall = await self._latest(OVERALL)
        counted = (survey_key(survey_id) for survey_id in (overall or {}).get("surveys", {}))
        keys = sorted({*known, *counted})
        found = await asyncio.gather(*(self._newest_whole(key) for key in keys))
        return {key: document for key, document in zip(keys, found, strict=True) if document}

    async def applied(self, positions: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
        """Which of these (partition, offset) positions the overall document's watermarks cover:
        everything about them is done (dead letters, raw insert, states, every aggregate: the
        overall document is written last, `apply`), so a redelivery of them needs no work.

        Costs no read while no position is at or below the watermarks this process knows (the
        steady state); otherwise the newest version is read, since a rebuild may have lowered
        them (and a lower watermark only ever covers less)."""
        wanted = list(positions)
        known = self._known.get(OVERALL)
        if known is None:
            _, current = await self._latest(OVERALL)
            marks = watermarks(current)
        else:
            marks = watermarks(known[1])
            if not any(offset <= marks.get(partition, -1) for partition, offset in wanted):
                return set()
            _, current = await self._latest(OVERALL)
            marks = watermarks(current)
        return {(p, offset) for p, offset in wanted if offset <= marks.get(p, -1)}

    async def aggregates(self) -> dict[str, Document]:
        """The newest version of every aggregate document, watermarks included, by key."""
        keys = await self._aggregates.distinct("_id", {KEY: {"$exists": False}})  # the heads
        latest: dict[str, Document] = {}
        for key in sorted(keys):
            document = await self._newest_whole(key)
            if document is not None:
                latest[key] = document
        return latest

    async def positioned(
        self, query: Document | None = None, legacy: bool = False
    ) -> AsyncIterator[Positioned]:
        """The stored responses matching `query` with their counting positions, free text left
        out (recounts never need it). `legacy`: only those stored before states existed, which
        count by their position alone."""
        if legacy:
            query = {"$and": [query or {}, {TRACKED: {"$exists": False}}]}
        async for document in self._responses.find(query or {}, {"answers": 0}):
            yield positioned_from_raw(document)

    async def changes(self, query: Document | None = None) -> AsyncIterator[Change]:
        """The changes of response states matching `query` (on `survey_id`, `position`)."""
        async for document in self._states.find(query or {}):
            yield change_of(document)

    async def counted(self, query: Document | None = None) -> AsyncIterator[Counted]:
        """Everything the aggregates count, matching `query`: the responses stored before
        states existed, and every change of a response's state (the first ones of most
        responses are their revision 1, stored first: `track`). One pass over each collection."""
        firsts = {"$or": [{TRACKED: {"$exists": False}}, {FIRST: True}]}
        async for document in self._responses.find({"$and": [query or {}, firsts]}, {"answers": 0}):
            yield first_of(document) if document.get(FIRST) else positioned_from_raw(document)
        async for change in self.changes(query):
            yield change

    async def raw_for(self, ids: list[str]) -> dict[str, Document]:
        """Stored responses by raw `_id` (answers included), for operators' review queue."""
        if not ids:
            return {}
        query = {"_id": {"$in": ids}, PLACEHOLDER: {"$exists": False}}
        return {document["_id"]: document async for document in self._responses.find(query)}

    async def raw_documents(self, query: Document, fields: list[str]) -> AsyncIterator[Document]:
        """Only `fields` (and `position`) of the stored responses matching `query`."""
        projection = {"_id": 0, "position": 1, **dict.fromkeys(fields, 1)}
        async for document in self._responses.find(query, projection):
            yield document

    async def replace_aggregates(self, documents: Mapping[str, Document]) -> None:
        """Make `documents` (key -> counters and watermarks) the newest version of each."""
        for key, content in documents.items():
            marks = watermarks(content)
            main, split = split_increments(flatten(content))
            while True:
                version, current = await self._latest(key)
                parts = await self._write_parts(key, version + 1, current, split, replace=True)
                if await self._insert_version(key, version + 1, nest(main), marks, parts, current):
                    break
        await self._retire()

    async def sweep_parts(self) -> int:
        """Drop the generations of parts no version names any more (left by writers that died
        between writing parts and their version, or before dropping what they replaced);
        returns how many. A generation newer than its document's newest version may be a live
        writer's, and stays."""
        newest = {key_hash(key): version for key, (version, _) in await self._newest_versions()}
        named: set[str] = set()
        whole = self._aggregates.find({KEY: {"$exists": True}, SUPERSEDED: {"$exists": False}})
        async for document in whole:
            named |= {layout.collection for layout in layouts(document).values()}
        dropped = 0
        for collection in await self._db.list_collection_names():
            generation = generation_of(collection)
            if generation is None or collection in named:
                continue
            hashed, version = generation
            if version <= newest.get(hashed, 0):
                await self._db.drop_collection(collection)
                dropped += 1
        return dropped

    async def _newest_versions(self) -> list[tuple[str, tuple[int, Document | None]]]:
        keys = await self._aggregates.distinct("_id", {KEY: {"$exists": False}})  # the heads
        return [(key, await self._latest(key)) for key in sorted(keys)]

    async def raw_responses(self) -> Iterable[SurveyResponse]:
        """Every stored response, every revision (for recounts)."""
        return [from_raw_document(document) async for document in self._responses.find()]

    async def recount(self) -> dict[str, Counter[str]]:
        """What every counted response and change adds to each document, all of them applied:
        the newest state of every response (`states.py`), as a rebuild after catching up sees
        it."""
        totals: dict[str, Counter[str]] = {}
        async for item in self.counted():
            for key in (survey_key(item.survey_id), OVERALL):
                totals.setdefault(key, Counter()).update(item.delta(key))
        return totals
