"""Send one due delivery: claim, check, compose, send, record.

The deliveries are claimed (`deliveries`: once per attempt, whatever the replicas), checked
against the person's consent, confirmation and preferences, composed in their language, sent only
when the address is not suppressed and the dispatcher allows it, and the outcome recorded
(`retry.next_attempt` decides what a refusal means). No email of any kind goes to a suppressed
address: the suppression list is read in this one step, just before the send.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr

from services.notifier import consent, emails
from services.notifier.composer import Composer
from services.notifier.dispatcher import Throttle
from services.notifier.failures import Outcome
from services.notifier.health import SmtpHealth
from services.notifier.mailer import MailFailure
from services.notifier.ports import DeliveriesPort, MailerPort, RegistryPort, SuppressionsPort
from services.notifier.records import Delivery, FocalPoint, Item
from services.notifier.retry import next_attempt
from services.notifier.settings import NotifierSettings
from services.notifier.suppressions import Reason

logger = logging.getLogger(__name__)


@dataclass
class SendDue:
    """The dispatcher's step: one due delivery (with the focal point's other pending ones in a
    digest window or a weekly digest)."""

    settings: NotifierSettings
    registry: RegistryPort
    deliveries: DeliveriesPort
    mailer: MailerPort
    # None only where a test drives sending without the suppression list.
    suppressions: SuppressionsPort | None
    composer: Composer
    throttle: Throttle
    health: SmtpHealth

    async def __call__(self) -> bool:
        """Send one due delivery; False when nothing is due or sending pauses (`failures`)."""
        first = await self.deliveries.claim_due()
        if first is None:
            if self.health.paused is not None:
                await self.health.probe(self.mailer, parseaddr(self.settings.mail_from)[1])
            return False
        if first.is_confirmation:
            return await self._send_confirmation(first)
        record = await self._receiver(first)
        if record is None:
            return True
        group = [first, *await self._digest_of(first, record)]
        items = await self._items(group)
        if not items:
            return True
        keys = [item.key for item in items]
        await self._remember_links(record)
        try:
            message = self.composer.pilots(record, items)
        except ValueError as exc:  # e.g. a header value that would inject a header
            await self.deliveries.mark_failed(keys, f"cannot compose the email: {exc}")
            return True
        return await self._send([d for d in group if d.key in keys], message)

    async def _receiver(self, first: Delivery) -> FocalPoint | None:
        """Check: the focal point's record when a pilot email may go to them now; otherwise the
        delivery is settled (failed, or postponed to their weekly digest) and None."""
        record = await self.registry.get(first.email_key)
        if record is None or not consent.receives_pilots(
            record, require_confirmation=self.settings.double_opt_in
        ):
            reason = "focal point unsubscribed, withdrew consent or has not confirmed"
            await self.deliveries.mark_failed([first.key], reason)
            return None
        if consent.frequency(record) == consent.WEEKLY:
            settings = self.settings
            assert first.created_at is not None  # every stored delivery has it
            due = consent.next_digest_at(
                first.created_at, settings.digest_weekday, settings.digest_hour
            )
            if due > datetime.now(UTC):
                await self.deliveries.postpone([first.key], due)
                return None
        return record

    async def _digest_of(self, first: Delivery, record: FocalPoint) -> list[Delivery]:
        """Claim: the focal point's other pending deliveries that go in the same email."""
        if consent.frequency(record) == consent.WEEKLY or self.settings.digest_window_seconds > 0:
            return await self.deliveries.claim_pending_for(first.email_key)
        return []

    async def _items(self, group: list[Delivery]) -> list[Item]:
        """The pilots of the claimed deliveries; one whose pilot is unknown fails."""
        items = []
        for delivery in group:
            pilot = await self.registry.pilot(str(delivery.pilot_id))
            if pilot is None:
                await self.deliveries.mark_failed([delivery.key], "pilot unknown")
            else:
                items.append(Item(pilot, list(delivery.codes), delivery.key))
        return items

    async def _send_confirmation(self, delivery: Delivery) -> bool:
        """Send the email of a confirmation request, if it still asks anything."""
        record = await self.registry.get(delivery.email_key)
        number = int(delivery.request or 0)
        if (
            record is None
            or not record.email
            or not record.consent
            or not consent.open_request(record, number, datetime.now(UTC))
        ):
            reason = "confirmation request expired, superseded or consent withdrawn"
            await self.deliveries.mark_failed([delivery.key], reason)
            return True
        if consent.confirmed_and_subscribed(record):
            await self.deliveries.mark_failed([delivery.key], "already confirmed")
            return True
        await self._remember_links(record)
        await self.registry.remember_link(
            self.settings.link_keys().request_id(record.key, number),
            record.key,
            record.revision,
            request=number,
        )
        try:
            message = self.composer.confirmation(record, number, delivery.key)
        except ValueError as exc:
            await self.deliveries.mark_failed([delivery.key], f"cannot compose: {exc}")
            return True
        return await self._send([delivery], message)

    async def _remember_links(self, person: FocalPoint) -> None:
        # The links name the focal point by its opaque id: their pages find it so. The record's
        # revision: a person registered again after an erasure gets the link written again.
        link_id = self.settings.link_keys().opaque_id(person.key)
        await self.registry.remember_link(link_id, person.key, person.revision)

    async def _send(self, claimed: list[Delivery], message: emails.Outgoing) -> bool:
        """Send `message` for the claimed deliveries and record the outcome; no email of any
        kind goes to a suppressed address."""
        if self.suppressions is not None:
            why = await self.suppressions.why(claimed[0].email_key)
            if why is not None:
                keys = [d.key for d in claimed]
                await self.deliveries.mark_suppressed(keys, f"suppressed: {why}")
                return True
        if not await self.throttle.allow():
            # Stopping: no SMTP transaction has started, so the claimed deliveries go back as
            # they were and the next dispatcher (here after a restart, or another replica)
            # sends them instead of waiting for the lease.
            await self.deliveries.release(claimed)
            return False
        try:
            await self.mailer.send(message)
        except MailFailure as failure:
            return await self._record_failure(claimed, failure)
        # Nothing but these updates between the server's reply and the records: the window
        # described in `deliveries` stays one MongoDB round trip per delivery in the message.
        await self.deliveries.mark_sent([d.key for d in claimed], message.message_id)
        self.health.accepted()
        return True

    async def _record_failure(self, claimed: list[Delivery], failure: MailFailure) -> bool:
        """Record `retry.next_attempt` for the deliveries of a message that was not accepted;
        False when sending pauses."""
        self.health.failed(failure)
        decided = next_attempt(
            failure.kind,
            failure.code,
            failure.reply,
            refusals=self.health.refusals,
            deliveries=claimed,
            max_attempts=self.settings.max_attempts,
            backoff_of=self.health.backoff,
        )
        keys = [d.key for d in claimed]
        reason = str(failure)
        pause = self.health.pause(failure) if decided.pause else 0.0
        if decided.outcome is Outcome.FAILED and decided.gave_up:
            await self.deliveries.mark_failed(keys, f"gave up after retries: {reason}")
            logger.warning(
                "deliveries %s: gave up after %d tries: %s", keys, decided.counted, reason
            )
        elif decided.outcome is Outcome.FAILED:
            await self.deliveries.mark_failed(keys, reason)
            logger.warning("deliveries %s failed: %s", keys, reason)
            if self.suppressions is not None and decided.suppress:
                # The reply text may quote the address: only its code is kept.
                await self.suppressions.suppress(
                    claimed[0].email_key, Reason.REFUSED, "smtp", detail=decided.detail
                )
        elif decided.outcome is Outcome.HELD:
            await self.deliveries.hold(keys, reason, pause)
        else:
            await self.deliveries.retry_later(keys, reason, decided.delay)
            logger.info("deliveries %s: retry in %.1fs: %s", keys, decided.delay, reason)
        return not decided.pause
