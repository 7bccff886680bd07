"""Answers computed once per state of the aggregate documents and shared by every request.

Filtered views and the partner ranking need the stored responses, and reading them is a scan
(on FerretDB any filter scans the whole collection). So they are not read per request: one pass
over the stored responses, up to the watermarks of the surveys' aggregate documents, builds a
*cube* (the counters of each survey x country x respondent type) and the partner rows; every
filter is then a sum of cube cells, every ranking a ranking of those rows. The pass is redone
only when the documents moved on (new responses counted), once however many requests wait.

The public, suppressed summaries are computed the same way, all views together (the overview
and every survey's summary), because suppression must look at the sums that tie them.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from services.analytics.aggregates import (
    Positioned,
    overall_from_surveys,
    summary,
    survey_key,
    survey_of,
)
from services.analytics.audit import counters_of, flatten, nest, recount_within, watermarks
from services.analytics.models import Filters
from services.analytics.partners import CityResponse, city_response
from services.analytics.store import AnalyticsStore
from services.analytics.suppression import OVERVIEW, suppress_views
from shared.mongo import Document
from shared.taxonomy import load_taxonomy

Fingerprint = tuple[tuple[str, tuple[tuple[int, int], ...]], ...]
CubeCell = tuple[str, str, str]  # survey id, country, respondent type
T = TypeVar("T")

PARTNER_FIELDS = [
    "survey_id",
    "respondent",
    "capacity_needs",
    "collaboration_interests",
    "has_focal_point",
    "consenting_focal_point",
]


def fingerprint(documents: Mapping[str, Document]) -> Fingerprint:
    """What identifies the counted responses: each document's version and watermarks."""
    return tuple(
        (f"{document.get('_id', key)}", tuple(sorted(watermarks(document).items())))
        for key, document in sorted(documents.items())
    )


@dataclass
class _Slot(Generic[T]):
    """The newest value computed and the documents' state it was computed for."""

    at: Fingerprint | None = None
    value: T | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def get(
        self,
        documents: Mapping[str, Document],
        read: Callable[[], Awaitable[dict[str, Document]]],
        compute: Callable[[Mapping[str, Document]], Awaitable[T]],
    ) -> T:
        if self.value is not None and self.at == fingerprint(documents):
            return self.value
        async with self.lock:
            # Whoever waited here gets what the holder computed, or computes the newest state.
            documents = await read()
            now = fingerprint(documents)
            if self.value is None or self.at != now:
                self.value, self.at = await compute(documents), now
            return self.value


@dataclass(frozen=True)
class Cube:
    """Counters of each (survey, country, respondent type) of the counted responses."""

    cells: dict[CubeCell, Counter[str]]

    def sum(self, filters: Filters) -> dict[str, Counter[str]]:
        """Counters per survey document key of the responses matching `filters`."""
        wanted = (filters.survey_id, filters.country, filters.respondent_type)
        found: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for cell, counters in self.cells.items():
            if all(want is None or want == have for want, have in zip(wanted, cell, strict=True)):
                found[survey_key(cell[0])].update(counters)
        return dict(found)


class Snapshots:
    """The shared, lazily refreshed answers of one service process."""

    def __init__(self, store: AnalyticsStore, min_cell: int) -> None:
        self._store = store
        self.min_cell = min_cell
        self._public: _Slot[dict[str, dict[str, Any]]] = _Slot()
        self._cube: _Slot[Cube] = _Slot()
        self._partners: _Slot[list[CityResponse]] = _Slot()

    async def documents(self) -> dict[str, Document]:
        """The newest version of every survey's aggregate document."""
        return await self._store.survey_documents(survey_key(s) for s in load_taxonomy().surveys)

    async def public(self, documents: Mapping[str, Document]) -> dict[str, dict[str, Any]]:
        """The suppressed overview (key `""`) and survey summaries (key: survey id)."""
        return await self._public.get(documents, self.documents, self._suppressed)

    async def cube(self, documents: Mapping[str, Document]) -> Cube:
        """The cube of the counted responses."""
        return await self._cube.get(documents, self.documents, self._count)

    async def partner_rows(self, documents: Mapping[str, Document]) -> list[CityResponse]:
        """Each counted response's share of the partner ranking."""
        return await self._partners.get(documents, self.documents, self._rows)

    async def _suppressed(self, documents: Mapping[str, Document]) -> dict[str, dict[str, Any]]:
        surveys = {key: flatten(document) for key, document in documents.items()}
        views = {OVERVIEW: summary(None, nest(overall_from_surveys(surveys)))}
        for key, document in documents.items():
            views[survey_of(key)] = summary(survey_of(key), counters_of(document))
        return suppress_views(views, self.min_cell)

    async def _count(self, documents: Mapping[str, Document]) -> Cube:
        marks = {key: watermarks(document) for key, document in documents.items()}
        grouped: defaultdict[CubeCell, list[Positioned]] = defaultdict(list)
        async for item in self._store.positioned():
            who = item.response.respondent
            grouped[(item.response.survey_id, who.country, who.type)].append(item)
        cells: dict[CubeCell, Counter[str]] = {}
        for cell, items in grouped.items():
            # The same watermarks as the running documents: never a response stored but not
            # counted yet, so a filter matching everything gives the running numbers.
            counted = recount_within(items, lambda key: marks.get(key, {}))
            cells[cell] = counted.get(survey_key(cell[0]), Counter())
        return Cube(cells)

    async def _rows(self, documents: Mapping[str, Document]) -> list[CityResponse]:
        marks = {key: watermarks(document) for key, document in documents.items()}
        taxonomy = load_taxonomy()
        rows = []
        async for row in self._store.raw_documents({}, PARTNER_FIELDS):
            position = row["position"]
            counted_up_to = marks.get(survey_key(row["survey_id"]), {})
            if position["offset"] > counted_up_to.get(position["partition"], -1):
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
        return rows
