"""Typed records of what the notifier's use cases work on, read from its stores' documents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

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
class Request:
    """A confirmation request: the one email with the link that confirms (`answered_at` once
    it did)."""

    number: int
    requested_at: datetime
    expires_at: datetime
    answered_at: datetime | None = None


@dataclass(frozen=True)
class Preferences:
    """What the person chose in the preference centre (None: not chosen, the survey's holds)."""

    themes: tuple[str, ...] | None = None
    language: str | None = None
    frequency: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class FocalPoint:
    """A focal point as the registry holds it: what their latest response said, their consent
    and confirmation, what they chose, and the marks of an expiry or an erasure. The rules on it
    are in `consent` (which language, which codes, whether pilots may go to them)."""

    key: str  # `email_key`: the record's `_id`
    email: str | None = None  # None once withdrawn, expired or erased
    name: str | None = None
    survey_language: str | None = None  # as answered; `consent.language` is the one used
    consent: bool = False
    unsubscribed: bool = False
    unsubscribed_at: datetime | None = None
    country: str = ""
    city: str | None = None
    survey_codes: tuple[str, ...] = ()  # as answered; `consent.codes` is what is matched
    survey_id: str | None = None  # with `response_id`, the latest response's identity
    response_id: str | None = None
    submitted_at: datetime | None = None
    revision: int = 0  # bumped by every change; the match index keeps the newest
    request: Request | None = None  # the latest confirmation request
    confirmed_at: datetime | None = None
    expired: bool = False  # never confirmed in time: name, address and city dropped
    preferences: Preferences | None = None
    erasure_id: str | None = None  # a tombstone: the erasure request that made it
    erased_at: datetime | None = None

    def is_latest(self, survey_id: str, response_id: str) -> bool:
        """Whether the record comes from that response (not from a later one)."""
        return (self.survey_id, self.response_id) == (survey_id, response_id)
