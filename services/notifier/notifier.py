"""The notifier's use cases: keep the registry, turn pilots into deliveries, send what is due."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage

from services.notifier import emails, unsubscribe
from services.notifier.deliveries import Deliveries, backoff
from services.notifier.mailer import Mailer, PermanentMailError, TransientMailError
from services.notifier.matching import candidates_query, shared_codes
from services.notifier.registry import Registry
from services.notifier.settings import NotifierSettings
from shared.events import PilotAnnounced, SurveyResponse
from shared.mongo import Document

logger = logging.getLogger(__name__)


@dataclass
class Notifier:
    """Registry in, deliveries out."""

    settings: NotifierSettings
    registry: Registry
    deliveries: Deliveries
    mailer: Mailer
    _work: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_response(self, response: SurveyResponse) -> int:
        """Register the response's focal point; returns the deliveries of open pilots it got."""
        record = await self.registry.register(response)
        if record is None or record["unsubscribed"]:
            return 0
        created = 0
        for pilot in await self.registry.open_pilots(datetime.now(UTC).date()):
            created += await self._deliver(pilot, record)
        return created

    async def on_pilot(self, pilot: PilotAnnounced) -> int:
        """Create a delivery for every focal point the pilot matches; returns how many are new."""
        await self.registry.remember_pilot(pilot)
        created = 0
        async for record in self.registry.matching(candidates_query(pilot)):
            created += await self._deliver(pilot, record)
        logger.info("pilot %s: %d new deliveries", pilot.pilot_id, created)
        return created

    async def _deliver(self, pilot: PilotAnnounced, record: Document) -> int:
        codes = shared_codes(pilot, record["codes"], record["country"])
        if not codes or not record["consent"]:
            return 0
        created = await self.deliveries.create(pilot.pilot_id, record["_id"], codes)
        if created:
            self._work.set()  # wake the dispatcher now rather than at its next poll
        return int(created)

    async def send_due(self) -> bool:
        """Send one due delivery; False when nothing is due."""
        delivery = await self.deliveries.claim_due()
        if delivery is None:
            return False
        key = delivery["_id"]
        record = await self.registry.get(delivery["email_key"])
        pilot = await self.registry.pilot(delivery["pilot_id"])
        if record is None or pilot is None or record["unsubscribed"] or not record["consent"]:
            await self.deliveries.mark_failed(key, "focal point unsubscribed or withdrew consent")
            return True
        try:
            message = self.compose(pilot, record, delivery["codes"], key)
        except ValueError as exc:  # e.g. a header value that would inject a header
            await self.deliveries.mark_failed(key, f"cannot compose the email: {exc}")
            return True
        try:
            await self.mailer.send(message)
        except TransientMailError as exc:
            delay = backoff(
                delivery["attempts"],
                self.settings.retry_first_delay_seconds,
                self.settings.retry_max_delay_seconds,
            )
            if delivery["attempts"] >= self.settings.max_attempts:
                await self.deliveries.mark_failed(key, f"gave up after retries: {exc}")
            else:
                await self.deliveries.retry_later(key, str(exc), delay)
            logger.warning("delivery %s: transient failure, retry in %.1fs: %s", key, delay, exc)
            return False  # the server is unwell: let the loop pause before the next one
        except PermanentMailError as exc:
            await self.deliveries.mark_failed(key, str(exc))
            return True
        await self.deliveries.mark_sent(key, str(message["Message-ID"]))
        return True

    def compose(
        self, pilot: PilotAnnounced, record: Document, codes: list[str], key: str
    ) -> EmailMessage:
        """The email of one delivery."""
        token = unsubscribe.sign(record["_id"], self.settings.unsubscribe_secret.get_secret_value())
        url = f"{self.settings.public_base_url.rstrip('/')}/v1/unsubscribe?token={token}"
        recipient = emails.Recipient(record["email"], record["name"], record["language"])
        return emails.compose(
            pilot,
            recipient,
            codes,
            sender=self.settings.mail_from,
            unsubscribe_url=url,
            delivery_key=key,
        )

    async def run_dispatcher(self) -> None:
        """Send due deliveries until cancelled.

        It sleeps when nothing is due: until this replica creates a delivery, or for the poll
        interval, after which it looks for retries that came due and for deliveries whose
        sender died (created by this replica or another).
        """
        while True:
            self._work.clear()
            try:
                if await self.send_due():
                    continue
            except Exception:
                logger.exception("dispatcher step failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._work.wait(), self.settings.poll_interval_seconds)
