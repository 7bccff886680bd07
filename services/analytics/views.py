"""The API's views: running aggregates when unfiltered, exact recounts when filtered, and the
partner ranking. Reads the store, calls the pure functions, returns the response models.

The overall numbers are the sum of the surveys' documents read side by side, not the overall
document: that one is written after the surveys', so a reader could briefly see a survey ahead
of the overview. Summed, the overview never shows less than a survey read before it, and the
surveys listed always add up to its total. Filtered views and the partner ranking count a
response up to the watermarks of its own survey's document, so a filter matching everything
gives exactly the unfiltered numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

from services.analytics.aggregates import (
    OVERALL,
    overall_from_surveys,
    summary,
    survey_key,
    survey_of,
)
from services.analytics.audit import Marks, flatten, nest, recount_within, watermarks
from services.analytics.models import Filters, Overview, PartnerRanking, SurveySummary
from services.analytics.partners import city_response, rank
from services.analytics.store import AnalyticsStore, responses_query
from shared.mongo import Document
from shared.taxonomy import load_taxonomy

PARTNER_FIELDS = [
    "survey_id",
    "respondent",
    "capacity_needs",
    "collaboration_interests",
    "has_focal_point",
    "consenting_focal_point",
]


async def survey_totals(store: AnalyticsStore) -> dict[str, int]:
    """Unique responses per survey that has any."""
    documents = await _survey_documents(store)
    totals = {survey_of(key): int(document.get("total", 0)) for key, document in documents.items()}
    return {survey_id: total for survey_id, total in totals.items() if total}


async def overview(
    store: AnalyticsStore, filters: Filters, city_limit: int | None = None
) -> Overview:
    """Every survey together, or the responses matching `filters` (the `city_limit` largest
    cities)."""
    documents = await _survey_documents(store)
    if filters == Filters():
        surveys = {key: flatten(document) for key, document in documents.items()}
        shaped = summary(None, nest(overall_from_surveys(surveys)), city_limit)
        return Overview.model_validate(shaped)
    marks = _marks_by_survey(documents)
    counted = await _recount(store, filters, lambda key: marks.get(key, {}))
    surveys = {key: counters for key, counters in counted.items() if key != OVERALL}
    shaped = summary(None, nest(overall_from_surveys(surveys)), city_limit)
    return Overview.model_validate({**shaped, "filters": filters, "computed_from": "raw responses"})


async def survey_summary(
    store: AnalyticsStore, survey_id: str, filters: Filters, city_limit: int | None = None
) -> SurveySummary:
    """One survey, or its responses of a country and/or respondent type (the `city_limit`
    largest cities)."""
    key = survey_key(survey_id)
    if filters == Filters(survey_id=survey_id):
        shaped = summary(survey_id, await store.aggregate(key), city_limit)
        return SurveySummary.model_validate(shaped)
    marks = watermarks(await store.newest(key))
    counted = await _recount(store, filters, lambda _: marks)
    shaped = summary(survey_id, nest(counted.get(key, Counter())), city_limit)
    return SurveySummary.model_validate(
        {**shaped, "filters": filters, "computed_from": "raw responses"}
    )


async def _survey_documents(store: AnalyticsStore) -> dict[str, Document]:
    return await store.survey_documents(survey_key(s) for s in load_taxonomy().surveys)


def _marks_by_survey(documents: Mapping[str, Document]) -> dict[str, Marks]:
    return {key: watermarks(document) for key, document in documents.items()}


async def _recount(
    store: AnalyticsStore, filters: Filters, marks: Callable[[str], Marks]
) -> dict[str, Counter[str]]:
    # The same watermarks as the running documents: never a response stored but not counted yet.
    query = responses_query(filters.survey_id, filters.country, filters.respondent_type)
    items = [item async for item in store.positioned(query)]
    return recount_within(items, marks)


async def partners(
    store: AnalyticsStore, themes: list[str], country: str | None, limit: int
) -> PartnerRanking:
    """Potential city partners among the counted responses, best first."""
    marks = _marks_by_survey(await _survey_documents(store))
    taxonomy = load_taxonomy()
    rows = []
    async for row in store.raw_documents(responses_query(country=country), PARTNER_FIELDS):
        position = row["position"]
        counted_up_to = marks.get(survey_key(row["survey_id"]), {})
        if position["offset"] > counted_up_to.get(position["partition"], -1):
            continue  # stored, not counted yet
        who = row["respondent"]
        # Responses stored before consent could be withdrawn always had consent.
        consenting = bool(row.get("consenting_focal_point", row.get("has_focal_point", False)))
        codes = [*row.get("capacity_needs", []), *row.get("collaboration_interests", [])]
        # A code newer than this taxonomy counts as a theme, as in the aggregates' `type_themes`.
        new_themes = {*taxonomy.themes, *(c for c in codes if c not in taxonomy.interest_codes)}
        rows.append(
            city_response(
                who["country"],
                who["city"],
                who.get("organization"),
                consenting,
                codes,
                new_themes,
                taxonomy.modalities,
            )
        )
    ranked = rank(rows, themes=themes, country=country)
    return PartnerRanking.model_validate(
        {"themes": themes, "country": country, "cities": len(ranked), "partners": ranked[:limit]},
        from_attributes=True,
    )
