"""Pure decisions about a focal point's consent and choices: double opt-in and preferences.

A consenting address gets pilot emails only once its owner confirmed it, by posting the form
behind the link of a confirmation email (`confirm`). A record holds the latest confirmation
request as `confirmation: {number, requested_at, expires_at, answered_at}` (answered once
confirmed) and, once confirmed, `confirmed_at`. What the person chose in the preference centre
lives in `preferences` (`themes`, `language`, `frequency`) and wins over their survey answers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.events import LANGUAGES

IMMEDIATE = "immediate"
WEEKLY = "weekly"
FREQUENCIES = (IMMEDIATE, WEEKLY)


def confirmed(record: dict[str, Any]) -> bool:
    """Whether the owner of the address confirmed it (and has not withdrawn since)."""
    return record.get("confirmed_at") is not None


def receives_pilots(record: dict[str, Any], *, require_confirmation: bool = True) -> bool:
    """Whether pilot emails may go to this focal point now."""
    if not record.get("consent") or record.get("unsubscribed"):
        return False
    return confirmed(record) or not require_confirmation


def codes(record: dict[str, Any]) -> list[str]:
    """The codes pilots are matched on: the themes the person chose, else their survey's."""
    chosen = (record.get("preferences") or {}).get("themes")
    return list(chosen) if chosen is not None else list(record.get("codes", []))


def language(record: dict[str, Any]) -> str:
    """The language emails and pages use: the person's choice, else their survey's."""
    chosen = (record.get("preferences") or {}).get("language")
    return str(chosen or record.get("language") or "en")


def frequency(record: dict[str, Any]) -> str:
    """`immediate` (the default) or `weekly` (matched pilots held for the weekly digest)."""
    chosen = (record.get("preferences") or {}).get("frequency")
    return str(chosen) if chosen in FREQUENCIES else IMMEDIATE


class Step(enum.Enum):
    """What a consenting response does about confirmation."""

    NOTHING = "nothing"  # confirmed and subscribed already, or asked too recently
    KEEP = "keep"  # a request is open: make sure its email exists (a crash may have cut it)
    NEW = "new"  # send a new request


@dataclass(frozen=True)
class Request:
    """A confirmation request: the one email with the link that confirms."""

    number: int
    requested_at: datetime
    expires_at: datetime

    def document(self) -> dict[str, Any]:
        """As stored in the focal point's record."""
        return {
            "number": self.number,
            "requested_at": self.requested_at,
            "expires_at": self.expires_at,
        }


def current_request(record: dict[str, Any]) -> Request | None:
    """The latest confirmation request of a record, if any."""
    stored = record.get("confirmation")
    if not stored:
        return None
    return Request(int(stored["number"]), stored["requested_at"], stored["expires_at"])


def confirmation_step(
    record: dict[str, Any],
    now: datetime,
    *,
    latest: bool,
    received_at: datetime,
    ttl: timedelta,
    resend_after: timedelta,
) -> tuple[Step, Request | None]:
    """What to do about confirmation after a consenting response was registered.

    No request while the person is confirmed and subscribed. A request still open is kept
    (the same email, sent once, however often the form is filled in). A new request only when
    none was made within `resend_after`: whoever types someone else's address into the form
    cannot flood their mailbox. Nor does a response that is not the `latest` of the record
    (older than what the registry holds) or was received before the latest request (a replay
    of the topic). An unsubscribed person gets a request too, since confirming is the
    one way back; the form itself never lifts an unsubscribe.
    """
    if not record.get("consent"):
        return Step.NOTHING, None
    if confirmed(record) and not record.get("unsubscribed"):
        return Step.NOTHING, None
    request = current_request(record)
    if request is not None and open_request(record, request.number, now):
        return Step.KEEP, request
    if not latest or (
        request is not None
        and (now < request.requested_at + resend_after or received_at <= request.requested_at)
    ):
        return Step.NOTHING, request
    return Step.NEW, Request((request.number if request else 0) + 1, now, now + ttl)


def open_request(record: dict[str, Any], number: int, now: datetime) -> bool:
    """Whether request `number` of `record` can still be confirmed."""
    request = current_request(record)
    return (
        request is not None
        and request.number == number
        and now < request.expires_at
        and "answered_at" not in record["confirmation"]  # each request confirms once
        and not record.get("expired")
    )


def next_digest_at(after: datetime, weekday: int, hour: int) -> datetime:
    """The first weekly digest time (`weekday` 0 = Monday, `hour` UTC) at or after `after`."""
    start = after.replace(hour=hour, minute=0, second=0, microsecond=0)
    slot = start + timedelta(days=(weekday - after.weekday()) % 7)
    return slot if slot >= after else slot + timedelta(days=7)


@dataclass(frozen=True)
class Choices:
    """What a person may set in the preference centre."""

    themes: tuple[str, ...]
    language: str
    frequency: str


def parse_choices(form: dict[str, list[str]], known_codes: set[str]) -> Choices:
    """The preference form's fields; `ValueError` naming the field and the rule otherwise."""
    themes = tuple(dict.fromkeys(form.get("themes", [])))
    unknown = [code for code in themes if code not in known_codes]
    if unknown:
        raise ValueError(f"themes: not a taxonomy code: {', '.join(unknown)}")
    [chosen_language] = form.get("language", ["en"])[:1] or ["en"]
    if chosen_language not in LANGUAGES:
        raise ValueError(f"language: must be one of {', '.join(LANGUAGES)}")
    [chosen_frequency] = form.get("frequency", [IMMEDIATE])[:1] or [IMMEDIATE]
    if chosen_frequency not in FREQUENCIES:
        raise ValueError(f"frequency: must be one of {', '.join(FREQUENCIES)}")
    return Choices(themes, chosen_language, chosen_frequency)
