"""`kobotoolbox`: a KoboToolbox REST Service posting each submission as JSON.

Kobo signs nothing: the REST Service sends the secret as the basic-auth password (any user name)
or as a custom `X-Webhook-Token` header. Fields are XLSForm names with group slash paths; select
values are XLSForm choice names (`sdg_11`, `urban_planning`, `vn`).

Edits: an edited submission keeps its Kobo `_id` but gets a new `meta/instanceID`, and names the
one it replaces in `meta/deprecatedID`. Its response id stays that of the first submission
(`meta/rootUuid` where Kobo writes it, else the replaced instance), and its revision is the time
of the edit in seconds (`_last_edited`, else the form's `end`, else `_submission_time`), so a
later edit is a higher revision and the unedited submission is revision 1. Without
`meta/rootUuid`, a second edit names the first edit's instance, not the first submission's: such
servers need `meta/rootUuid` (KoboToolbox writes it since 2024) for edits of edits.

Validation: `_validation_status` (`{"uid": "validation_status_approved", ...}`, or `{}`) becomes
the response's review on arrival: approved, rejected (`not_approved`) or pending (`on_hold`).
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
REVIEWS = {
    "validation_status_approved": "approved",
    "validation_status_not_approved": "rejected",
    "validation_status_on_hold": "pending",
}
EDIT_TIMES = ("_last_edited", "end", "_submission_time")
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
        root, revision = identity_of(submission)
        response_id = platform_id(root, "_uuid")
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
        response = envelope(self.name, response_id, survey, submitted_at, received_at, canonical)
        response["revision"] = revision
        if (review := review_of(submission.get("_validation_status"))) is not None:
            response["review"] = review
        return response


def _instance(value: Any) -> Any:
    return value.strip().removeprefix("uuid:") if isinstance(value, str) else value


def identity_of(submission: Mapping[str, Any]) -> tuple[Any, int]:
    """The submission's response id (the first submission's instance, kept through edits) and
    its revision: 1 unedited, else the edit's time in seconds."""
    deprecated = _instance(submission.get("meta/deprecatedID"))
    root = _instance(submission.get("meta/rootUuid"))
    if not deprecated:
        uuid = submission.get("_uuid")
        if uuid is None:
            uuid = _instance(submission.get("meta/instanceID"))
        return root or uuid, 1
    field = next((name for name in EDIT_TIMES if submission.get(name)), "_submission_time")
    edited_at = timestamp(submission.get(field), field)
    return root or deprecated, max(2, int(edited_at.timestamp()))


def review_of(status: Any) -> str | None:
    """Kobo's validation status as a review status; None when none is set (or one unknown)."""
    uid = status.get("uid") if isinstance(status, Mapping) else status
    return REVIEWS.get(uid) if isinstance(uid, str) else None


PLATFORM = KoboToolboxPlatform()
