"""The analytics query API. Aggregates only: no name, email or free-text answer ever leaves it."""

from __future__ import annotations

from typing import Annotated, Literal

import pycountry
from fastapi import APIRouter, Depends, Query, Request

from services.analytics import views
from services.analytics.aggregates import survey_key
from services.analytics.models import (
    Filters,
    Overview,
    PartnerRanking,
    ReviewQueue,
    SurveySummary,
    SurveyTotal,
    TaxonomyCodes,
)
from services.analytics.snapshots import Snapshots
from services.analytics.store import AnalyticsStore
from shared.auth import OPTIONAL_SECURITY, Operator, SignedIn, require_operator
from shared.http import Problem
from shared.taxonomy import load_taxonomy


def get_store(request: Request) -> AnalyticsStore:
    """The store built by the composition root."""
    store: AnalyticsStore = request.app.state.store
    return store


def get_snapshots(request: Request) -> Snapshots:
    """The shared answers built by the composition root."""
    snapshots: Snapshots = request.app.state.snapshots
    return snapshots


StoreDep = Annotated[AnalyticsStore, Depends(get_store)]
SnapshotsDep = Annotated[Snapshots, Depends(get_snapshots)]
CountryQuery = Annotated[
    str | None, Query(description="ISO 3166-1 alpha-2 code of the respondents' country")
]
TypeQuery = Annotated[
    str | None, Query(description="respondent type code (taxonomy `respondent_types`)")
]
ReviewQuery = Annotated[
    Literal["approved"] | None,
    Query(description="`approved`: approved responses only (valid-only figures; operators)"),
]
CITY_LIMIT = 1000
CityLimitQuery = Annotated[
    int,
    Query(
        ge=0,
        le=100_000,
        description="most cities listed in `by_city`, largest first; `distinct_cities` says how "
        "many there are",
    ),
]

router = APIRouter(prefix="/v1", tags=["aggregates"])
PROBLEMS: dict[int | str, dict[str, str]] = {
    401: {
        "description": "Filtered views need the operator token or a JWT; a token presented and "
        "not valid is refused (problem+json, `WWW-Authenticate: Bearer`)"
    },
    404: {"description": "Unknown survey (problem+json)"},
    422: {"description": "Invalid filter, each failing parameter named (problem+json)"},
}
PUBLIC_OR_OPERATOR = (
    "Public without credentials: counted from the running aggregates, breakdown values from "
    "fewer than `MIN_CELL_SIZE` responses left out (`suppressed_below`). With the operator "
    "token or a JWT: every value, and the filters."
)


def filters(survey_id: str | None, country: str | None, respondent_type: str | None) -> Filters:
    """Checked filters; an unknown code is a 422 naming the parameter."""
    errors = []
    taxonomy = load_taxonomy()
    if country is not None:
        country = country.strip().upper()
        if pycountry.countries.get(alpha_2=country) is None:
            errors.append({"field": "country", "message": "not an ISO 3166-1 alpha-2 code"})
    if respondent_type is not None and respondent_type not in taxonomy.respondent_types:
        known = ", ".join(taxonomy.respondent_types)
        errors.append({"field": "respondent_type", "message": f"not one of {known}"})
    if survey_id is not None and survey_id not in taxonomy.surveys:
        errors.append({"field": "survey_id", "message": "not a known survey"})
    if errors:
        raise Problem(422, "Invalid filter", "See `errors` for each failing field.", errors=errors)
    return Filters(survey_id=survey_id, country=country, respondent_type=respondent_type)


@router.get("/surveys", response_model=list[SurveyTotal])
async def list_surveys(store: StoreDep) -> list[SurveyTotal]:
    """Every survey that has responses, with its title and unique-response total."""
    totals = await views.survey_totals(store)
    titles = load_taxonomy().surveys
    return [
        SurveyTotal(survey_id=survey_id, title=titles.get(survey_id, survey_id), total=total)
        for survey_id, total in sorted(totals.items())
    ]


@router.get(
    "/surveys/{survey_id}/summary",
    response_model=SurveySummary,
    responses=PROBLEMS,
    description=PUBLIC_OR_OPERATOR,
    openapi_extra=OPTIONAL_SECURITY,
)
async def survey_summary(
    survey_id: str,
    store: StoreDep,
    snapshots: SnapshotsDep,
    principal: SignedIn,
    country: CountryQuery = None,
    respondent_type: TypeQuery = None,
    city_limit: CityLimitQuery = CITY_LIMIT,
    review: ReviewQuery = None,
) -> SurveySummary:
    """Unique responses of one survey; filtered by country and respondent type if asked."""
    if country is not None or respondent_type is not None or review is not None:
        require_operator(principal)
    if (
        survey_id not in load_taxonomy().surveys
        and await store.aggregate(survey_key(survey_id)) is None
    ):
        raise Problem(404, "Unknown survey", f"no responses and no survey {survey_id!r}")
    checked = filters(None, country, respondent_type)
    return await views.survey_summary(
        snapshots,
        survey_id,
        checked.model_copy(update={"survey_id": survey_id, "review": review}),
        public=principal is None,
        city_limit=city_limit,
    )


@router.get(
    "/overview",
    response_model=Overview,
    responses=PROBLEMS,
    description=PUBLIC_OR_OPERATOR,
    openapi_extra=OPTIONAL_SECURITY,
)
async def overview(
    snapshots: SnapshotsDep,
    principal: SignedIn,
    survey_id: Annotated[str | None, Query(description="one survey only")] = None,
    country: CountryQuery = None,
    respondent_type: TypeQuery = None,
    city_limit: CityLimitQuery = CITY_LIMIT,
    review: ReviewQuery = None,
) -> Overview:
    """Unique responses over every survey, with responses per survey; filtered if asked."""
    if any(value is not None for value in (survey_id, country, respondent_type, review)):
        require_operator(principal)
    checked = filters(survey_id, country, respondent_type).model_copy(update={"review": review})
    return await views.overview(snapshots, checked, public=principal is None, city_limit=city_limit)


@router.get("/partners", response_model=PartnerRanking, responses=PROBLEMS)
async def partners(
    snapshots: SnapshotsDep,
    _: Operator,
    theme: Annotated[
        list[str], Query(description="project theme codes; cities sharing none are left out")
    ] = [],  # noqa: B006 (FastAPI copies query defaults)
    country: CountryQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> PartnerRanking:
    """Potential city partners, ranked; each with its score and the reasons for it (operator
    token or JWT required)."""
    checked = filters(None, country, None)
    unknown = [code for code in theme if code not in load_taxonomy().themes]
    if unknown:
        raise Problem(
            422,
            "Invalid filter",
            "See `errors` for each failing field.",
            errors=[{"field": "theme", "message": f"unknown theme {code!r}"} for code in unknown],
        )
    return await views.partners(snapshots, list(dict.fromkeys(theme)), checked.country, limit)


@router.get("/review-queue", response_model=ReviewQueue, responses=PROBLEMS)
async def review_queue(
    snapshots: SnapshotsDep,
    store: StoreDep,
    operator: Operator,
    survey_id: Annotated[str | None, Query(description="one survey only")] = None,
    country: CountryQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="most responses listed")] = 100,
) -> ReviewQueue:
    """Responses waiting for review (pending, not retracted), oldest first, each at its newest
    revision with its answers (no focal-point name or email: analytics never holds them).
    Operators only."""
    del operator
    checked = filters(survey_id, country, None)
    return await views.review_queue(snapshots, store, checked, limit)


@router.get("/taxonomy", response_model=TaxonomyCodes)
async def taxonomy_codes() -> TaxonomyCodes:
    """The codes of each vocabulary, in the taxonomy's order (for filters)."""
    taxonomy = load_taxonomy()
    return TaxonomyCodes(
        respondent_types=list(taxonomy.respondent_types),
        sdgs=list(taxonomy.sdgs),
        themes=list(taxonomy.themes),
        modalities=list(taxonomy.modalities),
        surveys=list(taxonomy.surveys),
    )


@router.get("/labels", response_model=dict[str, str])
async def labels() -> dict[str, str]:
    """English labels of every taxonomy code (for charts)."""
    taxonomy = load_taxonomy()
    return {
        **taxonomy.respondent_types,
        **taxonomy.sdgs,
        **taxonomy.themes,
        **taxonomy.modalities,
        **taxonomy.surveys,
    }
