"""What providers report, read from their documented shapes (pure): Amazon SES bounce and
complaint notifications (the `Message` of an SNS notification) and Postmark's bounce and spam
complaint webhooks, each turned into one `Report` per recipient, by key (never the address).
A shape that does not say what it must raises `Invalid`, naming the field; an event that
suppresses nothing gives no report and says why (`Parsed.ignored`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from services.notifier.suppressions import Event, Report

# The one function from an address to the focal point's key (`Registry.key`, a keyed hash),
# given by the caller.
KeyOf = Callable[[str], str]

SES, POSTMARK = "ses", "postmark"

# Postmark bounce `Type`s that tell something about the recipient's mailbox; every other type
# (auto-replies, challenge emails, filters and errors of Postmark's own) suppresses nothing.
POSTMARK_TYPES = {
    "HardBounce": Event.BOUNCE,
    "BadEmailAddress": Event.BOUNCE,
    "ManuallyDeactivated": Event.BOUNCE,
    "SoftBounce": Event.SOFT_BOUNCE,
    "Transient": Event.SOFT_BOUNCE,
    "DnsError": Event.SOFT_BOUNCE,
    "SpamComplaint": Event.COMPLAINT,
}
# SES bounce types: Permanent is a hard bounce; Transient and Undetermined count as soft.
SES_BOUNCE_TYPES = {
    "Permanent": Event.BOUNCE,
    "Transient": Event.SOFT_BOUNCE,
    "Undetermined": Event.SOFT_BOUNCE,
}


class Invalid(Exception):
    """A report that does not say what it must; `field` names the place."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Parsed:
    """What a provider's body reports: one `Report` per recipient, or nothing (`ignored`)."""

    reports: list[Report]
    ignored: str | None = None


def email_key_of(address: Any, field: str, key_of: KeyOf) -> str:
    """The key of a reported address (`"Name" <a@b>` or `a@b`)."""
    if not isinstance(address, str):
        raise Invalid(field, "must be an email address")
    _, bare = parseaddr(address)
    local, at, domain = bare.rpartition("@")
    if not (at and local and "." in domain):
        raise Invalid(field, "must be an email address")
    return key_of(bare)


def _text(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise Invalid(field, "is required: a non-empty string or number")
    return str(value)


def parse_ses(message: str, key_of: KeyOf) -> Parsed:
    """The reports of an SES notification (the SNS message's `Message`), pure."""
    try:
        notification = json.loads(message)
    except ValueError:
        raise Invalid("Message", "must be an SES notification in JSON") from None
    if not isinstance(notification, dict):
        raise Invalid("Message", "must be an SES notification (a JSON object)")
    # `notificationType` from identity notifications, `eventType` from event publishing.
    kind = notification.get("notificationType", notification.get("eventType"))
    if kind == "Bounce":
        return _ses_recipients(
            notification, "bounce", "bouncedRecipients", _ses_bounce_event, key_of
        )
    if kind == "Complaint":
        return _ses_recipients(
            notification, "complaint", "complainedRecipients", _ses_complaint, key_of
        )
    if not isinstance(kind, str):
        raise Invalid("Message.notificationType", "is required")
    return Parsed([], ignored=f"SES {kind} notifications suppress nothing")


def _ses_bounce_event(details: dict[str, Any]) -> Event | None:
    bounce_type = details.get("bounceType")
    event = SES_BOUNCE_TYPES.get(bounce_type) if isinstance(bounce_type, str) else None
    if event is None:
        raise Invalid("Message.bounce.bounceType", "must be Permanent, Transient or Undetermined")
    return event


def _ses_complaint(details: dict[str, Any]) -> Event | None:
    # A feedback report saying the message is *not* spam is no complaint.
    return None if details.get("complaintFeedbackType") == "not-spam" else Event.COMPLAINT


def _ses_recipients(
    notification: dict[str, Any],
    name: str,
    recipients: str,
    event_of: Callable[[dict[str, Any]], Event | None],
    key_of: KeyOf,
) -> Parsed:
    details = notification.get(name)
    where = f"Message.{name}"
    if not isinstance(details, dict):
        raise Invalid(where, "is required (an object)")
    event: Event | None = event_of(details)
    report_id = _text(details.get("feedbackId"), f"{where}.feedbackId")
    listed = details.get(recipients)
    if not isinstance(listed, list) or not listed:
        raise Invalid(f"{where}.{recipients}", "is required (a non-empty list)")
    keys = []
    for n, recipient in enumerate(listed):
        field = f"{where}.{recipients}[{n}].emailAddress"
        address = recipient.get("emailAddress") if isinstance(recipient, dict) else None
        keys.append(email_key_of(address, field, key_of))
    if event is None:
        return Parsed([], ignored="a feedback report of type not-spam suppresses nothing")
    return Parsed([Report(SES, report_id, key, event) for key in dict.fromkeys(keys)])


def parse_postmark(body: Any, key_of: KeyOf) -> Parsed:
    """The report of a Postmark bounce or spam complaint webhook body, pure."""
    if not isinstance(body, dict):
        raise Invalid("(body)", "must be a JSON object")
    record_type = body.get("RecordType")
    if record_type not in ("Bounce", "SpamComplaint"):
        if not isinstance(record_type, str):
            raise Invalid("RecordType", "is required")
        return Parsed([], ignored=f"Postmark {record_type} records suppress nothing")
    bounce_type = body.get("Type", record_type)
    if not isinstance(bounce_type, str):
        raise Invalid("Type", "must be a string")
    event = Event.COMPLAINT if record_type == "SpamComplaint" else POSTMARK_TYPES.get(bounce_type)
    report_id = _text(body.get("ID"), "ID")
    key = email_key_of(body.get("Email"), "Email", key_of)
    if event is None:
        return Parsed([], ignored=f"Postmark {bounce_type} bounces suppress nothing")
    return Parsed([Report(POSTMARK, report_id, key, event)])
