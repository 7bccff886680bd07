"""`typeform`: Typeform's `form_response` webhook, signed with `Typeform-Signature`.

Answers are found by `field.ref`; a delivery without refs is joined on `field.id` with
`form_response.definition.fields`. Choice labels, country and language names become codes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.intake.sources import Delivery, Rejected
from services.intake.sources.canonical import (
    assemble,
    envelope,
    field_names,
    label_aliases,
    label_converters,
    platform_id,
    timestamp,
    unmappable,
)
from services.intake.sources.generic import parse_json_object
from services.intake.sources.vocabulary import brief
from services.intake.surveys import SurveyDefinition

SIGNATURE_HEADER = "typeform-signature"

# The shared questionnaire core (FORMS.md): Typeform refs. The Google Forms bridge uses the same.
DEFAULT_FIELDS = {
    "respondent_type": "respondent_type",
    "organization": "organization",
    "country": "country",
    "city": "city",
    "development_priorities": "priorities",
    "capacity_needs": "capacity_needs",
    "collaboration_interests": "collaboration_interests",
    "consent": "consent",
    "contact_name": "contact_name",
    "contact_email": "contact_email",
    "language": "language",
}


def signature(body: bytes, secret: str) -> str:
    """The `Typeform-Signature` value of `body` under `secret`."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def answer_value(answer: Mapping[str, Any]) -> Any:
    """The value of one Typeform answer, by its `type` (text, choice, choices, boolean, ...)."""
    kind = answer.get("type")
    if kind == "choice":
        choice = answer.get("choice")
        if isinstance(choice, dict):
            return choice.get("label", choice.get("other"))
        return choice
    if kind == "choices":
        choices = answer.get("choices")
        if isinstance(choices, dict):
            labels = choices.get("labels", [])
            other = choices.get("other")
            return [*labels, other] if isinstance(labels, list) and other else labels
        return choices
    return answer.get(kind) if isinstance(kind, str) else None


def answers_by_ref(form_response: Mapping[str, Any]) -> dict[str, Any]:
    """`{ref: value}` of every answer; the field id stands in when no ref can be found."""
    definition = form_response.get("definition")
    fields = definition.get("fields") if isinstance(definition, dict) else None
    refs = {
        field["id"]: field["ref"]
        for field in fields or []
        if isinstance(field, dict) and isinstance(field.get("id"), str) and field.get("ref")
    }
    answers = form_response.get("answers", [])
    if not isinstance(answers, list):
        raise Rejected(400, "Malformed body", "form_response.answers must be a list")
    found: dict[str, Any] = {}
    for answer in answers:
        if not isinstance(answer, dict) or not isinstance(answer.get("field"), dict):
            raise Rejected(400, "Malformed body", "each answer must be an object with a `field`")
        field = answer["field"]
        field_id = field.get("id")
        ref = field.get("ref") or (refs.get(field_id) if isinstance(field_id, str) else None)
        ref = ref or field_id
        if not isinstance(ref, str) or not ref:
            raise Rejected(
                400, "Malformed body", "an answer has neither `field.ref` nor `field.id`"
            )
        found[ref] = answer_value(answer)
    return found


class TypeformPlatform:
    """Typeform webhook deliveries."""

    name = "typeform"
    content_types = frozenset({"application/json"})

    def authenticate(self, delivery: Delivery, secrets: list[str]) -> None:
        """Accept when `Typeform-Signature` is the HMAC-SHA256 of the body under a secret."""
        presented = delivery.headers.get(SIGNATURE_HEADER, "").strip()
        if not presented:
            raise Rejected(401, "Unauthorized", "missing header: Typeform-Signature")
        if not presented.startswith("sha256="):
            raise Rejected(401, "Unauthorized", "Typeform-Signature must start with 'sha256='")
        valid = False
        for secret in secrets:
            valid |= hmac.compare_digest(
                presented.encode(), signature(delivery.body, secret).encode()
            )
        if not valid:
            raise Rejected(401, "Unauthorized", "no signature matches a configured secret")

    def adapt(
        self, delivery: Delivery, survey: SurveyDefinition, received_at: datetime
    ) -> dict[str, Any]:
        """The canonical response of one `form_response` event."""
        payload = parse_json_object(delivery.body)
        if payload.get("event_type", "form_response") != "form_response":
            raise unmappable(
                [
                    {
                        "field": "event_type",
                        "rule": "event-type",
                        "message": f"'event_type': {brief(payload.get('event_type'))} "
                        "is not 'form_response'",
                    }
                ]
            )
        form_response = payload.get("form_response")
        if not isinstance(form_response, dict):
            raise Rejected(400, "Malformed body", "the body has no `form_response` object")
        return self.adapt_form_response(form_response, survey, received_at)

    def adapt_form_response(
        self, form_response: Mapping[str, Any], survey: SurveyDefinition, received_at: datetime
    ) -> dict[str, Any]:
        """The same, from the `form_response` object (a webhook's or a Responses API item)."""
        token = platform_id(form_response.get("token"), "form_response.token")
        submitted_at = timestamp(form_response.get("submitted_at"), "form_response.submitted_at")
        canonical = assemble(
            answers_by_ref(form_response),
            field_names(DEFAULT_FIELDS, survey, self.name),
            label_converters(label_aliases(survey, self.name)),
        )
        return envelope(self.name, token, survey, submitted_at, received_at, canonical)


PLATFORM = TypeformPlatform()
