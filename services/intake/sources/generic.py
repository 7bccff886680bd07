"""`generic`: our canonical JSON, signed as a Standard Webhook (`webhook-*` headers)."""

from __future__ import annotations

import binascii
import json
import logging
from datetime import datetime
from typing import Any

from standardwebhooks.webhooks import (
    EmptyWebhookSecretError,
    Webhook,
    WebhookVerificationError,
)

from services.intake.sources import Delivery, Rejected
from services.intake.sources.vocabulary import brief
from services.intake.surveys import SurveyDefinition

logger = logging.getLogger(__name__)
_REQUIRED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class GenericPlatform:
    """Standard Webhooks signature check and the canonical body, as-is."""

    name = "generic"
    content_types = frozenset({"application/json"})

    def authenticate(self, delivery: Delivery, secrets: list[str]) -> None:
        """Accept when any of `secrets` signed `id.timestamp.body` within five minutes of now."""
        missing = [name for name in _REQUIRED_HEADERS if not delivery.headers.get(name)]
        if missing:
            raise Rejected(401, "Unauthorized", f"missing header(s): {', '.join(missing)}")
        headers = {name: delivery.headers[name] for name in _REQUIRED_HEADERS}
        reason = "no signature matches a configured secret"
        for secret in secrets:
            try:
                Webhook(secret).verify(delivery.body, headers, json_parse=False)
                return
            except WebhookVerificationError as exc:
                reason = _reason(str(exc))
                if "timestamp" in reason:
                    break  # the same for every secret
            except (ValueError, binascii.Error, UnicodeDecodeError):
                reason = "the webhook-signature header is malformed"
            except EmptyWebhookSecretError:
                logger.error("an empty secret is configured for the generic source; it is ignored")
        raise Rejected(401, "Unauthorized", reason)

    def adapt(
        self, delivery: Delivery, survey: SurveyDefinition, received_at: datetime
    ) -> dict[str, Any]:
        """The body is the canonical response without `source` and `received_at`."""
        payload = parse_json_object(delivery.body)
        raw_id = payload.get("response_id")
        # Only a string is an id; anything else is left for validation to name.
        platform_id = raw_id.removeprefix(f"{self.name}:") if isinstance(raw_id, str) else raw_id
        body_survey = payload.get("survey_id", survey.id)
        if body_survey != survey.id:
            mismatch = (
                f"survey_id {brief(body_survey)} in the body does not match {survey.id!r} in "
                "the URL"
            )
            raise Rejected(
                422,
                "Invalid response",
                mismatch,
                errors=[{"field": "survey_id", "rule": "survey-of-url", "message": mismatch}],
            )
        return {
            **payload,
            "response_id": f"{self.name}:{platform_id}"
            if isinstance(platform_id, str) and platform_id
            else platform_id,
            "survey_id": survey.id,
            "source": self.name,
            "received_at": received_at,
        }


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or `Rejected(400)` saying what is wrong with it."""
    try:
        payload = json.loads(body)
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of 4,300+ digits
        raise Rejected(400, "Malformed body", f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise Rejected(400, "Malformed body", "the body nests JSON too deeply") from exc
    if not isinstance(payload, dict):
        raise Rejected(400, "Malformed body", "the body must be a JSON object")
    return payload


def _reason(message: str) -> str:
    lowered = message.lower()
    if "too old" in lowered or "too new" in lowered:
        return "webhook-timestamp is more than 5 minutes away from now"
    if "invalid signature headers" in lowered:
        return "webhook-timestamp is not a Unix timestamp"
    return "no signature matches a configured secret"


PLATFORM = GenericPlatform()
