"""The notifier's use cases: keep the registry, turn pilots into deliveries, send what is due."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr

from services.notifier import emails
from services.notifier.deliveries import Deliveries, backoff
from services.notifier.failures import DELIVERY_KINDS, Kind, Outcome, decide
from services.notifier.mailer import Mailer, MailFailure
from services.notifier.matching import shared_codes
from services.notifier.ratelimit import TokenBucket
from services.notifier.registry import Registry
from services.notifier.settings import NotifierSettings
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
        """Register the response's focal point; returns the deliveries of open pilots it got."""
        if response.review == "rejected":
            # Rejected on arrival (Kobo: not approved): nobody is mailed because of it.
            return 0
        record = await self.registry.register(response)
        if record is None or record["unsubscribed"] or not record["consent"]:
            return 0
        created = 0
        for pilot in await self.registry.open_pilots(datetime.now(UTC).date()):
            codes = shared_codes(pilot, record["codes"], record["country"])
            created += await self._deliver(pilot, record["_id"], codes)
        return created

    async def on_pilot(self, pilot: PilotAnnounced) -> int:
        """Create a delivery for every focal point the pilot matches; returns how many are new."""
        await self.registry.remember_pilot(pilot)
        created = 0
        for email_key, codes in await self.registry.candidates(pilot):
            created += await self._deliver(pilot, email_key, codes)
        logger.info("pilot %s: %d new deliveries", pilot.pilot_id, created)
        return created

    async def _deliver(self, pilot: PilotAnnounced, email_key: str, codes: list[str]) -> int:
        # Consent and unsubscribe are checked again when the email is sent.
        if not codes:
            return 0
        created = await self.deliveries.create(
            pilot.pilot_id, email_key, codes, self.settings.digest_window_seconds
        )
        if created:
            self._work.set()  # wake the dispatcher now rather than at its next poll
        return int(created)

    async def send_due(self) -> bool:
        """Send one due delivery (with the focal point's other pending ones in a digest window);
        False when nothing is due or sending pauses (`failures`)."""
        first = await self.deliveries.claim_due()
        if first is None:
            if self._paused is not None:
                await self._probe()
            return False
        group = [first]
        if self.settings.digest_window_seconds > 0:
            group += await self.deliveries.claim_pending_for(first["email_key"])
        keys = [d["_id"] for d in group]
        record = await self.registry.get(first["email_key"])
        if record is None or record["unsubscribed"] or not record["consent"]:
            await self.deliveries.mark_failed(keys, "focal point unsubscribed or withdrew consent")
            return True
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
        # The link names the focal point by its opaque id: the unsubscribe page finds it so.
        email_key = str(record["_id"])
        await self.registry.remember_link(self.settings.link_keys().opaque_id(email_key), email_key)
        try:
            message = self.compose(record, items)
        except ValueError as exc:  # e.g. a header value that would inject a header
            await self.deliveries.mark_failed(keys, f"cannot compose the email: {exc}")
            return True
        if not await self._send_allowed():
            # Stopping: no SMTP transaction has started, so the claimed deliveries go back as
            # they were and the next dispatcher (here after a restart, or another replica)
            # sends them instead of waiting for the lease.
            await self.deliveries.release([d for d in group if d["_id"] in keys])
            return False
        try:
            await self.mailer.send(message)
        except MailFailure as failure:
            return await self._failed([d for d in group if d["_id"] in keys], failure)
        # Nothing but these updates between the server's reply and the records: the window
        # described in `deliveries` stays one MongoDB round trip per delivery in the message.
        await self.deliveries.mark_sent(keys, message.message_id)
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

    def compose(
        self, record: Document, items: list[tuple[PilotAnnounced, list[str], str]]
    ) -> emails.Outgoing:
        """The email of one delivery, or the digest of several: (pilot, codes, delivery key)."""
        token = self.settings.link_keys().token(str(record["_id"]))
        url = f"{self.settings.public_base_url.rstrip('/')}/v1/unsubscribe?token={token}"
        recipient = emails.Recipient(record["email"], record["name"], record["language"])
        if len(items) == 1:
            [(pilot, codes, key)] = items
            return emails.build(
                pilot,
                recipient,
                codes,
                sender=self.settings.mail_from,
                unsubscribe_url=url,
                delivery_key=key,
            )
        return emails.build_digest(
            [(pilot, codes) for pilot, codes, _ in items],
            recipient,
            sender=self.settings.mail_from,
            unsubscribe_url=url,
            # The same set of deliveries makes the same Message-ID if it has to be sent again.
            delivery_key="+".join(sorted(key for *_, key in items)),
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
