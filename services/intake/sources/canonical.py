"""From a platform's answers (by field name) to the canonical response's fields. Pure.

Each platform first reads its envelope into a flat `{field name: value}` and says how its values
become codes (`Converters`); `assemble` does the rest the same way for every platform: the core
fields by the survey's field map, contact details only with consent, everything else in `answers`,
and one 422 that names every field and value that cannot be mapped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from services.intake.sources import Rejected
from services.intake.sources.vocabulary import (
    Unmapped,
    brief,
    consent,
    country_code,
    key,
    language_code,
    vocabularies,
)
from services.intake.surveys import SurveyDefinition

# Canonical field -> where it lands in the event (for error messages).
TARGETS = {
    "respondent_type": "respondent.type",
    "organization": "respondent.organization",
    "country": "respondent.country",
    "city": "respondent.city",
    "development_priorities": "development_priorities",
    "capacity_needs": "capacity_needs",
    "collaboration_interests": "collaboration_interests",
    "consent": "focal_point.consent",
    "contact_name": "focal_point.name",
    "contact_email": "focal_point.email",
    "language": "focal_point.language",
}
_RESPONDENT = {"respondent_type": "type", "organization": "organization", "country": "country"}
_CONTACT = ("contact_name", "contact_email", "language")


def text(value: Any) -> str:
    """A free-text answer as a string (a structured one, such as a name in parts, joined)."""
    if isinstance(value, bool):
        raise Unmapped(f"expected text, got {brief(value)}")
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return " ".join(part for part in value if part.strip())
    raise Unmapped(f"expected text, got {brief(value)}")


@dataclass(frozen=True)
class Converters:
    """How one platform's answer values become canonical values."""

    respondent_type: Callable[[Any], str]
    country: Callable[[Any], str]
    development_priorities: Callable[[Any], list[str]]
    capacity_needs: Callable[[Any], list[str]]
    collaboration_interests: Callable[[Any], list[str]]
    consent: Callable[[Any], bool]
    language: Callable[[Any], str]
    organization: Callable[[Any], str] = text
    city: Callable[[Any], str] = text
    contact_name: Callable[[Any], str] = text
    contact_email: Callable[[Any], str] = text


def label_converters(aliases: Mapping[str, str]) -> Converters:
    """Answer texts as the form shows them ("Viet Nam", "Clean water and sanitation", "Français")
    to codes: for Typeform, Jotform and Google Forms."""
    words = vocabularies()
    return Converters(
        respondent_type=lambda value: words.respondent_types.code(value, aliases),
        country=country_code,
        development_priorities=lambda value: words.sdgs.codes_of(value, aliases),
        capacity_needs=lambda value: words.themes.codes_of(value, aliases),
        collaboration_interests=lambda value: words.interests.codes_of(value, aliases),
        consent=consent,
        language=language_code,
    )


def field_names(
    defaults: Mapping[str, str], survey: SurveyDefinition, source: str
) -> dict[str, str]:
    """The platform field of each canonical field: the platform's defaults, then the survey's."""
    configured = survey.sources[source].field_map().fields() if source in survey.sources else {}
    return {**defaults, **configured}


def label_aliases(survey: SurveyDefinition, source: str) -> dict[str, str]:
    """The survey's own answer texts for taxonomy codes, by comparison key."""
    if source not in survey.sources:
        return {}
    return {key(label): code for label, code in survey.sources[source].field_map().labels.items()}


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def assemble(
    values: Mapping[str, Any], names: Mapping[str, str], convert: Converters
) -> dict[str, Any]:
    """The canonical `respondent`, `focal_point`, code lists and `answers` of one response."""
    errors: list[dict[str, str]] = []

    def converted(canonical: str) -> Any:
        field = names.get(canonical)
        if field is None or field not in values or _blank(values[field]):
            return None
        try:
            return getattr(convert, canonical)(values[field])
        except Unmapped as exc:
            errors.append(
                {"field": TARGETS[canonical], "rule": "mapping", "message": f"{field!r}: {exc}"}
            )
            return None

    respondent = {
        target: value
        for canonical, target in _RESPONDENT.items()
        if (value := converted(canonical)) is not None
    }
    city = converted("city")
    if city is not None:
        respondent["city"] = city
    result: dict[str, Any] = {"respondent": respondent}
    for canonical in ("development_priorities", "capacity_needs", "collaboration_interests"):
        result[canonical] = converted(canonical) or []
    # Contact details are read only with consent; without it they are dropped, not kept.
    if converted("consent") is True:
        name, email, language = (converted(canonical) for canonical in _CONTACT)
        if name and email:
            result["focal_point"] = {
                "name": name,
                "email": email,
                "language": language or "en",
                "consent": True,
            }
    mapped = set(names.values())
    result["answers"] = storable_answers(
        {field: value for field, value in values.items() if field not in mapped}
    )
    if errors:
        raise unmappable(errors)
    return result


def envelope(
    source: str,
    platform_response_id: str,
    survey: SurveyDefinition,
    submitted_at: datetime,
    received_at: datetime,
    canonical: dict[str, Any],
) -> dict[str, Any]:
    """The whole candidate response: ids, times and what `assemble` made of the answers."""
    return {
        "response_id": f"{source}:{platform_response_id}",
        "survey_id": survey.id,
        "source": source,
        "submitted_at": submitted_at,
        "received_at": received_at,
        **canonical,
    }


# Platform field names are the form's own (a Google Forms question title, an XLSForm name):
# "1. City?" or "$ budget" are real questions, which no MongoDB server stores as a key.
# Escaped the way URLs are, so that `unescape_key` gives the platform's name back exactly.
_KEY_ESCAPES = {"%": "%25", ".": "%2E"} | {chr(code): f"%{code:02X}" for code in range(0x20)}
_ESCAPE_DEPTH = 40  # deeper answers are refused by the admission rules anyway


def escape_key(name: str) -> str:
    """A platform's field name as a storable key: `%`, `.` and control characters (U+0000 to
    U+001F: FerretDB cannot read a key with a tab back) percent-escaped, a leading `$` as `%24`
    (`"1. City?"` -> `"1%2E City?"`); `unescape_key` reverses it."""
    escaped = "".join(_KEY_ESCAPES.get(char, char) for char in name)
    return "%24" + escaped[1:] if escaped.startswith("$") else escaped


def unescape_key(key: str) -> str:
    """The platform's field name of a key made by `escape_key`."""
    return unquote(key, errors="strict")


def storable_answers(value: Any, depth: int = 0) -> Any:
    """`value` with every object key through `escape_key` and every list directly inside a list
    (a Google Forms checkbox grid: one list per row) as an object keyed by position
    (`{"0": [...], "1": [...]}`): FerretDB stores no nested arrays. At any depth, up to a bound."""
    if depth > _ESCAPE_DEPTH:
        return value
    if isinstance(value, dict):
        return {
            escape_key(key) if isinstance(key, str) else key: storable_answers(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            storable_answers(
                dict(zip(map(str, range(len(item))), item, strict=True))
                if isinstance(item, list)
                else item,
                depth + 1,
            )
            for item in value
        ]
    return value


def unmappable(errors: list[dict[str, str]]) -> Rejected:
    """The 422 for answers that cannot be mapped, naming each field, rule and value."""
    listed = "; ".join(f"{error['field']}: {error['message']}" for error in errors)
    return Rejected(422, "Invalid response", f"cannot map {listed}", errors=errors)


def timestamp(value: Any, field: str) -> datetime:
    """An ISO 8601 time; one without an offset is UTC (as Kobo's `_submission_time`)."""
    try:
        if not isinstance(value, str):
            raise ValueError
        parsed = datetime.fromisoformat(value.strip())
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise unmappable(
            [
                {
                    "field": "submitted_at",
                    "rule": "date-format",
                    "message": f"{field!r}: expected an ISO 8601 time",
                }
            ]
        ) from None


def epoch_milliseconds(milliseconds: int, field: str) -> datetime:
    """A time given as milliseconds since 1970 (Jotform's `submitDate`), or a 422 naming
    `submitted_at` when no calendar has that date."""
    try:
        return datetime.fromtimestamp(milliseconds / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        raise unmappable(
            [
                {
                    "field": "submitted_at",
                    "rule": "date-window",
                    "message": f"{field!r}: {milliseconds} ms since 1970 is no date",
                }
            ]
        ) from None


def platform_id(value: Any, field: str) -> str:
    """The platform's id of the response, or a 422 naming the field that should hold it."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise unmappable(
            [
                {
                    "field": "response_id",
                    "rule": "missing",
                    "message": f"{field!r}: expected the response's id",
                }
            ]
        )
    return value.strip()
