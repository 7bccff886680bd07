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
from services.analytics.documents import STORED_ONLY, displaced_id, revision_id
from services.analytics.models import (
    Filters,
    Overview,
    PartnerRanking,
    QueuedResponse,
    ReviewQueue,
    SurveySummary,
)
from services.analytics.partners import rank
from services.analytics.snapshots import Snapshots
from services.analytics.states import State
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


async def review_queue(
    snapshots: Snapshots, store: AnalyticsStore, filters: Filters, limit: int
) -> ReviewQueue:
    """The pending responses matching `filters`, oldest submission first, with their answers."""
    latest = await snapshots.latest(await snapshots.documents())
    waiting = sorted(
        (
            (state, identity)
            for identity, state in latest.items()
            if state.counted
            and state.status == "pending"
            and filters.survey_id in (None, state.survey_id)
            and filters.country in (None, state.country)
        ),
        key=lambda pair: (_day(pair[0]), pair[1]),
    )
    shown = waiting[:limit]
    ids = [revision_id(identity, state.revision) for state, identity in shown]
    # A revision 1 that came after a review or a later revision is stored beside a placeholder.
    beside = [displaced_id(identity) for state, identity in shown if state.revision == 1]
    stored = await store.raw_for(ids + beside)
    responses = []
    for (state, identity), raw in zip(shown, ids, strict=True):
        document = stored.get(raw) or stored.get(displaced_id(identity))
        if document is None:
            continue  # the change is counted but its raw revision is not readable
        response = {k: v for k, v in document.items() if k not in STORED_ONLY}
        responses.append(
            QueuedResponse(
                survey_id=state.survey_id,
                response_id=identity.partition("/")[2],
                revision=state.revision,
                country=state.country,
                respondent_type=state.respondent_type,
                city=state.city,
                submitted_at=str(document.get("submitted_at", "")),
                response=response,
            )
        )
    return ReviewQueue(filters=filters, pending=len(waiting), responses=responses)


def _day(state: State) -> str:
    # The first `by_day` path holds the submission date: oldest first without reading answers.
    return next((path for path in state.paths if path.startswith("by_day.")), "")
