"""The analytics query API. Aggregates only: no name, email or free-text answer ever leaves it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from services.analytics.aggregates import OVERALL, summary, survey_key
from services.analytics.store import AnalyticsStore
from shared.http import Problem
from shared.taxonomy import load_taxonomy


def get_store(request: Request) -> AnalyticsStore:
    """The store built by the composition root."""
    store: AnalyticsStore = request.app.state.store
    return store


StoreDep = Annotated[AnalyticsStore, Depends(get_store)]

router = APIRouter(prefix="/v1", tags=["aggregates"])


@router.get("/surveys")
async def list_surveys(store: StoreDep) -> list[dict[str, Any]]:
    """Every survey that has responses, with its title and unique-response total."""
    totals = await store.survey_totals()
    titles = load_taxonomy().surveys
    return [
        {"survey_id": survey_id, "title": titles.get(survey_id, survey_id), "total": total}
        for survey_id, total in sorted(totals.items())
    ]


@router.get("/surveys/{survey_id}/summary")
async def survey_summary(survey_id: str, store: StoreDep) -> dict[str, Any]:
    """Running aggregates of one survey's unique responses."""
    document = await store.aggregate(survey_key(survey_id))
    if document is None and survey_id not in load_taxonomy().surveys:
        raise Problem(404, "Unknown survey", f"no responses and no survey {survey_id!r}")
    return summary(survey_id, document)


@router.get("/labels")
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


@router.get("/overview")
async def overview(store: StoreDep) -> dict[str, Any]:
    """Running aggregates over every survey, with responses per survey."""
    return summary(None, await store.aggregate(OVERALL))
