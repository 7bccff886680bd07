"""`jotform`: Jotform's webhook, a form post whose `rawRequest` field holds the answers as JSON.

`rawRequest` keys are `q<N>_<name>`: the question number varies from form to form, so fields are
found by `<name>` (the Typeform ref without underscores). The webhook URL, which Jotform echoes in
`webhookURL` with its `token`, is never copied into the event.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from services.intake.sources import Delivery, Rejected
from services.intake.sources.canonical import (
    assemble,
    envelope,
    epoch_milliseconds,
    field_names,
    label_aliases,
    label_converters,
    platform_id,
)
from services.intake.sources.credentials import require_token
from services.intake.surveys import SurveyDefinition

DEFAULT_FIELDS = {
    "respondent_type": "respondenttype",
    "organization": "organization",
    "country": "country",
    "city": "city",
    "development_priorities": "priorities",
    "capacity_needs": "capacityneeds",
    "collaboration_interests": "collaborationinterests",
    "consent": "consent",
    "contact_name": "contactname",
    "contact_email": "contactemail",
    "language": "language",
}
_QUESTION = re.compile(r"^q\d+_(.+)$")


def form_fields(delivery: Delivery) -> dict[str, str]:
    """The posted form's text fields (file parts are ignored), or `Rejected(400)`."""
    if delivery.content_type == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(delivery.body.decode(), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError) as exc:
            raise Rejected(400, "Malformed body", f"the form is not valid: {exc}") from exc
    header = delivery.headers.get("content-type", delivery.content_type)
    try:
        return _multipart_fields(header, delivery.body)
    except Rejected:
        raise
    except Exception as exc:  # the email parser has no single error type for broken input
        raise Rejected(400, "Malformed body", "the multipart body cannot be parsed") from exc


def _multipart_fields(header: str, body: bytes) -> dict[str, str]:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + header.encode("latin-1", "replace") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise Rejected(400, "Malformed body", "the body is not multipart/form-data")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            fields[name] = _decoded(payload, part.get_content_charset())
    return fields


def _decoded(payload: bytes, charset: str | None) -> str:
    try:
        return payload.decode(charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know: read it as UTF-8
        return payload.decode("utf-8", "replace")


def raw_answers(fields: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`({name: value} of every question, the whole rawRequest object)`."""
    raw = fields.get("rawRequest")
    if raw is None:
        raise Rejected(400, "Malformed body", "the form has no `rawRequest` field")
    try:
        request = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # ValueError: also integers of 4,300+ digits
        raise Rejected(400, "Malformed body", f"`rawRequest` is not valid JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise Rejected(400, "Malformed body", "`rawRequest` must be a JSON object")
    answers = {
        match.group(1): value
        for name, value in request.items()
        if (match := _QUESTION.match(name)) is not None
    }
    return answers, request


def _submitted_at(request: dict[str, Any], received_at: datetime) -> datetime:
    # Jotform posts right after the submission; `submitDate` (ms since the epoch) when present.
    value = request.get("submitDate")
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit()):  # "²" is a digit to `isdigit` alone
        return received_at
    return epoch_milliseconds(int(text), "submitDate")


class JotformPlatform:
    """Jotform webhook deliveries."""

    name = "jotform"
    content_types = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})

    def authenticate(self, delivery: Delivery, secrets: list[str]) -> None:
        """Accept the secret as the `token` query parameter or a bearer token."""
        require_token(delivery, secrets)

    def adapt(
        self, delivery: Delivery, survey: SurveyDefinition, received_at: datetime
    ) -> dict[str, Any]:
        """The canonical response of one Jotform submission."""
        fields = form_fields(delivery)
        submission = platform_id(fields.get("submissionID"), "submissionID")
        answers, request = raw_answers(fields)
        canonical = assemble(
            answers,
            field_names(DEFAULT_FIELDS, survey, self.name),
            label_converters(label_aliases(survey, self.name)),
        )
        return envelope(
            self.name,
            submission,
            survey,
            _submitted_at(request, received_at),
            received_at,
            canonical,
        )


PLATFORM = JotformPlatform()
