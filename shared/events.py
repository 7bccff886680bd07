"""The event contracts: `survey.responses.v1`, `pilots.announced.v1` (DESIGN.md, "Events") and
`privacy.erasures.v1`.

Every code is checked against the taxonomy and every size is bounded, so a consumer can trust
what it reads and nothing invalid is ever published.

Producers validate strictly: only codes of their taxonomy, only the schema version they know.
Consumers read with `TOLERANT` as the validation context, so that a rolling upgrade does not park
valid events: a code their taxonomy does not know yet is kept when it is well formed (a short
lower-case slug, safe as a MongoDB field name and in the notifier's match index), fields they do
not know are ignored, and an event of a newer `schema_version` is read as the version they know
(a version only ever adds optional fields; a change that removes or redefines one is a new topic,
`.v2`). Sizes and types are checked the same way in both readings.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, Final, Literal

import pycountry
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    PlainSerializer,
    ValidationInfo,
)

from shared.personal import KEY_PATTERN
from shared.taxonomy import load_taxonomy

SOURCES = ("generic", "kobotoolbox", "typeform", "jotform", "google-forms")
LANGUAGES = ("en", "fr", "es", "ar", "zh", "ru")

# The version of the event schemas this code writes; an event without one is version 1.
SCHEMA_VERSION: Final = 1
# The validation context of consumers (see the module docstring).
TOLERANT: Final[Mapping[str, str]] = {"unknown_codes": "keep"}
# What a taxonomy code looks like, known or not: no `.`, `$`, space or tab can appear in one.
WELL_FORMED_CODE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

Source = Literal["generic", "kobotoolbox", "typeform", "jotform", "google-forms"]
Language = Literal["en", "fr", "es", "ar", "zh", "ru"]
# What a reviewer says of a response; `retracted` only comes from a retraction (DELETE).
ReviewStatus = Literal["pending", "approved", "rejected"]
ReviewDecision = Literal["pending", "approved", "rejected", "retracted"]
REVIEW_STATUSES: Final = ("pending", "approved", "rejected")
# A revision is an integer from 1; platforms may use a time in seconds as one (Kobo edits).
MAX_REVISION: Final = 2**53


# Bidi controls that reorder the text after them (embeddings, overrides and their pop, isolates).
# The intake refuses them in names; stripped here too, so that no event displays them.
BIDI_RUN_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_JOINERS = frozenset("\u200c\u200d")  # ZWNJ, ZWJ
_VIRAMA = 9  # canonical combining class of the viramas of the Indic scripts
# Scripts whose spelling needs ZWNJ/ZWJ: Arabic (Persian, Urdu, ...), Syriac, N'Ko, the Indic
# scripts (Devanagari to Sinhala), Tibetan, Myanmar, Khmer, Mongolian, Arabic presentation forms.
_JOINING_SCRIPTS = (
    (0x0600, 0x08FF),
    (0x0900, 0x0DFF),
    (0x0F00, 0x109F),
    (0x1780, 0x18AF),
    (0xFB50, 0xFDFF),
    (0xFE70, 0xFEFC),
)


def _joins(text: str, index: int) -> bool:
    # As IDNA's rules for joiners (RFC 5892, appendix A.1 and A.2), simplified: a joiner spells
    # something after a virama (Indic half-forms, Malayalam chillu at a word's end), or between
    # a letter of a joining script and a letter or mark (Persian "mi\u200cxâham" in Arabic
    # script). Elsewhere ("Pay\u200dpal") it only hides.
    if index == 0:
        return False
    before = text[index - 1]
    if unicodedata.combining(before) == _VIRAMA:
        return True
    after = text[index + 1] if index + 1 < len(text) else " "
    in_script = any(low <= ord(before) <= high for low, high in _JOINING_SCRIPTS)
    # Letters and marks on both sides: never a format character, which goes (so a second pass
    # keeps what the first kept).
    return (
        in_script
        and unicodedata.category(before)[0] in "LM"
        and unicodedata.category(after)[0] in "LM"
    )


def normalise_name(text: str) -> str:
    """A name, city or organisation as it is kept: invisible format characters (Unicode Cf:
    bidi controls and marks, zero-width space, word joiner, BOM, soft hyphen, tags) removed,
    except ZWNJ/ZWJ where a script spells with them; spaces collapsed; NFC."""
    if text.isascii():  # no format character, already NFC: the common case, per character no more
        return " ".join(text.split())
    visible = "".join(
        char
        for index, char in enumerate(text)
        if unicodedata.category(char) != "Cf" or (char in _JOINERS and _joins(text, index))
    )
    return unicodedata.normalize("NFC", " ".join(visible.split()))


def _normalise_text(value: Any) -> Any:
    # NFC so that "Đà Nẵng" typed on two keyboards is one city in the aggregates; invisible
    # characters out, so that "Đà\u200bNẵng" is that city too and no name hides or reorders text.
    if isinstance(value, str):
        value = normalise_name(value)
        if value.isascii():  # its only unprintable characters are the controls
            if not value.isprintable():
                raise ValueError("control characters are not allowed")
            return value
        if any(unicodedata.category(char) == "Cc" for char in value):
            raise ValueError("control characters are not allowed")
        if any("\ud800" <= char <= "\udfff" for char in value):  # no UTF-8 can carry one
            raise ValueError("unpaired surrogates are not allowed")
    return value


def _country_code(value: str) -> str:
    code = value.strip().upper()
    if pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def tolerant(info: ValidationInfo) -> bool:
    """Whether the event is read by a consumer (`TOLERANT` context) rather than a producer."""
    context = info.context
    return isinstance(context, Mapping) and context.get("unknown_codes") == "keep"


def _code_in(
    vocabulary: Callable[[], Collection[str]], what: str
) -> Callable[[str, ValidationInfo], str]:
    def check(code: str, info: ValidationInfo) -> str:
        if code in vocabulary():
            return code
        if not tolerant(info):
            raise ValueError(f"{code!r} is not a known {what} code")
        if not WELL_FORMED_CODE.fullmatch(code):
            raise ValueError(f"{code!r} is neither a known {what} code nor a well-formed new one")
        return code  # newer than this taxonomy: counted under its code, labelled unknown

    return check


def _schema_version(version: int, info: ValidationInfo) -> int:
    # A producer writes only what it knows; a consumer reads a newer event as far as it can.
    if version > SCHEMA_VERSION and not tolerant(info):
        raise ValueError(f"schema version {version} is newer than this service's {SCHEMA_VERSION}")
    return version


def _unique(values: list[str]) -> list[str]:
    # Order kept: the first mention of a code is the respondent's own order.
    return list(dict.fromkeys(values))


def _taxonomy_codes(name: str) -> Callable[[], Collection[str]]:
    return lambda: getattr(load_taxonomy(), name)


Text = Annotated[str, BeforeValidator(_normalise_text)]
CountryCode = Annotated[str, AfterValidator(_country_code)]
RespondentType = Annotated[
    str, AfterValidator(_code_in(_taxonomy_codes("respondent_types"), "respondent type"))
]
SdgCode = Annotated[str, AfterValidator(_code_in(_taxonomy_codes("sdgs"), "SDG"))]
ThemeCode = Annotated[str, AfterValidator(_code_in(_taxonomy_codes("themes"), "theme"))]
ModalityCode = Annotated[str, AfterValidator(_code_in(_taxonomy_codes("modalities"), "modality"))]
InterestCode = Annotated[
    str, AfterValidator(_code_in(lambda: load_taxonomy().interest_codes, "theme or modality"))
]


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59-14:00 is in year 10000 in UTC
        raise ValueError("the time has no date in UTC") from None


UtcDatetime = Annotated[
    AwareDatetime,
    AfterValidator(_in_utc),
    PlainSerializer(lambda value: value.strftime("%Y-%m-%dT%H:%M:%SZ"), return_type=str),
]
Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\w.:@-]+$")]
Slug = Annotated[str, Field(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]
SchemaVersion = Annotated[int, Field(ge=1, le=1000), AfterValidator(_schema_version)]


class _Event(BaseModel):
    # Unknown fields are ignored so that a consumer keeps working when v1 grows a field.
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)


class Respondent(_Event):
    """Who answered: their kind of institution and where it is."""

    type: RespondentType
    organization: Text | None = Field(default=None, max_length=300)
    country: CountryCode
    city: Text = Field(min_length=1, max_length=120)


class FocalPoint(_Event):
    """A person who may be contacted about pilots; personal data only the notifier keeps.

    `consent: false` is a withdrawal: the notifier stops all mail to that address and keeps only
    the fact; counts of focal points include only those with consent (`consenting_focal_point`).
    """

    name: Text = Field(min_length=1, max_length=200)
    email: EmailStr
    language: Language = "en"
    consent: bool


def _first(value: Any) -> bool:
    # Revision 1 is written as events were before revisions existed (absent reads as 1).
    return bool(value == 1)


def _absent(value: Any) -> bool:
    # An optional field that says nothing is written as before the field existed.
    return value is None


class SurveyResponse(_Event):
    """One unique survey response, normalised: the value of `survey.responses.v1`."""

    response_id: Identifier
    survey_id: Slug
    source: Source
    submitted_at: UtcDatetime
    received_at: UtcDatetime
    respondent: Respondent
    focal_point: FocalPoint | None = None
    development_priorities: Annotated[list[SdgCode], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=17
    )
    capacity_needs: Annotated[list[ThemeCode], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=40
    )
    collaboration_interests: Annotated[list[InterestCode], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=40
    )
    answers: dict[str, Any] = Field(default_factory=dict, max_length=200)
    revision: int = Field(
        default=1,
        exclude_if=_first,
        ge=1,
        le=MAX_REVISION,
        strict=True,
        description="Which revision of the response this is: a higher one replaces a lower one "
        "of the same survey and `response_id`; 1 when absent (events written before it existed).",
    )
    review: ReviewStatus | None = Field(
        default=None,
        exclude_if=_absent,
        description="The review status the platform gave the response on arrival (Kobo's "
        "validation status); absent: none said (pending until a review says otherwise). It "
        "counts as a review taken at `received_at`.",
    )
    schema_version: SchemaVersion = SCHEMA_VERSION

    @property
    def identity(self) -> str:
        """What makes a response unique: its survey and its id (which starts with its source).
        A generic sender picks its own ids and may use one in two surveys: two responses."""
        return f"{self.survey_id}/{self.response_id}"

    @property
    def consenting_focal_point(self) -> FocalPoint | None:
        """The focal point if they agreed to be contacted; None when absent or withdrawn."""
        if self.focal_point is None or not self.focal_point.consent:
            return None
        return self.focal_point


class ResponseReview(_Event):
    """A review or a retraction of one response: the value of `survey.reviews.v1` (key
    `<survey_id>/<response_id>`).

    Reviews of a response are ordered by `order` (nanoseconds since the epoch on the intake's
    clock when it took the review), ties broken by `review_id`: the latest review wins whatever
    order the events arrive in. `retracted` takes a response out of every count, like
    `rejected`; a later review brings it back."""

    review_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    survey_id: Slug
    response_id: Identifier
    status: ReviewDecision
    note: str = Field(default="", max_length=2000)
    reviewed_at: UtcDatetime
    order: int = Field(ge=0, le=2**63 - 1, strict=True)
    schema_version: SchemaVersion = SCHEMA_VERSION

    @property
    def identity(self) -> str:
        """The reviewed response's identity (as `SurveyResponse.identity`), the event's key."""
        return f"{self.survey_id}/{self.response_id}"

    @property
    def rank(self) -> tuple[int, str]:
        """What decides which of two reviews of one response is the latest."""
        return (self.order, self.review_id)


CallUrl = Annotated[HttpUrl, PlainSerializer(str, return_type=str)]
# The languages a pilot can be translated into: its own title, summary and url are English.
TranslationLanguage = Literal["fr", "es", "ar", "zh", "ru"]


class PilotTranslation(_Event):
    """A pilot's title, summary and call link in one language other than English."""

    title: Text = Field(min_length=1, max_length=200)
    summary: str = Field(default="", max_length=5000)
    url: CallUrl | None = Field(default=None, description="absent: the pilot's own url")


def _translation_languages(value: Any, info: ValidationInfo) -> Any:
    # A producer names only the languages it knows (and English is the pilot's own text); a
    # consumer drops a language newer than its own rather than park the pilot.
    if not isinstance(value, Mapping):
        return value
    known = set(LANGUAGES) - {"en"}
    if tolerant(info):
        return {language: text for language, text in value.items() if language in known}
    if "en" in value:
        raise ValueError("'en' is not a translation: the pilot's own text is English")
    return value


def _empty(value: Mapping[str, Any]) -> bool:
    # A pilot without translations is written as before the field existed.
    return not value


class PilotAnnounced(_Event):
    """A demonstration pilot open for applications: the value of `pilots.announced.v1`.

    `title`, `summary` and `url` are the English text, which every reader without a
    translation in their language gets; `translations` holds the others (schema version 1
    all the same: a consumer that does not know the field ignores it and sends English)."""

    pilot_id: Identifier
    title: Text = Field(min_length=1, max_length=200)
    summary: str = Field(default="", max_length=5000)
    themes: Annotated[list[ThemeCode], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=40
    )
    sdgs: Annotated[list[SdgCode], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=17
    )
    modalities: Annotated[list[ModalityCode], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=20
    )
    eligible_countries: Annotated[list[CountryCode], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=250
    )
    lead_agency: Text = Field(default="", max_length=200)
    apply_by: date | None = None
    url: CallUrl
    translations: Annotated[
        dict[TranslationLanguage, PilotTranslation], BeforeValidator(_translation_languages)
    ] = Field(
        default_factory=dict,
        max_length=len(LANGUAGES) - 1,
        exclude_if=_empty,
        description=(
            "The title, summary and call link in other languages, by language code (fr, es, ar, "
            "zh, ru); a reader whose language has none gets the English text, and is told so."
        ),
    )
    schema_version: SchemaVersion = SCHEMA_VERSION

    @property
    def codes(self) -> frozenset[str]:
        """The codes a focal point's interests are matched against."""
        return frozenset(self.themes) | frozenset(self.sdgs)

    def is_open(self, today: date) -> bool:
        """Whether applications are still taken on `today`."""
        return self.apply_by is None or today <= self.apply_by


class ErasureRequested(_Event):
    """A person asked that what is kept about their address be erased: the value of
    `privacy.erasures.v1` (key `request_id`). It carries the keyed hash of the address
    (`shared.personal`), never the address, so the topic may keep it as long as it keeps
    anything. Records of responses submitted after `requested_at` are a new consent and stay."""

    request_id: Identifier
    email_key: str = Field(pattern=KEY_PATTERN, description="keyed hash of the address")
    requested_at: UtcDatetime
    schema_version: SchemaVersion = SCHEMA_VERSION
