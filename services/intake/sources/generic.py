"""`generic`: our canonical JSON, signed as a Standard Webhook (`webhook-*` headers)."""

from __future__ import annotations

import binascii
import json
from datetime import datetime
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.intake.sources import Delivery, Rejected
from services.intake.surveys import SurveyDefinition

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
        raise Rejected(401, "Unauthorized", reason)

    def adapt(
        self, delivery: Delivery, survey: SurveyDefinition, received_at: datetime
    ) -> dict[str, Any]:
        """The body is the canonical response without `source` and `received_at`."""
        payload = parse_json_object(delivery.body)
        platform_id = str(payload.get("response_id", "")).removeprefix(f"{self.name}:")
        body_survey = payload.get("survey_id", survey.id)
        if body_survey != survey.id:
            raise Rejected(
                422,
                "Invalid response",
                f"survey_id {body_survey!r} in the body does not match {survey.id!r} in the URL",
            )
        return {
            **payload,
            "response_id": f"{self.name}:{platform_id}" if platform_id else "",
            "survey_id": survey.id,
            "source": self.name,
            "received_at": received_at,
        }


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or `Rejected(400)` saying what is wrong with it."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected(400, "Malformed body", f"the body is not valid JSON: {exc}") from exc
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
