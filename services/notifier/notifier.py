"""The notifier's use cases: keep the registry, turn pilots into deliveries, send what is due."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

from services.notifier import consent, emails, unsubscribe
from services.notifier.deliveries import CONFIRMATION, Deliveries, backoff
from services.notifier.failures import (
    DELIVERY_KINDS,
    Kind,
    Outcome,
    decide,
    enhanced_status,
    refuses_mailbox,
)
from services.notifier.mailer import Mailer, MailFailure
from services.notifier.matching import shared_codes
from services.notifier.ratelimit import TokenBucket
from services.notifier.registry import Registry
from services.notifier.settings import NotifierSettings
from services.notifier.suppressions import Reason, Suppressions
from shared.events import PilotAnnounced, SurveyResponse
from shared.mongo import Document
from shared.observability import SMTP_FAILURES, SMTP_PAUSED

logger = logging.getLogger(__name__)


@dataclass
class Notifier:
    """Registry in, deliveries out."""

    settings: NotifierSettings
    registry: Registry
    deliveries: Deliveries
    mailer: Mailer
    # The suppression list (`suppressions`); None only where a test drives the dispatcher alone.
    suppressions: Suppressions | None = None
    _work: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _bucket: TokenBucket = field(init=False)
    # Sending's health: delivery failures and pauses in a row, why and since when it is paused.
    _refusals: int = 0
    _pauses: int = 0
    _paused: Kind | None = None
    _paused_since: float = 0.0
    _resume_at: float = 0.0

    def __post_init__(self) -> None:
        self._bucket = TokenBucket(self.settings.send_rate_per_second)

    async def on_response(self, response: SurveyResponse) -> int:
        """Register the response's focal point; returns the deliveries it got: a confirmation
        request (double opt-in) or, once confirmed, the open pilots that match."""
        if response.review == "rejected":
            # Rejected on arrival (Kobo: not approved): nobody is mailed because of it.
            return 0
        record = await self.registry.register(response)
        if record is None:
            return 0
        created = await self._request_confirmation(record, response)
        return created + await self._open_pilots_for(record)

    async def _open_pilots_for(self, record: Document) -> int:
        """Deliveries of every open pilot matching `record` (when pilots may go to them)."""
        if not consent.receives_pilots(record, require_confirmation=self.settings.double_opt_in):
            return 0
        created = 0
        suppressed = await self._suppressed({str(record["_id"])})
        for pilot in await self.registry.open_pilots(datetime.now(UTC).date()):
            codes = shared_codes(pilot, consent.codes(record), record["country"])
            created += await self._deliver(pilot, record["_id"], codes, suppressed)
        return created

    async def _request_confirmation(self, record: Document, response: SurveyResponse) -> int:
        """Ask the owner of a consenting address to confirm it, unless asked already (1 when
        this made the request's email)."""
        if not self.settings.double_opt_in:
            return 0
        settings = self.settings
        step, request = consent.confirmation_step(
            record,
            datetime.now(UTC),
            latest=(record.get("survey_id"), record.get("response_id"))
            == (response.survey_id, response.response_id),
            received_at=response.received_at,
            ttl=timedelta(seconds=settings.confirmation_ttl_seconds),
            resend_after=timedelta(seconds=settings.confirmation_resend_seconds),
        )
        if request is None or step is consent.Step.NOTHING:
            return 0
        email_key = str(record["_id"])
        if step is consent.Step.NEW:
            await self.registry.request_confirmation(email_key, request)
        # The request's email has one record, ever: a redelivered response, a second replica or
        # a retry after a crash between these two writes all land on the same one.
        created = await self.deliveries.create_confirmation(email_key, request.number)
        if created:
            self._work.set()
        return int(created)

    async def confirm(self, link_id: str) -> tuple[str, Document | None]:
        """The owner of an address posted the confirmation form of a link sent to them.

        (`done` | `expired`, the record). Done: pilot emails may go to them, and every open
        pilot that matches is delivered now (also those announced before they confirmed).
        """
        found = await self.registry.request_of(link_id)
        if found is None:
            return "expired", None
        record, number = found
        confirmed = await self.registry.confirm(str(record["_id"]), number, datetime.now(UTC))
        if confirmed is None:
            # A second click on the same link once it worked says the same.
            done = consent.confirmed(record) and not record.get("unsubscribed")
            return ("done" if done else "expired"), record
        await self._open_pilots_for(confirmed)
        return "done", confirmed

    async def expire_unconfirmed(self) -> int:
        """Drop the details of addresses whose confirmation ran out; how many."""
        expired = await self.registry.expire_unconfirmed(datetime.now(UTC))
        if expired:
            logger.info("%d unconfirmed focal points expired", expired)
        return expired

    async def run_expiry(self, interval: float) -> None:
        """Expire unconfirmed addresses every `interval` seconds until cancelled."""
        while True:
            try:
                await self.expire_unconfirmed()
            except Exception:
                logger.exception("expiring unconfirmed focal points failed")
            await asyncio.sleep(interval)

    async def on_pilot(self, pilot: PilotAnnounced) -> int:
        """Create a delivery for every focal point the pilot matches; returns how many are new."""
        await self.registry.remember_pilot(pilot)
        created = 0
        candidates = await self.registry.candidates(pilot)
        suppressed = await self._suppressed(None)
        for email_key, codes in candidates:
            created += await self._deliver(pilot, email_key, codes, suppressed)
        logger.info("pilot %s: %d new deliveries", pilot.pilot_id, created)
        return created

    async def _suppressed(self, among: set[str] | None) -> set[str]:
        """The suppressed keys (of `among`, or all: one read of the list per pilot)."""
        if self.suppressions is None:
            return set()
        if among is None:
            return await self.suppressions.keys()
        return {key for key in among if await self.suppressions.why(key) is not None}

    async def _deliver(
        self, pilot: PilotAnnounced, email_key: str, codes: list[str], suppressed: set[str]
    ) -> int:
        # Consent, unsubscribe and the suppression list are checked again when the email is sent.
        if not codes:
            return 0
        if email_key in suppressed:
            # Settled at once, so that the pilot's deliveries show who was left out and why.
            reason = "suppressed: the address is on the suppression list"
            await self.deliveries.create(pilot.pilot_id, email_key, codes, suppressed=reason)
            return 0
        created = await self.deliveries.create(
            pilot.pilot_id, email_key, codes, self.settings.digest_window_seconds
        )
        if created:
            self._work.set()  # wake the dispatcher now rather than at its next poll
        return int(created)

    async def send_due(self) -> bool:
        """Send one due delivery (with the focal point's other pending ones in a digest window
        or a weekly digest); False when nothing is due or sending pauses (`failures`)."""
        first = await self.deliveries.claim_due()
        if first is None:
            if self._paused is not None:
                await self._probe()
            return False
        if first.get("kind") == CONFIRMATION:
            return await self._send_confirmation(first)
        record = await self.registry.get(first["email_key"])
        if record is None or not consent.receives_pilots(
            record, require_confirmation=self.settings.double_opt_in
        ):
            reason = "focal point unsubscribed, withdrew consent or has not confirmed"
            await self.deliveries.mark_failed([first["_id"]], reason)
            return True
        weekly = consent.frequency(record) == consent.WEEKLY
        if weekly:
            settings = self.settings
            due = consent.next_digest_at(
                first["created_at"], settings.digest_weekday, settings.digest_hour
            )
            if due > datetime.now(UTC):
                await self.deliveries.postpone([first["_id"]], due)
                return True
        group = [first]
        if weekly or self.settings.digest_window_seconds > 0:
            group += await self.deliveries.claim_pending_for(first["email_key"])
        items = []
        for delivery in group:
            pilot = await self.registry.pilot(delivery["pilot_id"])
            if pilot is None:
                await self.deliveries.mark_failed([delivery["_id"]], "pilot unknown")
            else:
                items.append((pilot, list(delivery["codes"]), str(delivery["_id"])))
        if not items:
            return True
        keys = [key for *_, key in items]
        await self._remember_links(record)
        try:
            message = self.compose(record, items)
        except ValueError as exc:  # e.g. a header value that would inject a header
            await self.deliveries.mark_failed(keys, f"cannot compose the email: {exc}")
            return True
        return await self._transmit([d for d in group if d["_id"] in keys], message)

    async def _send_confirmation(self, delivery: Document) -> bool:
        """Send the email of a confirmation request, if it still asks anything."""
        record = await self.registry.get(delivery["email_key"])
        number = int(delivery["request"])
        if (
            record is None
            or not record.get("email")
            or not record.get("consent")
            or not consent.open_request(record, number, datetime.now(UTC))
        ):
            reason = "confirmation request expired, superseded or consent withdrawn"
            await self.deliveries.mark_failed([delivery["_id"]], reason)
            return True
        if consent.confirmed(record) and not record.get("unsubscribed"):
            await self.deliveries.mark_failed([delivery["_id"]], "already confirmed")
            return True
        email_key = str(record["_id"])
        keys = self.settings.link_keys()
        await self._remember_links(record)
        await self.registry.remember_link(
            keys.request_id(email_key, number),
            email_key,
            int(record.get("revision", 0)),
            request=number,
        )
        try:
            message = self.compose_confirmation(record, number, str(delivery["_id"]))
        except ValueError as exc:
            await self.deliveries.mark_failed([delivery["_id"]], f"cannot compose: {exc}")
            return True
        return await self._transmit([delivery], message)

    async def _remember_links(self, record: Document) -> None:
        # The links name the focal point by its opaque id: their pages find it so. The record's
        # revision: a person registered again after an erasure gets the link written again.
        email_key = str(record["_id"])
        link_id = self.settings.link_keys().opaque_id(email_key)
        await self.registry.remember_link(link_id, email_key, int(record.get("revision", 0)))

    async def _transmit(self, claimed: list[Document], message: emails.Outgoing) -> bool:
        """Send `message` for the claimed deliveries and record the outcome; no email of any
        kind goes to a suppressed address."""
        if self.suppressions is not None:
            why = await self.suppressions.why(str(claimed[0]["email_key"]))
            if why is not None:
                keys = [d["_id"] for d in claimed]
                await self.deliveries.mark_suppressed(keys, f"suppressed: {why}")
                return True
        if not await self._send_allowed():
            # Stopping: no SMTP transaction has started, so the claimed deliveries go back as
            # they were and the next dispatcher (here after a restart, or another replica)
            # sends them instead of waiting for the lease.
            await self.deliveries.release(claimed)
            return False
        try:
            await self.mailer.send(message)
        except MailFailure as failure:
            return await self._failed(claimed, failure)
        # Nothing but these updates between the server's reply and the records: the window
        # described in `deliveries` stays one MongoDB round trip per delivery in the message.
        await self.deliveries.mark_sent([d["_id"] for d in claimed], message.message_id)
        self._accepted()
        return True

    async def _failed(self, claimed: list[Document], failure: MailFailure) -> bool:
        """Apply `failures.decide` to the deliveries of a message that was not accepted;
        False when sending pauses."""
        SMTP_FAILURES.labels(failure.kind).inc()
        if failure.kind in DELIVERY_KINDS:
            self._refusals += 1
        decision = decide(failure.kind, self._refusals)
        keys = [d["_id"] for d in claimed]
        reason = str(failure)
        pause = self._pause(failure) if decision.pause else 0.0
        if decision.outcome is Outcome.FAILED:
            await self.deliveries.mark_failed(keys, reason)
            logger.warning("deliveries %s failed: %s", keys, reason)
            if self.suppressions is not None and refuses_mailbox(
                failure.kind, failure.code, failure.reply
            ):
                # The reply text may quote the address: only its code is kept.
                detail = f"{failure.code} {enhanced_status(failure.reply)}".strip()
                await self.suppressions.suppress(
                    str(claimed[0]["email_key"]), Reason.REFUSED, "smtp", detail=detail
                )
        elif decision.outcome is Outcome.HELD:
            await self.deliveries.hold(keys, reason, pause)
        else:
            # Attempts made while the server failed as a whole do not count.
            counted = max(int(d["attempts"]) - int(d.get("held", 0)) for d in claimed)
            if counted >= self.settings.max_attempts:
                await self.deliveries.mark_failed(keys, f"gave up after retries: {reason}")
                logger.warning("deliveries %s: gave up after %d tries: %s", keys, counted, reason)
            else:
                settings = self.settings
                delay = backoff(
                    counted, settings.retry_first_delay_seconds, settings.retry_max_delay_seconds
                )
                await self.deliveries.retry_later(keys, reason, delay)
                logger.info("deliveries %s: retry in %.1fs: %s", keys, delay, reason)
        return not decision.pause

    def _pause(self, failure: MailFailure) -> float:
        """Pause sending after a failure of the server as a whole; the seconds of the pause.
        One log line when sending pauses or the reason changes, not one per try."""
        self._pauses += 1
        settings = self.settings
        delay = backoff(
            self._pauses, settings.retry_first_delay_seconds, settings.retry_max_delay_seconds
        )
        self._resume_at = time.monotonic() + delay
        if self._paused is None:
            self._paused_since = time.monotonic()
            SMTP_PAUSED.set(1)
        if self._paused is not failure.kind:
            logger.warning("SMTP sending paused: %s; next try in %.1fs", failure, delay)
        self._paused = failure.kind
        return delay

    def _accepted(self) -> None:
        """The server accepted a message: whatever failed before was not about it."""
        self._refusals = 0
        self._resumed()

    def _resumed(self) -> None:
        if self._paused is None:
            return
        logger.warning(
            "SMTP sending resumed after %d tries over %.0fs (last: %s)",
            self._pauses,
            time.monotonic() - self._paused_since,
            self._paused,
        )
        self._paused, self._pauses = None, 0
        SMTP_PAUSED.set(0)

    async def _probe(self) -> None:
        """Paused with nothing due: is the server back? Connect, log in, MAIL FROM, RSET."""
        try:
            await self.mailer.check(parseaddr(self.settings.mail_from)[1])
        except MailFailure as failure:
            SMTP_FAILURES.labels(failure.kind).inc()
            self._pause(failure)
        else:
            self._resumed()

    def links(self, email_key: str) -> tuple[str, str]:
        """(unsubscribe, preferences) links of a focal point."""
        keys, base = self.settings.link_keys(), self.settings.public_base_url.rstrip("/")
        return (
            f"{base}/v1/unsubscribe?token={keys.token(email_key)}",
            f"{base}/v1/preferences?token={keys.token(email_key, unsubscribe.PREFERENCES)}",
        )

    def _recipient(self, record: Document) -> emails.Recipient:
        return emails.Recipient(record["email"], record.get("name", ""), consent.language(record))

    def compose(
        self, record: Document, items: list[tuple[PilotAnnounced, list[str], str]]
    ) -> emails.Outgoing:
        """The email of one delivery, or the digest of several: (pilot, codes, delivery key)."""
        url, preferences = self.links(str(record["_id"]))
        recipient = self._recipient(record)
        if len(items) == 1:
            [(pilot, codes, key)] = items
            return emails.build(
                pilot,
                recipient,
                codes,
                sender=self.settings.mail_from,
                unsubscribe_url=url,
                preferences_url=preferences,
                delivery_key=key,
            )
        return emails.build_digest(
            [(pilot, codes) for pilot, codes, _ in items],
            recipient,
            sender=self.settings.mail_from,
            unsubscribe_url=url,
            preferences_url=preferences,
            # The same set of deliveries makes the same Message-ID if it has to be sent again.
            delivery_key="+".join(sorted(key for *_, key in items)),
        )

    def compose_confirmation(self, record: Document, number: int, key: str) -> emails.Outgoing:
        """The email of confirmation request `number` of `record`."""
        email_key = str(record["_id"])
        url, preferences = self.links(email_key)
        token = self.settings.link_keys().confirm_token(email_key, number)
        request = consent.current_request(record)
        assert request is not None  # checked by the caller: the request is open
        return emails.build_confirmation(
            self._recipient(record),
            sender=self.settings.mail_from,
            confirm_url=f"{self.settings.public_base_url.rstrip('/')}/v1/confirm?token={token}",
            expires_at=request.expires_at,
            unsubscribe_url=url,
            preferences_url=preferences,
            delivery_key=key,
        )

    def stop(self) -> None:
        """Take no new delivery: the dispatcher finishes the message it is sending and returns."""
        self._stopping.set()
        self._work.set()  # an idle dispatcher wakes up to see it

    async def _send_allowed(self) -> bool:
        """Wait for the send rate to allow one more message; False when stopping instead."""
        if self._stopping.is_set():
            return False
        delay = self._bucket.take()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
        return not self._stopping.is_set()

    async def run_dispatcher(self) -> None:
        """Send due deliveries until `stop()` (then return) or cancelled.

        It sleeps when nothing is due: until this replica creates a delivery, or for the poll
        interval, after which it looks for retries that came due and for deliveries whose
        sender died (created by this replica or another). After a failure of the SMTP server
        as a whole it pauses (capped exponential backoff with jitter) before the next try.
        """
        while not self._stopping.is_set():
            self._work.clear()
            try:
                if await self.send_due():
                    continue
            except Exception:
                logger.exception("dispatcher step failed")
            paused_for = self._resume_at - time.monotonic()
            with contextlib.suppress(TimeoutError):
                if self._paused is not None and paused_for > 0:
                    # New deliveries do not end a pause: only its time, or `stop()`.
                    await asyncio.wait_for(self._stopping.wait(), paused_for)
                else:
                    await asyncio.wait_for(self._work.wait(), self.settings.poll_interval_seconds)

    async def stop_dispatcher(self, dispatcher: asyncio.Task[None], grace: float) -> None:
        """Stop `dispatcher` after its current message and that message's status update;
        cancel it after `grace` seconds (a hung SMTP server: the lease recovers the delivery)."""
        self.stop()
        done, _ = await asyncio.wait([dispatcher], timeout=grace)
        if not done:
            logger.warning("dispatcher still busy after %.1fs of shutdown: cancelled", grace)
            dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatcher
