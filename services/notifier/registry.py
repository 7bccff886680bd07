"""The focal-point registry in MongoDB: one record per email, the latest response wins. A
record's `_id` is the keyed hash of the address (`shared.personal`); the address itself is only
in its `email` field.

The records are the truth. The match index (`matching.BUCKETS` documents, see `matching`) is
derived from them: every change of a record bumps its `revision` and is copied into the index
afterwards, a copy never replaces a newer revision, and each version of a bucket is claimed by
one writer (`claims`), so replicas writing at once and a crash between the two writes (the event
is read again and the copy made then) leave it right.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.notifier import consent, reviews
from services.notifier.bulk import insert_each
from services.notifier.match_index import INDEX_CLAIM_TIMEOUT as INDEX_CLAIM_TIMEOUT
from services.notifier.match_index import MATCH_INDEX as MATCH_INDEX
from services.notifier.match_index import MatchIndex
from services.notifier.matching import focal_point_codes, match
from services.notifier.records import FocalPoint as Record
from services.notifier.records import Preferences, Refused, Request, first_record, stored_time
from shared.events import TOLERANT, FocalPoint, PilotAnnounced, ResponseReview, SurveyResponse
from shared.failures import Disposition, classify
from shared.mongo import Document
from shared.personal import EmailKeys

FOCAL_POINTS = "notifier_focal_points"
# Match index buckets read per round trip when matching a pilot: a few batches of the 256, so
# that the match of one overlaps the read of the next.
MATCH_BATCH = 64
PILOTS = "notifier_pilots"
# Opaque id of a link (`unsubscribe.opaque_id`) -> registry key: a small document per focal point
# emailed, so a link is resolved without the address in it.
LINK_IDS = "notifier_link_ids"
# Every review of a response noted (`reviews`): insert-only, one document per review.
REVIEWS = "notifier_reviews"
# Guarded updates (a record there already) of one batch running at once.
GUARDED_AT_ONCE = 8
LINKS_REMEMBERED = 100_000  # link ids a replica keeps in memory (~10 MB at most)


class Registry:
    """Focal points and the pilots announced so far."""

    def __init__(
        self, db: AsyncDatabase[Document], keys: EmailKeys, *, require_confirmation: bool = True
    ) -> None:
        self._keys = keys
        # Double opt-in: only confirmed addresses are matched (`consent.receives_pilots`).
        self._require_confirmation = require_confirmation
        self._focal_points = db[FOCAL_POINTS]
        self._pilots = db[PILOTS]
        self._index = db[MATCH_INDEX]
        self._links = db[LINK_IDS]
        self._reviews = db[REVIEWS]
        # (link id, record revision) pairs this replica knows are stored: an erasure deletes the
        # link id and moves the revision on, so a person registered again gets it written again.
        self._linked: set[tuple[str, int]] = set()
        self._match_index = MatchIndex(db, require_confirmation=require_confirmation)

    def key(self, email: str) -> str:
        """The registry key of `email` (`shared.personal`): the `_id` of its record and the
        `email_key` of everything else kept about it."""
        return self._keys.key(email)

    async def ensure_indexes(self) -> None:
        """Indexes that keep matching fast with 100,000 focal points."""
        await self._focal_points.create_index([("codes", ASCENDING)])
        await self._focal_points.create_index([("country", ASCENDING)])
        await self._focal_points.create_index(
            [("survey_id", ASCENDING), ("response_id", ASCENDING)]
        )
        await self._reviews.create_index([("identity", ASCENDING)])

    async def register(
        self, response: SurveyResponse, first_request: FirstRequest | None = None
    ) -> Record | None:
        """Record the focal point of `response` unless a later response of theirs is already in.

        Interests, language, city and consent all come from the latest response; an unsubscribe
        stays whatever later responses say (`_consent`). A withdrawal
        (`consent: false`) keeps only what is needed to honour it and to order later responses.
        Returns the record as it now stands (changed or not), so that open pilots can be matched
        against it again: the replica that stored it may have died before it did that. Raises
        what the database refused (`register_many` says when).
        """
        (outcome,) = await self.register_many([response], first_request)
        if isinstance(outcome, Refused):
            raise outcome.error
        return outcome

    async def register_many(
        self, responses: Sequence[SurveyResponse], first_request: FirstRequest | None = None
    ) -> list[Registered]:
        """`register` each of `responses`, of distinct focal points (`ValueError` otherwise: the
        caller keeps the order of one focal point's responses), in a few commands for them all:
        one insert of the reviews they carry, one read of the reviews before the write and one
        after it, one insert of the first records, a guarded update only for a focal point
        with a record already, and one copy into the match index. Each outcome: the record as
        it now stands, None without a focal point, or `Refused` (stored nothing).

        `first_request`: the confirmation request a focal point's first record holds from the
        start (stored in the same insert rather than by an update that scans)."""
        todo: dict[int, tuple[SurveyResponse, str]] = {
            n: (response, self.key(str(response.focal_point.email)))
            for n, response in enumerate(responses)
            if response.focal_point is not None
        }
        if len({key for _, key in todo.values()}) < len(todo):
            raise ValueError("responses: at most one of each focal point")
        outcomes: list[Registered] = [None] * len(responses)
        for n, error in (await self._note_arrivals(todo)).items():
            outcomes[n] = Refused(error)
            del todo[n]
        withheld = await self._withheld_of({response.identity for response, _ in todo.values()})
        written, asked, fresh = await self._write_many(todo, withheld, first_request, outcomes)
        latest = {
            n: record
            for n, record in written.items()
            if record is not None and record.is_latest(todo[n][0].survey_id, todo[n][0].response_id)
        }
        # A review taken while these were written may have missed the records: read the
        # reviews again now that they are there (`review` reads the records after noting).
        after = await self._withheld_of({todo[n][0].identity for n in latest})
        for n, record in latest.items():
            written[n] = await self._settle(record, after[todo[n][0].identity], n in asked)
        # Also when nothing changed: the copy may be what a crashed replica left undone.
        await self._match_index.copy(
            (record for record in written.values() if record is not None), fresh
        )
        for n, stored in written.items():
            outcomes[n] = stored
        return outcomes

    async def _write_many(
        self,
        todo: dict[int, tuple[SurveyResponse, str]],
        withheld: dict[str, bool],
        first_request: FirstRequest | None,
        outcomes: list[Registered],
    ) -> tuple[dict[int, Record | None], set[int], set[str]]:
        """Write the records of `todo` (position -> response, key): every first record in one
        insert, then the guarded update of those that exist, a few at once. The records
        written (or read back) by position, the refused ones in `outcomes`, the positions
        whose first record holds a confirmation request (`first_request`), and the keys whose
        record the insert made."""
        now = datetime.now(UTC)
        firsts: dict[int, Record] = {}
        asked: set[int] = set()
        for n, (response, key) in todo.items():
            first = first_record(key, response, now if withheld[response.identity] else None)
            request = first_request(first) if first_request else None
            if request is not None:
                times = stored_time(request.requested_at), stored_time(request.expires_at)
                request = dataclasses.replace(request, requested_at=times[0], expires_at=times[1])
                first = dataclasses.replace(first, request=request)
                asked.add(n)
            firsts[n] = first
        order = list(firsts)
        inserted = await insert_each(self._focal_points, [first_document(firsts[n]) for n in order])
        written: dict[int, Record | None] = {}
        fresh: set[str] = set()
        for position, n in enumerate(order):
            if position in inserted.refused:
                outcomes[n] = Refused(inserted.refused[position])
            elif position not in inserted.duplicates:
                written[n] = firsts[n]
                fresh.add(firsts[n].key)
        asked &= set(written)  # a request goes only with a record the insert made
        existing = [order[p] for p in sorted(inserted.duplicates)]
        at_once = asyncio.Semaphore(GUARDED_AT_ONCE)

        async def guarded(n: int) -> Record | Refused | None:
            response, key = todo[n]
            async with at_once:
                return await self._guarded_or_refused(
                    response, key, withheld[response.identity], now
                )

        for n, outcome in zip(existing, await asyncio.gather(*map(guarded, existing)), strict=True):
            if isinstance(outcome, Refused):
                outcomes[n] = outcome
            else:
                written[n] = outcome
        return written, asked, fresh

    async def _guarded_or_refused(
        self, response: SurveyResponse, key: str, withheld: bool, now: datetime
    ) -> Record | Refused | None:
        try:
            return await self._guarded(response, key, withheld, now)
        except Exception as exc:
            if classify(exc) is Disposition.DEAD_LETTER:
                return Refused(exc)
            raise

    async def _note_arrivals(
        self, todo: dict[int, tuple[SurveyResponse, str]]
    ) -> dict[int, Exception]:
        """Note the reviews the responses carry on arrival, in one insert (a redelivered one is
        noted already); the responses whose review the database refused."""
        arrivals = [
            (n, arrival)
            for n, (response, _) in todo.items()
            if (arrival := reviews.on_arrival(response)) is not None
        ]
        inserted = await insert_each(self._reviews, [_review_document(a) for _, a in arrivals])
        return {arrivals[p][0]: error for p, error in inserted.refused.items()}

    async def _guarded(
        self, response: SurveyResponse, key: str, withheld: bool, now: datetime
    ) -> Record | None:
        """The guarded upsert: the record of `key` replaced by what `response` says when it is
        older (and no unsubscribe came after `response`), made when there is none."""
        focal_point = response.focal_point
        assert focal_point is not None
        update = (_consent if focal_point.consent else _withdrawal)(response, focal_point)
        update = _with_review(update, withheld, now)
        try:
            updated = await self._focal_points.find_one_and_update(
                {
                    "_id": key,
                    "$and": [
                        _older_than(response),
                        # A response older than an unsubscribe does not undo it.
                        {
                            "$or": [
                                {"unsubscribed_at": {"$exists": False}},
                                {"unsubscribed_at": {"$lt": response.submitted_at}},
                            ]
                        },
                    ],
                },
                update,
                upsert=True,
                return_document=True,
            )
        except DuplicateKeyError:
            # A later (or the same) response of this focal point is already in.
            updated = await self._focal_points.find_one({"_id": key})
        return None if updated is None else record_of(updated)

    async def review(self, review: ResponseReview) -> list[tuple[Record, bool]]:
        """Note an operator's review (or retraction) of a response and apply it to the focal
        point registered from that response, if any: each such record as it now stands, and
        whether this review released it (it may be mailed again). Idempotent."""
        await self._note(reviews.noted(review))
        found = self._focal_points.find(
            {"survey_id": review.survey_id, "response_id": review.response_id}
        )
        settled = []
        async for document in found:
            before = record_of(document)
            after = await self._settle(before, await self._withheld(review.identity))
            await self._copy_to_index(after)
            settled.append((after, before.withheld and not after.withheld))
        return settled

    async def _settle(self, record: Record, withheld: bool, drop_request: bool = False) -> Record:
        """`record` withheld or not as the latest review of its response says (`withheld`: one
        update when that changed); the record as it then stands. `drop_request`: the record's
        confirmation request came with its first insert and was never sent; a withheld record
        asks nothing (its approval does), so it goes."""
        if withheld == record.withheld:
            return record
        update: dict[str, Any] = {"$inc": {"revision": 1}}
        if withheld and drop_request:
            update["$unset"] = {"confirmation": ""}
        updated = await self._focal_points.find_one_and_update(
            # Only while the record still comes from that response: a later one replaced it.
            {"_id": record.key, "survey_id": record.survey_id, "response_id": record.response_id},
            _with_review(update, withheld, datetime.now(UTC)),
            return_document=True,
        )
        return record if updated is None else record_of(updated)

    async def _note(self, review: reviews.NotedReview) -> None:
        with contextlib.suppress(DuplicateKeyError):  # noted already (a redelivery)
            await self._reviews.insert_one(_review_document(review))

    async def _withheld(self, identity: str) -> bool:
        """Whether the latest review noted of that response withholds its focal point."""
        return (await self._withheld_of({identity}))[identity]

    async def _withheld_of(self, identities: set[str]) -> dict[str, bool]:
        """Whether the latest review noted of each of these responses withholds its focal
        point, in one read."""
        noted: dict[str, list[reviews.NotedReview]] = {identity: [] for identity in identities}
        if identities:
            found = self._reviews.find({"identity": {"$in": sorted(identities)}})
            async for d in found:
                identity = str(d["identity"])
                rank = (int(d["rank"][0]), str(d["rank"][1]))
                noted[identity].append(
                    reviews.NotedReview(str(d["_id"]), identity, str(d["status"]), rank)
                )
        return {identity: reviews.withholds(found) for identity, found in noted.items()}

    async def unsubscribe(self, key: str) -> bool:
        """Stop all mail to the focal point with registry key `key`; False when there is none."""
        result = await self._focal_points.update_one(
            {"_id": key},
            {
                "$set": {"unsubscribed": True, "unsubscribed_at": datetime.now(UTC)},
                "$inc": {"revision": 1},
            },
        )
        record = await self.get(key)
        if record is not None:
            await self._copy_to_index(record)
        return result.matched_count > 0

    async def erase(self, key: str, requested_at: datetime, request_id: str) -> dict[str, int]:
        """Replace the record of `key` by a tombstone that holds nothing personal, and forget its
        link ids; what was removed. Idempotent. The tombstone (upserted also when there is no
        record yet) keeps responses submitted before `requested_at` (a replay, a late retry)
        from registering the person again; a later one is a new consent and registers them, and
        a record that already comes from such a response is left as it is (`newer_consent`).
        The whole document is replaced, so fields added to records later go too."""
        record = await self.get(key)
        ours = record is not None and record.erasure_id == request_id
        if record is not None and not ours and _after(record.submitted_at, requested_at):
            return {"newer_consent": 1}  # registered by a response given after the request
        held = int(record is not None and record.email is not None)
        if not ours:
            tombstone = Record(
                key,
                submitted_at=requested_at,
                revision=(record.revision if record else 0) + 1,
                erasure_id=request_id,
                erased_at=requested_at,
            )
            await self._focal_points.replace_one({"_id": key}, document_of(tombstone), upsert=True)
            record = await self.get(key)
        if record is not None:
            await self._copy_to_index(record)  # also when a crash came between the two writes
        links = await self._links.delete_many({"email_key": key})
        return {"focal_points": held, "link_ids": links.deleted_count}

    async def reindex(self, record: Record) -> None:
        """Copy a stored record into the match index unless a newer copy is there (`rekey`)."""
        await self._copy_to_index(record)

    async def _copy_to_index(self, record: Record) -> None:
        """Copy `record` into the match index unless a newer copy is there."""
        await self._match_index.copy([record])

    async def candidates(self, pilot: PilotAnnounced) -> list[tuple[str, list[str]]]:
        """(email key, shared codes) of every focal point `pilot` matches, from the match index.

        The buckets are read `MATCH_BATCH` at a time, and each batch is matched in a worker
        thread while the next one is read: the server's read and this process's match overlap
        (at 100,000 focal points, about 0.13 s and 0.09 s one after the other), and the event
        loop stays free to serve meanwhile rather than stopping for the whole match."""
        matched: list[tuple[str, list[str]]] = []
        matching: asyncio.Future[list[tuple[str, list[str]]]] | None = None
        async with self._index.find({}, {"data": True}, batch_size=MATCH_BATCH) as cursor:
            while batch := await cursor.to_list(MATCH_BATCH):
                if matching is not None:
                    matched += await matching
                buckets = [document["data"] for document in batch]
                matching = asyncio.ensure_future(asyncio.to_thread(match, pilot, buckets))
        if matching is not None:
            matched += await matching
        return matched

    async def get(self, key: str) -> Record | None:
        """The record with registry key `key` (`key(email)`), if any."""
        document = await self._focal_points.find_one({"_id": key})
        return record_of(document) if document is not None else None

    async def remember_link(
        self, link_id: str, email_key: str, revision: int = 0, *, request: int | None = None
    ) -> None:
        """Let links naming `link_id` find the focal point `email_key` (before a link is sent);
        `revision` is the record's, as read for the email; `request`: the link confirms that
        confirmation request."""
        if (link_id, revision) in self._linked:
            return  # a later email to the same person: no round trip
        link: Document = {"_id": link_id, "email_key": email_key}
        if request is not None:
            link["request"] = request
        # An insert by `_id` is atomic on every server; the same pair again changes nothing.
        with contextlib.suppress(DuplicateKeyError):
            await self._links.insert_one(link)
        if len(self._linked) >= LINKS_REMEMBERED:
            self._linked.clear()  # bounded memory; the next insert of each is a no-op
        self._linked.add((link_id, revision))

    async def by_link(self, link_id: str) -> Record | None:
        """The record a link's opaque id names, if any."""
        link = await self._links.find_one({"_id": link_id})
        return await self.get(str(link["email_key"])) if link else None

    async def request_of(self, link_id: str) -> tuple[Record, int] | None:
        """(record, request number) a confirmation link's opaque id names, if any."""
        link = await self._links.find_one({"_id": link_id})
        if link is None or "request" not in link:
            return None
        record = await self.get(str(link["email_key"]))
        return (record, int(link["request"])) if record else None

    async def request_confirmation(self, email_key: str, request: consent.Request) -> None:
        """Record `request` as the focal point's open confirmation request."""
        await self._focal_points.update_one(
            {"_id": email_key},
            {"$set": {"confirmation": _request_document(request)}, "$unset": {"expired": ""}},
        )

    async def confirm(self, email_key: str, number: int, now: datetime) -> Record | None:
        """The owner confirmed request `number`: pilots may go to them, also after an
        unsubscribe (their own confirmation is the one thing that lifts it). The record, or
        None when that request is not open (answered, expired, or superseded by a later one):
        an old link does not undo a later unsubscribe."""
        updated = await self._focal_points.find_one_and_update(
            {
                "_id": email_key,
                "confirmation.number": number,
                "confirmation.expires_at": {"$gt": now},
                "confirmation.answered_at": {"$exists": False},
                "expired": {"$ne": True},
            },
            {
                "$set": {
                    "confirmed_at": now,
                    "confirmation.answered_at": now,
                    "unsubscribed": False,
                },
                "$inc": {"revision": 1},
            },
            return_document=True,
        )
        return await self._copied(updated)

    async def set_preferences(self, email_key: str, choices: consent.Choices) -> Record | None:
        """Store what the person chose; it applies from the next pilot on."""
        updated = await self._focal_points.find_one_and_update(
            {"_id": email_key},
            {
                "$set": {
                    "preferences": {
                        "themes": list(choices.themes),
                        "language": choices.language,
                        "frequency": choices.frequency,
                        "updated_at": datetime.now(UTC),
                    }
                },
                "$inc": {"revision": 1},
            },
            return_document=True,
        )
        return await self._copied(updated)

    async def _copied(self, updated: Document | None) -> Record | None:
        """The record of a document just updated, once copied into the match index."""
        if updated is None:
            return None
        record = record_of(updated)
        await self._copy_to_index(record)
        return record

    async def expire_unconfirmed(
        self, now: datetime, withheld_before: datetime | None = None
    ) -> int:
        """Mark the addresses never confirmed whose request ran out `expired`, dropping the
        name, address and city (nothing is sent to them); how many. A later consent may
        ask again. So too those withheld since before `withheld_before`, never asked to confirm
        (a rejected response: perhaps spam, perhaps someone else's address)."""
        ran_out: list[Document] = [{"confirmation.expires_at": {"$lt": now}}]
        if withheld_before is not None:
            ran_out.append({"withheld_at": {"$lt": withheld_before}})
        stale = self._focal_points.find(
            {
                "confirmed_at": {"$exists": False},
                "$or": ran_out,
                "expired": {"$ne": True},
            },
            {"_id": True},
        )
        keys = [str(record["_id"]) async for record in stale]
        for key in keys:
            await self._focal_points.update_one(
                {"_id": key, "confirmed_at": {"$exists": False}},
                {"$set": {"expired": True}, "$unset": {"name": "", "email": "", "city": ""}},
            )
        return len(keys)

    async def matching(self, query: dict[str, Any]) -> AsyncIterator[Record]:
        """Focal points that satisfy a query, one record each, read one document each
        (`matching.candidates_query` uses the `codes` index on MongoDB). Pilots are matched
        through `candidates`, which needs few reads on every server; this stays for checks and
        the benchmark's baseline."""
        async for document in self._focal_points.find(query):
            yield record_of(document)

    async def remember_pilot(self, pilot: PilotAnnounced) -> None:
        """Keep the pilot, so that a focal point who registers later can still be told of it."""
        await self._pilots.update_one(
            {"_id": pilot.pilot_id},
            {"$setOnInsert": {"pilot": pilot.model_dump(mode="json")}},
            upsert=True,
        )

    async def open_pilots(self, today: date) -> list[PilotAnnounced]:
        """Pilots whose `apply_by` has not passed."""
        pilots = [
            PilotAnnounced.model_validate(document["pilot"], context=TOLERANT)
            async for document in self._pilots.find()
        ]
        return [pilot for pilot in pilots if pilot.is_open(today)]

    async def pilot(self, pilot_id: str) -> PilotAnnounced | None:
        """An announced pilot by id."""
        document = await self._pilots.find_one({"_id": pilot_id})
        if document is None:
            return None
        return PilotAnnounced.model_validate(document["pilot"], context=TOLERANT)


Registered = Record | Refused | None
# The confirmation request a focal point's first record holds from the start, if any.
FirstRequest = Callable[[Record], Request | None]


def _review_document(review: reviews.NotedReview) -> Document:
    return {
        "_id": review.key,
        "identity": review.identity,
        "status": review.status,
        "rank": list(review.rank),
    }


def _older_than(response: SurveyResponse) -> Document:
    """The filter of records from a response older than `response`: submitted earlier, or at
    the same time in a lower revision (a record without one is from revision 1)."""
    at = response.submitted_at
    older: list[Document] = [{"submitted_at": {"$lt": at}}]
    if response.revision > 1:
        older += [
            {"submitted_at": at, "response_revision": {"$lt": response.revision}},
            {"submitted_at": at, "response_revision": {"$exists": False}},
        ]
    return {"$or": older}


def _with_review(update: dict[str, Any], withheld: bool, now: datetime) -> dict[str, Any]:
    """`update` that also withholds the record, or releases it."""
    if withheld:
        return {**update, "$set": {**update.get("$set", {}), "withheld_at": now}}
    return {**update, "$unset": {**update.get("$unset", {}), "withheld_at": ""}}


def _consent(response: SurveyResponse, focal_point: FocalPoint) -> dict[str, Any]:
    record: dict[str, Any] = {
        "email": str(focal_point.email),
        "name": focal_point.name,
        "language": focal_point.language,
        "consent": True,
        "country": response.respondent.country,
        "city": response.respondent.city,
        "codes": focal_point_codes(response),
        "survey_id": response.survey_id,  # with the response id, the response's identity
        "response_id": response.response_id,
        "response_revision": response.revision,
        "submitted_at": response.submitted_at,
    }
    # Unsubscribe is sticky: anyone can type an address into a form, so no response, however
    # new, lifts it. A new record starts subscribed.
    return {"$set": record, "$setOnInsert": {"unsubscribed": False}, "$inc": {"revision": 1}}


def _withdrawal(response: SurveyResponse, focal_point: FocalPoint) -> dict[str, Any]:
    record: dict[str, Any] = {
        "language": focal_point.language,  # for the unsubscribe page
        "consent": False,
        "country": response.respondent.country,
        "codes": [],
        "survey_id": response.survey_id,
        "response_id": response.response_id,
        "response_revision": response.revision,
        "submitted_at": response.submitted_at,
    }
    # Without consent the personal data goes; the record stays so that an older response
    # replayed later cannot bring it back.
    return {
        "$set": record,
        "$setOnInsert": {"unsubscribed": False},
        # A withdrawal also ends the confirmation: consent given again is confirmed again. The
        # last request stays, so that the limit on confirmation emails still holds.
        "$unset": {"name": "", "email": "", "city": "", "confirmed_at": ""},
        "$inc": {"revision": 1},
    }


def record_of(document: Document) -> Record:
    """The typed record of a stored focal-point document (the registry's format, unchanged)."""
    stored = document.get("confirmation")
    chosen = document.get("preferences")
    return Record(
        key=str(document["_id"]),
        email=_text(document.get("email")),
        name=_text(document.get("name")),
        survey_language=_text(document.get("language")),
        consent=bool(document.get("consent")),
        unsubscribed=bool(document.get("unsubscribed")),
        unsubscribed_at=document.get("unsubscribed_at"),
        country=str(document.get("country", "")),
        city=_text(document.get("city")),
        survey_codes=tuple(document.get("codes", ())),
        survey_id=_text(document.get("survey_id")),
        response_id=_text(document.get("response_id")),
        submitted_at=document.get("submitted_at"),
        response_revision=int(document.get("response_revision", 1)),
        withheld_at=document.get("withheld_at"),
        revision=int(document.get("revision", 0)),
        request=None
        if not stored
        else Request(
            int(stored["number"]),
            stored["requested_at"],
            stored["expires_at"],
            stored.get("answered_at"),
        ),
        confirmed_at=document.get("confirmed_at"),
        expired=bool(document.get("expired")),
        preferences=None
        if chosen is None
        else Preferences(
            None if chosen.get("themes") is None else tuple(chosen["themes"]),
            chosen.get("language"),
            chosen.get("frequency"),
            chosen.get("updated_at"),
        ),
        erasure_id=_text(document.get("erasure_id")),
        erased_at=document.get("erased_at"),
    )


def document_of(record: Record) -> Document:
    """The stored document of `record`: what `record_of` reads back, absent fields left out."""
    document: Document = {
        "_id": record.key,
        "email": record.email,
        "name": record.name,
        "language": record.survey_language,
        "consent": record.consent,
        "unsubscribed": record.unsubscribed,
        "unsubscribed_at": record.unsubscribed_at,
        "country": record.country,
        "city": record.city,
        "codes": list(record.survey_codes),
        "survey_id": record.survey_id,
        "response_id": record.response_id,
        "submitted_at": record.submitted_at,
        # Stored only when not the default: records from before revisions and reviews hold
        # neither.
        "response_revision": record.response_revision if record.response_revision > 1 else None,
        "withheld_at": record.withheld_at,
        "revision": record.revision,
        "confirmation": None if record.request is None else _request_document(record.request),
        "confirmed_at": record.confirmed_at,
        "expired": record.expired or None,  # stored only when true
        "preferences": None if record.preferences is None else _preferences(record.preferences),
        "erasure_id": record.erasure_id,
        "erased_at": record.erased_at,
    }
    return {name: value for name, value in document.items() if value is not None}


def first_document(record: Record) -> Document:
    """The stored document of a focal point's first record (`records.first_record`): the one
    the guarded upsert of `register` would make, which also holds `response_revision` 1."""
    return {**document_of(record), "response_revision": record.response_revision}


def _request_document(request: Request) -> Document:
    document: Document = {
        "number": request.number,
        "requested_at": request.requested_at,
        "expires_at": request.expires_at,
    }
    if request.answered_at is not None:
        document["answered_at"] = request.answered_at
    return document


def _preferences(chosen: Preferences) -> Document:
    return {
        "themes": None if chosen.themes is None else list(chosen.themes),
        "language": chosen.language,
        "frequency": chosen.frequency,
        "updated_at": chosen.updated_at,
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _after(moment: datetime | None, other: datetime) -> bool:
    return moment is not None and moment > other
