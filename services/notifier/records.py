"""Typed records of what the notifier's use cases work on, read from its stores' documents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from services.notifier import consent
from shared.events import PilotAnnounced

CONFIRMATION = "confirmation"  # the `kind` of a confirmation email; pilot deliveries have none


@dataclass(frozen=True)
class Delivery:
    """One claimed delivery: a pilot email (`pilot_id`, `codes`) or the email of confirmation
    request `request` (double opt-in) to the focal point `email_key`."""

    key: str  # the record's `_id`: one per (pilot or request, focal point), ever
    email_key: str
    attempts: int  # attempts claimed so far, this one included
    held: int = 0  # of which made while sending was paused (or postponed): not counted
    pilot_id: str | None = None
    codes: tuple[str, ...] = ()
    request: int | None = None
    created_at: datetime | None = None

    @property
    def is_confirmation(self) -> bool:
        """Whether this is the email of a confirmation request rather than of a pilot."""
        return self.request is not None

    @property
    def counted_attempts(self) -> int:
        """The attempts that count towards MAX_ATTEMPTS (not those made while paused)."""
        return self.attempts - self.held

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Delivery:
        """The record of a stored delivery document (`deliveries`)."""
        confirmation = document.get("kind") == CONFIRMATION
        return cls(
            key=str(document["_id"]),
            email_key=str(document["email_key"]),
            attempts=int(document["attempts"]),
            held=int(document.get("held", 0)),
            pilot_id=None if confirmation else str(document["pilot_id"]),
            codes=tuple(document.get("codes", ())),
            request=int(document["request"]) if confirmation else None,
            created_at=document.get("created_at"),
        )


class Item(NamedTuple):
    """One pilot of an email: the pilot, the codes it matched, its delivery's key."""

    pilot: PilotAnnounced
    codes: list[str]
    key: str


@dataclass(frozen=True)
class FocalPoint:
    """The person an email goes to: address, name, language, the revision their links name,
    and their latest confirmation request."""

    key: str  # `email_key`: the record's `_id`
    email: str
    name: str
    language: str
    revision: int = 0
    request: consent.Request | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> FocalPoint:
        """The record of a stored focal point (`registry`) that has an address."""
        record = dict(document)
        return cls(
            key=str(record["_id"]),
            email=str(record["email"]),
            name=str(record.get("name", "")),
            language=consent.language(record),
            revision=int(record.get("revision", 0)),
            request=consent.current_request(record),
        )
