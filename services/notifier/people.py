"""The use cases behind the pages a person reaches from their links (unsubscribe, confirm,
preferences) and the operators' delivery list. A link names a person by an opaque id, signed in
its token (`unsubscribe`); nothing here reads an address from a request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.notifier import consent, unsubscribe
from services.notifier.ports import DeliveriesPort, RegistryPort
from services.notifier.records import DeliveryStatus, FocalPoint
from services.notifier.unsubscribe import LinkKeys


@dataclass(frozen=True)
class Sent:
    """One email sent to a person, as their page shows it (None: a confirmation email)."""

    title: str | None
    at: datetime | None


@dataclass(frozen=True)
class People:
    """A person's record found by a link, what they chose, and what was sent to them."""

    registry: RegistryPort
    deliveries: DeliveriesPort
    keys: LinkKeys

    def link_id(self, token: str, purpose: str = unsubscribe.UNSUBSCRIBE) -> str:
        """The opaque id of a genuine link token for `purpose` (`unsubscribe.LinkKeys.verify`:
        raises `InvalidToken`, or `OutdatedToken` for the old format)."""
        return self.keys.verify(token, purpose)

    async def of_link(self, link_id: str) -> FocalPoint | None:
        """The record a link names, if any."""
        return await self.registry.by_link(link_id)

    async def request_of(self, link_id: str) -> tuple[FocalPoint, int] | None:
        """(record, request number) a confirmation link names, if any."""
        return await self.registry.request_of(link_id)

    async def unsubscribe(self, link_id: str) -> FocalPoint | None:
        """Stop all mail to the person a link names, at once; their record as it was, if any."""
        record = await self.registry.by_link(link_id)
        if record is not None:
            await self.registry.unsubscribe(record.key)
        return record

    async def choose(self, record: FocalPoint, choices: consent.Choices | None) -> FocalPoint:
        """Store what the person chose (None: unsubscribe); their record after it."""
        key = record.key
        if choices is None:
            await self.registry.unsubscribe(key)
        else:
            await self.registry.set_preferences(key, choices)
        return await self.registry.get(key) or record

    async def sent_to(self, email_key: str) -> list[Sent]:
        """What was sent to the person, oldest first."""
        sent = []
        for delivery in await self.deliveries.of_focal_point(email_key):
            if delivery.state != "sent":
                continue
            if delivery.pilot_id is None:  # the email of a confirmation request
                what = None
            else:
                pilot = await self.registry.pilot(delivery.pilot_id)
                what = pilot.title if pilot else delivery.pilot_id
            sent.append(Sent(what, delivery.sent_at))
        return sent

    async def deliveries_of(self, pilot_id: str) -> list[DeliveryStatus]:
        """Every delivery of one pilot (the operators' list)."""
        return await self.deliveries.for_pilot(pilot_id)
