"""Typed records of what the notifier's use cases work on, read from its stores' documents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from services.notifier.matching import focal_point_codes
from shared.events import PilotAnnounced, SurveyResponse

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


@dataclass(frozen=True)
class DeliveryStatus:
    """Where one stored delivery stands, as the operators' list and a person's page show it: a
    pilot email (`pilot_id`) or the email of confirmation request `request`, its state and what
    happened to it. Read from every shape `deliveries` and `erasure` store: fresh, claimed,
    settled, stripped by retention (no `codes`, `last_error`, `message_id`) or anonymised by an
    erasure (no `email_key`, no `next_attempt_at`)."""

    key: str  # the record's `_id`
    state: str  # pending | sending | sent | failed | suppressed | cancelled (erased unsent)
    attempts: int
    created_at: datetime
    email_key: str | None = None  # None once anonymised (erasure)
    pilot_id: str | None = None  # None for the email of a confirmation request
    request: int | None = None
    codes: tuple[str, ...] = ()
    held: int = 0
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    settled_at: datetime | None = None  # when it was suppressed
    last_error: str | None = None  # the SMTP reply, or the reason it was suppressed
    message_id: str | None = None  # shared by the deliveries of one digest
    erasure_id: str | None = None
    erased_at: datetime | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> DeliveryStatus:
        """The record of a stored delivery document (`deliveries`), whatever its shape."""
        confirmation = document.get("kind") == CONFIRMATION
        # An erasure copies a confirmation's `request` as it found it, so it may be null.
        request = document.get("request") if confirmation else None
        return cls(
            key=str(document["_id"]),
            state=str(document["state"]),
            attempts=int(document["attempts"]),
            created_at=document["created_at"],
            email_key=_text(document.get("email_key")),
            pilot_id=None if confirmation else str(document["pilot_id"]),
            request=None if request is None else int(request),
            codes=tuple(document.get("codes", ())),
            held=int(document.get("held", 0)),
            next_attempt_at=document.get("next_attempt_at"),
            sent_at=document.get("sent_at"),
            failed_at=document.get("failed_at"),
            settled_at=document.get("settled_at"),
            last_error=_text(document.get("last_error")),
            message_id=_text(document.get("message_id")),
            erasure_id=_text(document.get("erasure_id")),
            erased_at=document.get("erased_at"),
        )


@dataclass(frozen=True)
class Suppression:
    """One address on the suppression list, by its focal point's key (`suppressions`): why
    (a `suppressions.Reason` value), from which source, the provider's report id, when."""

    key: str  # the focal point's `email_key`: the record's `_id`
    reason: str  # as stored, so a listing never fails on a reason it does not know
    source: str  # "smtp", or the provider that reported it
    at: datetime
    report_id: str | None = None  # None when the SMTP server refused at send time
    detail: str | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Suppression:
        """The record of a stored suppression document (`notifier_suppressions`)."""
        return cls(
            key=str(document["_id"]),
            reason=str(document["reason"]),
            source=str(document["source"]),
            at=document["at"],
            report_id=_text(document.get("report_id")),
            detail=_text(document.get("detail")),
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
    response_revision: int = 1  # the revision of that response (`SurveyResponse.revision`)
    # Since when the latest review of that response rejects or retracts it (`reviews`): no
    # mail while it does.
    withheld_at: datetime | None = None
    revision: int = 0  # bumped by every change; the match index keeps the newest
    request: Request | None = None  # the latest confirmation request
    confirmed_at: datetime | None = None
    expired: bool = False  # never confirmed in time: name, address and city dropped
    preferences: Preferences | None = None
    erasure_id: str | None = None  # a tombstone: the erasure request that made it
    erased_at: datetime | None = None

    @property
    def withheld(self) -> bool:
        """Whether the latest review of the record's response rejects or retracts it."""
        return self.withheld_at is not None

    def is_latest(self, survey_id: str, response_id: str) -> bool:
        """Whether the record comes from that response (not from a later one)."""
        return (self.survey_id, self.response_id) == (survey_id, response_id)


@dataclass(frozen=True)
class Refused:
    """A response whose write the database refuses for what it is (`shared.failures`): the
    same write would be refused at every attempt. `error` as the write raised it."""

    error: Exception


def first_record(key: str, response: SurveyResponse, withheld_at: datetime | None) -> FocalPoint:
    """The record `response` makes of a focal point the registry holds nothing of yet: what
    the latest response says (a withdrawal keeps no name, address or city), subscribed,
    revision 1, `withheld_at` when a review noted before it withholds it. Times as the
    database keeps them (milliseconds), so the record is what reading it back gives."""
    focal_point = response.focal_point
    if focal_point is None:
        raise ValueError("focal_point: a response without one registers nobody")
    consenting = focal_point.consent
    return FocalPoint(
        key,
        email=str(focal_point.email) if consenting else None,
        name=focal_point.name if consenting else None,
        survey_language=focal_point.language,
        consent=consenting,
        country=response.respondent.country,
        city=response.respondent.city if consenting else None,
        survey_codes=tuple(focal_point_codes(response)) if consenting else (),
        survey_id=response.survey_id,
        response_id=response.response_id,
        submitted_at=stored_time(response.submitted_at),
        response_revision=response.revision,
        withheld_at=None if withheld_at is None else stored_time(withheld_at),
        revision=1,
    )


def stored_time(moment: datetime) -> datetime:
    """`moment` as BSON keeps it: to the millisecond."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
