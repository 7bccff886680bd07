"""`kobotoolbox`: a KoboToolbox REST Service posting each submission as JSON.

Kobo signs nothing: the REST Service sends the secret as the basic-auth password (any user name)
or as a custom `X-Webhook-Token` header. Fields are XLSForm names with group slash paths; select
values are XLSForm choice names (`sdg_11`, `urban_planning`, `vn`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.intake.sources import Delivery, Rejected
from services.intake.sources.canonical import (
    Converters,
    assemble,
    envelope,
    field_names,
    label_aliases,
    platform_id,
    timestamp,
)
from services.intake.sources.credentials import basic_password, matches_any
from services.intake.sources.generic import parse_json_object
from services.intake.sources.vocabulary import (
    Unmapped,
    Vocabulary,
    alpha_2,
    brief,
    consent,
    language_code,
    vocabularies,
)
from services.intake.surveys import SurveyDefinition

TOKEN_HEADER = "x-webhook-token"

# The shared questionnaire core (FORMS.md); a survey file may name other fields.
DEFAULT_FIELDS = {
    "respondent_type": "respondent/type",
    "organization": "respondent/organization",
    "country": "respondent/country",
    "city": "respondent/city",
    "development_priorities": "priorities/sdgs",
    "capacity_needs": "needs/capacity",
    "collaboration_interests": "collaboration/interests",
    "consent": "contact/consent",
    "contact_name": "contact/name",
    "contact_email": "contact/email",
    "language": "contact/language",
}
# Submission metadata, not answers: Kobo's `_...` fields, `formhub/uuid`, `meta/...`.
_METADATA_PREFIXES = ("_", "formhub/", "meta/")


def _choices(vocabulary: Vocabulary, aliases: Mapping[str, str]) -> Any:
    def convert(value: Any) -> list[str]:
        if not isinstance(value, str):
            raise Unmapped(f"expected space-separated choices, got {brief(value)}")
        # XLSForm choice names hold no `-`: the form writes `urban_planning` for `urban-planning`.
        return [vocabulary.code(choice.replace("_", "-"), aliases) for choice in value.split()]

    return convert


def _single(vocabulary: Vocabulary, aliases: Mapping[str, str]) -> Any:
    return lambda value: vocabulary.code(value, aliases)


def converters(aliases: Mapping[str, str]) -> Converters:
    """Kobo's choice names to codes."""
    words = vocabularies()
    return Converters(
        respondent_type=_single(words.respondent_types, aliases),
        country=alpha_2,
        development_priorities=_choices(words.sdgs, aliases),
        capacity_needs=_choices(words.themes, aliases),
        collaboration_interests=_choices(words.interests, aliases),
        consent=consent,
        language=language_code,
    )


class KoboToolboxPlatform:
    """KoboToolbox REST Service deliveries."""

    name = "kobotoolbox"
    content_types = frozenset({"application/json"})

    def authenticate(self, delivery: Delivery, secrets: list[str]) -> None:
        """Accept the secret as the basic-auth password or as the `X-Webhook-Token` header."""
        presented = [
            secret
            for secret in (basic_password(delivery.headers), delivery.headers.get(TOKEN_HEADER))
            if secret is not None
        ]
        if not presented:
            raise Rejected(
                401,
                "Unauthorized",
                "basic auth (the secret as password) or an X-Webhook-Token header is required",
            )
        if not any(matches_any(secret, secrets) for secret in presented):
            raise Rejected(401, "Unauthorized", "the credentials match no configured secret")

    def adapt(
        self, delivery: Delivery, survey: SurveyDefinition, received_at: datetime
    ) -> dict[str, Any]:
        """The canonical response of one Kobo submission."""
        return self.adapt_submission(parse_json_object(delivery.body), survey, received_at)

    def adapt_submission(
        self, submission: Mapping[str, Any], survey: SurveyDefinition, received_at: datetime
    ) -> dict[str, Any]:
        """The same, from the submission as a JSON object (a webhook body or an export's row)."""
        uuid = submission.get("_uuid")
        if uuid is None and isinstance(submission.get("meta/instanceID"), str):
            uuid = submission["meta/instanceID"].removeprefix("uuid:")
        response_id = platform_id(uuid, "_uuid")
        submitted_at = timestamp(submission.get("_submission_time"), "_submission_time")
        aliases = label_aliases(survey, self.name)
        answers = {
            field: value
            for field, value in submission.items()
            if not field.startswith(_METADATA_PREFIXES)
        }
        canonical = assemble(
            answers, field_names(DEFAULT_FIELDS, survey, self.name), converters(aliases)
        )
        return envelope(self.name, response_id, survey, submitted_at, received_at, canonical)


PLATFORM = KoboToolboxPlatform()
