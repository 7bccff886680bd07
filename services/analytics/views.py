"""The API's views: running aggregates when unfiltered, exact recounts when filtered, and the
partner ranking. Reads the store, calls the pure functions, returns the response models.

The overall numbers are the sum of the surveys' documents read side by side, not the overall
document: that one is written after the surveys', so a reader could briefly see a survey ahead
of the overview. Summed, the overview never shows less than a survey read before it, and the
surveys listed always add up to its total. Filtered views and the partner ranking count a
response up to the watermarks of its own survey's document, so a filter matching everything
gives exactly the unfiltered numbers; they are served from `snapshots` (one pass over the stored
responses per state of the documents, not one per request). Public answers are suppressed
(`suppression.py`); operators see every cell.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from services.analytics.aggregates import (
    limit_cities,
    overall_from_surveys,
    summary,
    survey_key,
    survey_of,
)
from services.analytics.audit import counters_of, flatten, nest
from services.analytics.models import Filters, Overview, PartnerRanking, SurveySummary
from services.analytics.partners import rank
from services.analytics.snapshots import Snapshots
from services.analytics.store import AnalyticsStore
from services.analytics.suppression import OVERVIEW, suppress
from shared.mongo import Document
from shared.taxonomy import load_taxonomy


async def survey_totals(store: AnalyticsStore) -> dict[str, int]:
    """Unique responses per survey that has any."""
    documents = await _survey_documents(store)
    totals = {survey_of(key): int(document.get("total", 0)) for key, document in documents.items()}
    return {survey_id: total for survey_id, total in totals.items() if total}


async def running_views(
    documents: Mapping[str, Document], city_limit: int | None = None
) -> dict[str, dict[str, Any]]:
    """The unfiltered answers from the surveys' documents: the overview (key `""`) and each
    survey's summary (key: its id), with the `city_limit` largest cities (all when None). Public
    answers are these with every city, suppressed together, then limited (`limit_cities`)."""
    surveys = {key: flatten(document) for key, document in documents.items()}
    shaped = {OVERVIEW: summary(None, nest(overall_from_surveys(surveys)), city_limit)}
    for key, document in documents.items():
        shaped[survey_of(key)] = summary(survey_of(key), counters_of(document), city_limit)
    return shaped


async def overview(
    snapshots: Snapshots, filters: Filters, *, public: bool, city_limit: int | None = None
) -> Overview:
    """Every survey together (suppressed when `public`), or the responses matching `filters`;
    the `city_limit` largest cities."""
    documents = await snapshots.documents()
    if filters == Filters():
        if public:
            shaped = limit_cities((await snapshots.public(documents))[OVERVIEW], city_limit)
            return Overview.model_validate(shaped)
        return Overview.model_validate((await running_views(documents, city_limit))[OVERVIEW])
    counted = (await snapshots.cube(documents)).sum(filters)
    shaped = summary(None, nest(overall_from_surveys(counted)), city_limit)
    return Overview.model_validate({**shaped, "filters": filters, "computed_from": "raw responses"})


async def survey_summary(
    snapshots: Snapshots,
    survey_id: str,
    filters: Filters,
    *,
    public: bool,
    city_limit: int | None = None,
) -> SurveySummary:
    """One survey (suppressed when `public`), or its responses of a country and/or type; the
    `city_limit` largest cities."""
    key = survey_key(survey_id)
    documents = await snapshots.documents()
    if filters == Filters(survey_id=survey_id):
        if public:
            views = await snapshots.public(documents)
            shaped = views.get(survey_id) or suppress(summary(survey_id, None), snapshots.min_cell)
            return SurveySummary.model_validate(limit_cities(shaped, city_limit))
        running = (await running_views(documents, city_limit)).get(survey_id)
        return SurveySummary.model_validate(running or summary(survey_id, None))
    counted = (await snapshots.cube(documents)).sum(filters)
    shaped = summary(survey_id, nest(counted.get(key, Counter())), city_limit)
    return SurveySummary.model_validate(
        {**shaped, "filters": filters, "computed_from": "raw responses"}
    )


async def _survey_documents(store: AnalyticsStore) -> dict[str, Document]:
    return await store.survey_documents(survey_key(s) for s in load_taxonomy().surveys)


async def partners(
    snapshots: Snapshots, themes: list[str], country: str | None, limit: int
) -> PartnerRanking:
    """Potential city partners among the counted responses, best first."""
    rows = await snapshots.partner_rows(await snapshots.documents())
    ranked = rank(rows, themes=themes, country=country)
    return PartnerRanking.model_validate(
        {"themes": themes, "country": country, "cities": len(ranked), "partners": ranked[:limit]},
        from_attributes=True,
    )
