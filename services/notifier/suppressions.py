"""The suppression list in MongoDB: addresses that get no more email of any kind.

An address is suppressed for one of four reasons (`Reason`): the SMTP server refused the
recipient for good when we sent (`refused`), a provider reported a hard bounce (`bounce`) or a
complaint (`complaint`), or it reported `SOFT_BOUNCE_LIMIT` soft bounces (`soft-bounce`). Each
record is keyed by the focal point's `email_key` (`Registry.key`, the one key
function), never by the address, and says why, from which source, when, and the provider's
report id. The first suppression of an address is the one kept; later reports are recorded as
reports only.

Everything is written with inserts of a new `_id`, the one write every supported server makes
atomic (`claims`), so replicas taking reports at once and providers sending a report again stay
exact:

- a provider report is recorded once per (provider, report id, email key): a report sent again
  changes nothing (`notifier_provider_reports`);
- soft bounces are counted with one numbered slot per report (`<email key>#<n>`, the lowest free
  `n`, in `notifier_soft_bounces`), never with `$inc`: two reports at once take two slots, and the
  report's record keeps its slot, so a report sent again is not counted twice. A replica that died
  between recording a report and taking its slot leaves the record without one: once its lease
  has run out, the provider's next try takes over (one taker per lease period, by a claim) and
  first looks for a slot the dead replica may already have taken.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from prometheus_client import Counter, Gauge
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.notifier.records import Suppression
from shared.mongo import Document

SUPPRESSIONS = "notifier_suppressions"
PROVIDER_REPORTS = "notifier_provider_reports"
SOFT_BOUNCES = "notifier_soft_bounces"
# The dispatcher checks each message against a copy of the list at most this old: a read of the
# list per message would cost a scan of it per message on FerretDB. A suppression made by this
# replica is in its copy at once; one made by another replica within this many seconds.
SNAPSHOT_SECONDS = 2.0
# Far longer than recording one report takes: only a replica that died is taken over.
REPORT_LEASE = timedelta(seconds=30)
# How many slots a takeover looks through for the one a replica that died may have taken
# (beyond SOFT_BOUNCE_LIMIT only reports arriving at once take slots).
MAX_SLOT_LOOKUP = 128

SUPPRESSED = Counter(
    "notifier_suppressions_total", "Addresses put on the suppression list", ["reason", "source"]
)
# The whole list as of this replica's last read of it (every replica shows the same list).
LISTED = Gauge("notifier_suppressed_addresses", "Addresses on the suppression list", ["reason"])


class Reason(StrEnum):
    """Why an address is suppressed."""

    REFUSED = "refused"  # the SMTP server refused the recipient for good at send time
    BOUNCE = "bounce"  # a provider reported a hard (permanent) bounce
    SOFT_BOUNCE = "soft-bounce"  # SOFT_BOUNCE_LIMIT soft bounces reported
    COMPLAINT = "complaint"  # the recipient marked an email as spam


# Every (reason, source) there can be shows from the start, at 0, so that rates and alerts work.
for _reason, _sources in (
    (Reason.REFUSED, ("smtp",)),
    (Reason.BOUNCE, ("ses", "postmark")),
    (Reason.SOFT_BOUNCE, ("ses", "postmark")),
    (Reason.COMPLAINT, ("ses", "postmark")),
):
    for _source in _sources:
        SUPPRESSED.labels(str(_reason), _source)


class Event(StrEnum):
    """What a provider reported about one recipient."""

    BOUNCE = "bounce"
    SOFT_BOUNCE = "soft-bounce"
    COMPLAINT = "complaint"


@dataclass(frozen=True)
class Report:
    """One recipient of a provider's report, as the webhook parsed it (no address: its key)."""

    provider: str  # "ses" | "postmark"
    report_id: str  # the provider's id of the report (SES feedbackId, Postmark ID)
    email_key: str
    event: Event


@dataclass(frozen=True)
class Applied:
    """What recording a report did: `new` unless it was recorded before; `suppressed` when the
    address is suppressed now (by this report or earlier); `soft_bounces` counted so far."""

    new: bool
    suppressed: bool
    soft_bounces: int | None = None


class ReportInProgress(Exception):
    """The same report is being recorded by another request right now: try again later."""


def report_key(report: Report) -> str:
    """The one record of a report about one recipient."""
    return f"{report.provider}:{report.report_id}|{report.email_key}"


def reason_of(event: Event) -> Reason:
    """The suppression reason of a provider event that suppresses."""
    return {
        Event.BOUNCE: Reason.BOUNCE,
        Event.SOFT_BOUNCE: Reason.SOFT_BOUNCE,
        Event.COMPLAINT: Reason.COMPLAINT,
    }[event]


def document_of(record: Suppression) -> Document:
    """The stored document of a suppression: what `Suppression.from_document` reads back. The
    format is unchanged: `report_id` is stored also when null, `detail` only when given."""
    document: Document = {
        "_id": record.key,
        "reason": record.reason,
        "source": record.source,
        "report_id": record.report_id,
        "at": record.at,
    }
    if record.detail:
        document["detail"] = record.detail
    return document


class Suppressions:
    """The suppression list and the provider reports behind it."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._suppressions = db[SUPPRESSIONS]
        self._reports = db[PROVIDER_REPORTS]
        self._slots = db[SOFT_BOUNCES]
        self._snapshot: dict[str, str] = {}  # key -> "reason (source)"
        self._snapshot_at = float("-inf")

    async def suppress(
        self,
        email_key: str,
        reason: Reason,
        source: str,
        *,
        report_id: str | None = None,
        detail: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Put `email_key` on the list; False when it already was (the first record stays)."""
        at = now or datetime.now(UTC)
        record = Suppression(email_key, str(reason), source, at, report_id, detail or None)
        try:
            await self._suppressions.insert_one(document_of(record))
        except DuplicateKeyError:
            return False
        self._snapshot.setdefault(email_key, f"{reason} ({source})")
        SUPPRESSED.labels(str(reason), source).inc()
        return True

    async def get(self, email_key: str) -> Suppression | None:
        """The suppression of `email_key`, if any (one read of the list)."""
        found = await self._suppressions.find_one({"_id": email_key})
        return None if found is None else Suppression.from_document(found)

    async def keys(self) -> set[str]:
        """Every suppressed key, read now (one read of the list, for matching a whole pilot)."""
        await self._refresh()
        return set(self._snapshot)

    async def why(self, email_key: str) -> str | None:
        """Why `email_key` is suppressed (`bounce (ses)`), None if it is not: from a copy of
        the list at most `SNAPSHOT_SECONDS` old (the dispatcher's check of every message)."""
        if time.monotonic() - self._snapshot_at > SNAPSHOT_SECONDS:
            await self._refresh()
        return self._snapshot.get(email_key)

    async def _refresh(self) -> None:
        started = time.monotonic()
        fields = {"reason": True, "source": True}
        listed = [d async for d in self._suppressions.find({}, fields)]
        self._snapshot = {str(d["_id"]): f"{d['reason']} ({d['source']})" for d in listed}
        self._snapshot_at = started
        by_reason = Tally(str(d["reason"]) for d in listed)
        for reason in Reason:
            LISTED.labels(str(reason)).set(by_reason[str(reason)])

    async def lift(self, email_key: str) -> bool:
        """Take `email_key` off the list (an operator's decision); its soft bounces are counted
        from zero again. False when it was not on the list."""
        removed = await self._suppressions.delete_one({"_id": email_key})
        slots = [f"{email_key}#{n}" for n in range(1, MAX_SLOT_LOOKUP + 1)]
        await self._slots.delete_many({"_id": {"$in": slots}})
        self._snapshot.pop(email_key, None)
        return removed.deleted_count > 0

    async def listing(self, limit: int) -> list[Suppression]:
        """The suppressions, newest first, at most `limit`."""
        cursor = self._suppressions.find().sort("at", -1).limit(limit)
        return [Suppression.from_document(d) async for d in cursor]

    async def counts(self) -> dict[str, int]:
        """How many addresses are suppressed, by reason."""
        pipeline = [{"$group": {"_id": "$reason", "n": {"$sum": 1}}}]
        cursor = await self._suppressions.aggregate(pipeline)
        counts = {str(d["_id"]): int(d["n"]) async for d in cursor}
        for reason in Reason:
            LISTED.labels(str(reason)).set(counts.get(str(reason), 0))
        return counts

    async def record(self, report: Report, soft_limit: int, now: datetime | None = None) -> Applied:
        """Record one recipient's report once and suppress the address when it says so.

        Raises `ReportInProgress` when another request is recording the same soft bounce.
        """
        now = now or datetime.now(UTC)
        key = report_key(report)
        document = {
            "_id": key,
            "provider": report.provider,
            "report_id": report.report_id,
            "email_key": report.email_key,
            "event": str(report.event),
            "at": now,
        }
        try:
            await self._reports.insert_one(document)
            new = True
        except DuplicateKeyError:
            new = False
        if report.event is not Event.SOFT_BOUNCE:
            # Sent again after a crash between the two writes: the suppression is made now.
            await self._suppress_for(report, now)
            return Applied(new, suppressed=True)
        slot = await self._count_soft(report, key, new, now)
        if slot >= soft_limit:
            await self._suppress_for(report, now)
            return Applied(new, suppressed=True, soft_bounces=slot)
        suppressed = await self.get(report.email_key) is not None
        return Applied(new, suppressed=suppressed, soft_bounces=slot or None)

    async def _suppress_for(self, report: Report, now: datetime) -> None:
        await self.suppress(
            report.email_key,
            reason_of(report.event),
            report.provider,
            report_id=report.report_id,
            now=now,
        )

    async def _count_soft(self, report: Report, key: str, new: bool, now: datetime) -> int:
        """The slot (1, 2, ...) of this soft bounce among the address's; 0 when the address was
        already suppressed (nothing more to count)."""
        if not new:
            recorded = await self._reports.find_one({"_id": key})
            if recorded is not None and "slot" in recorded:
                return int(recorded["slot"])
            if recorded is not None and recorded["at"] + REPORT_LEASE > now:
                raise ReportInProgress(key)
            # The replica that recorded it died: one taker per lease period goes on.
            period = int(now.timestamp() // REPORT_LEASE.total_seconds())
            try:
                await self._reports.insert_one({"_id": f"{key}#takeover@{period}", "at": now})
            except DuplicateKeyError:
                raise ReportInProgress(key) from None
            found = await self._slot_taken_by(report.email_key, key)
            if found is not None:
                await self._reports.update_one({"_id": key}, {"$set": {"slot": found}})
                return found
        elif await self.get(report.email_key) is not None:
            await self._reports.update_one({"_id": key}, {"$set": {"slot": 0}})
            return 0
        slot = await self._take_slot(report.email_key, key, now)
        await self._reports.update_one({"_id": key}, {"$set": {"slot": slot}})
        return slot

    async def _take_slot(self, email_key: str, key: str, now: datetime) -> int:
        number = 1
        while True:
            try:
                await self._slots.insert_one(
                    {"_id": f"{email_key}#{number}", "report": key, "at": now}
                )
            except DuplicateKeyError:
                number += 1
                continue
            return number

    async def _slot_taken_by(self, email_key: str, key: str) -> int | None:
        # Only on a takeover: the one read by filter, of this address's slots alone.
        candidates = [f"{email_key}#{n}" for n in range(1, MAX_SLOT_LOOKUP + 1)]
        found = await self._slots.find_one({"_id": {"$in": candidates}, "report": key})
        return int(str(found["_id"]).rpartition("#")[2]) if found else None
