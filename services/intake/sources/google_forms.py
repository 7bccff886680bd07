"""`google-forms`: the Apps Script bridge (docs/google-forms-bridge.gs) posting each form response.

The body is `{"response_id", "submitted_at", "answers": {"<question title>": value}}` with a bearer
token; question titles are the Typeform refs of the shared core.
"""

from __future__ import annotations

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
)
from services.intake.sources.credentials import require_token
from services.intake.sources.generic import parse_json_object
from services.intake.sources.typeform import DEFAULT_FIELDS
from services.intake.surveys import SurveyDefinition


class GoogleFormsPlatform:
    """Deliveries of the Google Forms Apps Script bridge."""

    name = "google-forms"
    content_types = frozenset({"application/json"})

    def authenticate(self, delivery: Delivery, secrets: list[str]) -> None:
        """Accept the secret as a bearer token (or the `token` query parameter)."""
        require_token(delivery, secrets)

    def adapt(
        self, delivery: Delivery, survey: SurveyDefinition, received_at: datetime
    ) -> dict[str, Any]:
        """The canonical response of one bridged form response."""
        payload = parse_json_object(delivery.body)
        response_id = platform_id(payload.get("response_id"), "response_id")
        submitted_at = timestamp(payload.get("submitted_at"), "submitted_at")
        answers = payload.get("answers")
        if not isinstance(answers, dict):
            raise Rejected(400, "Malformed body", "`answers` must be an object of question titles")
        canonical = assemble(
            answers,
            field_names(DEFAULT_FIELDS, survey, self.name),
            label_converters(label_aliases(survey, self.name)),
        )
        return envelope(self.name, response_id, survey, submitted_at, received_at, canonical)


PLATFORM = GoogleFormsPlatform()
