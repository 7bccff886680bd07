"""The API's views: running aggregates when unfiltered, exact recounts when filtered, and the
partner ranking. Reads the store, calls the pure functions, returns the response models."""

from __future__ import annotations

from collections import Counter

from services.analytics.aggregates import OVERALL, summary, survey_key
from services.analytics.audit import nest, recount_within, watermarks
from services.analytics.models import Filters, Overview, PartnerRanking, SurveySummary
from services.analytics.partners import city_response, rank
from services.analytics.store import AnalyticsStore, responses_query
from shared.taxonomy import load_taxonomy

PARTNER_FIELDS = [
    "respondent",
    "capacity_needs",
    "collaboration_interests",
    "has_focal_point",
    "consenting_focal_point",
]


async def overview(store: AnalyticsStore, filters: Filters) -> Overview:
    """Every survey together, or the responses matching `filters`."""
    if filters == Filters():
        return Overview.model_validate(summary(None, await store.aggregate(OVERALL)))
    counters = await _recount(store, OVERALL, filters)
    shaped = summary(None, nest(counters))
    return Overview.model_validate({**shaped, "filters": filters, "computed_from": "raw responses"})


async def survey_summary(store: AnalyticsStore, survey_id: str, filters: Filters) -> SurveySummary:
    """One survey, or its responses of a country and/or respondent type."""
    key = survey_key(survey_id)
    if filters == Filters(survey_id=survey_id):
        return SurveySummary.model_validate(summary(survey_id, await store.aggregate(key)))
    shaped = summary(survey_id, nest(await _recount(store, key, filters)))
    return SurveySummary.model_validate(
        {**shaped, "filters": filters, "computed_from": "raw responses"}
    )


async def _recount(store: AnalyticsStore, key: str, filters: Filters) -> Counter[str]:
    # The same watermarks as the running document: a filter that matches every response gives
    # exactly the running numbers, never responses that are stored but not yet counted.
    marks = watermarks(await store.newest(key))
    query = responses_query(filters.survey_id, filters.country, filters.respondent_type)
    items = [item async for item in store.positioned(query)]
    return recount_within(items, lambda _: marks).get(key, Counter())


async def partners(
    store: AnalyticsStore, themes: list[str], country: str | None, limit: int
) -> PartnerRanking:
    """Potential city partners among the counted responses, best first."""
    marks = watermarks(await store.newest(OVERALL))
    taxonomy = load_taxonomy()
    rows = []
    async for row in store.raw_documents(responses_query(country=country), PARTNER_FIELDS):
        position = row["position"]
        if position["offset"] > marks.get(position["partition"], -1):
            continue  # stored, not counted yet
        who = row["respondent"]
        # Responses stored before consent could be withdrawn always had consent.
        consenting = bool(row.get("consenting_focal_point", row.get("has_focal_point", False)))
        rows.append(
            city_response(
                who["country"],
                who["city"],
                who.get("organization"),
                consenting,
                [*row.get("capacity_needs", []), *row.get("collaboration_interests", [])],
                taxonomy.themes,
                taxonomy.modalities,
            )
        )
    ranked = rank(rows, themes=themes, country=country)
    return PartnerRanking.model_validate(
        {"themes": themes, "country": country, "cities": len(ranked), "partners": ranked[:limit]},
        from_attributes=True,
    )
