"""The API's response models (its OpenAPI schema). Counts and taxonomy codes only: no name,
email, organisation or free-text answer has a field here."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

from shared.taxonomy import load_taxonomy

Counts = dict[str, int]
Computed = Literal["running aggregates", "raw responses"]


class CityCount(BaseModel):
    """Unique responses from one city."""

    country: str = Field(examples=["VN"])
    city: str = Field(examples=["Đà Nẵng"])
    count: int


class Filters(BaseModel):
    """The filters a view was computed with (absent: not filtered)."""

    survey_id: str | None = None
    country: str | None = None
    respondent_type: str | None = None
    review: Literal["approved"] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,  # answers without it read as before
        description="`approved`: approved responses only (the valid-only figures); absent: "
        "every response that is not rejected",
    )


class _Counts(BaseModel):
    total: int = Field(
        description="unique responses, each at its newest revision: those not rejected (not "
        "retracted either), or the approved ones with `review=approved`"
    )
    by_respondent_type: Counts
    by_country: Counts
    by_city: list[CityCount] = Field(
        description="the largest cities first (then by country and name), at most `city_limit`"
    )
    distinct_cities: int = Field(description="cities with responses, listed in `by_city` or not")
    development_priorities: Counts = Field(description="SDG code -> responses naming it")
    capacity_needs: Counts
    collaboration_interests: Counts
    by_day: Counts = Field(description="UTC date of submission -> responses")
    country_priorities: dict[str, Counts] = Field(description="country -> SDG code -> responses")
    type_themes: dict[str, Counts] = Field(
        description="respondent type -> theme (needed or of interest) -> responses"
    )
    by_review: Counts = Field(
        default_factory=lambda: {"pending": 0, "approved": 0, "rejected": 0},
        description="responses by review status: `pending` and `approved` are counted in "
        "`total` (by default), `rejected` ones are not; retracted ones nowhere",
    )
    filters: Filters = Field(default_factory=Filters)
    computed_from: Computed = Field(
        default="running aggregates",
        description="unfiltered views are the running aggregates; filtered ones are counted from "
        "the stored responses up to the same watermarks, so both agree exactly",
    )
    suppressed_below: int | None = Field(
        default=None,
        description="public answers: breakdown values counted from fewer responses than this "
        "are left out, and some others so that the left-out ones cannot be worked out from the "
        "sums (docs/security.md); null: every value is shown (operator token or JWT)",
    )

    @computed_field(  # type: ignore[prop-decorator]
        description="codes counted here that this service's taxonomy does not know yet (an "
        "event newer than the service): counted under the code, labelled `unknown: <code>`"
    )
    @property
    def unknown_codes(self) -> list[str]:
        """Respondent types, SDGs, themes and modalities counted but not in the taxonomy."""
        taxonomy = load_taxonomy()
        known = {*taxonomy.respondent_types, *taxonomy.sdgs, *taxonomy.interest_codes}
        counted = {
            *self.by_respondent_type,
            *self.development_priorities,
            *self.capacity_needs,
            *self.collaboration_interests,
            *self.type_themes,
            *(code for cells in self.type_themes.values() for code in cells),
            *(code for cells in self.country_priorities.values() for code in cells),
        }
        return sorted(counted - known)


class SurveySummary(_Counts):
    """Unique responses of one survey."""

    survey_id: str


class Overview(_Counts):
    """Unique responses over every survey."""

    surveys: Counts = Field(description="survey id -> unique responses")


class SurveyTotal(BaseModel):
    """A survey with responses."""

    survey_id: str
    title: str
    total: int


class Reason(BaseModel):
    """One factor of a partner's score."""

    factor: Literal["contact", "institutions", "breadth", "modalities", "overlap"]
    points: int
    detail: str


class Partner(BaseModel):
    """A city ranked as a potential partner."""

    rank: int
    country: str
    city: str
    score: int
    responses: int = Field(description="unique responses from the city")
    institutions: int = Field(description="distinct responding institutions (counted, not named)")
    consenting_focal_points: int = Field(
        description="responses with a focal point who agreed to be contacted"
    )
    themes: list[str] = Field(
        description="project themes named, strongest first (responses naming it, those with a "
        "consenting focal point counting twice)"
    )
    modalities: list[str] = Field(description="ways of cooperating asked for, strongest first")
    matched_themes: list[str] = Field(description="the asked-for themes the city shares")
    reasons: list[Reason]


class PartnerRanking(BaseModel):
    """Potential city partners, best first."""

    themes: list[str]
    country: str | None
    cities: int = Field(description="cities ranked before the limit")
    partners: list[Partner]


class TaxonomyCodes(BaseModel):
    """The codes of each vocabulary."""

    respondent_types: list[str]
    sdgs: list[str]
    themes: list[str]
    modalities: list[str]
    surveys: list[str]


class QueuedResponse(BaseModel):
    """A response waiting for review, at its newest revision."""

    survey_id: str
    response_id: str
    revision: int
    country: str
    respondent_type: str
    city: str
    submitted_at: str
    response: dict[str, Any] = Field(
        description="the stored response: codes, respondent and every other answer"
    )


class ReviewQueue(BaseModel):
    """Responses waiting for review (operators only)."""

    filters: Filters
    pending: int = Field(description="pending responses matching the filters")
    responses: list[QueuedResponse] = Field(description="the oldest first, at most `limit`")
