"""Answers computed once per state of the aggregate documents and shared by every request.

Filtered views and the partner ranking need the stored responses, and reading them is a scan
(on FerretDB any filter scans the whole collection). So they are not read per request: one pass
over the stored responses, up to the watermarks of the surveys' aggregate documents, builds a
*cube* (the counters of each survey x country x respondent type) and the partner rows; every
filter is then a sum of cube cells, every ranking a ranking of those rows. A pass is made only
when the documents moved on (new responses counted), and it reads only the responses counted
since the previous pass (all of them again if a rebuild lowered a watermark), one at a time
however many requests ask. A request waits for it up to `FRESH_WAIT_SECONDS`, then gets the
previous state's answer (exact for the responses that state counts; the view's numbers then
trail the running ones by one pass).

Why reading only the new ones is exact: a response is stored before any aggregate document
counts its position (`store.py`), so every response at or below the watermarks of one pass was
already stored when that pass read them.

The public, suppressed summaries are computed the same way, all views together (the overview
and every survey's summary), because suppression must look at the sums that tie them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from services.analytics.aggregates import survey_key, survey_of
from services.analytics.audit import recount_within, watermarks
from services.analytics.models import Filters
from services.analytics.partners import CityResponse, city_response
from services.analytics.store import AnalyticsStore
from services.analytics.suppression import suppress_views
from shared.mongo import Document
from shared.taxonomy import load_taxonomy

# The unfiltered overview (key "") and survey summaries (key: survey id) of these documents.
RunningViews = Callable[[Mapping[str, Document]], Awaitable[dict[str, dict[str, Any]]]]
Fingerprint = tuple[tuple[str, tuple[tuple[int, int], ...]], ...]
CubeCell = tuple[str, str, str]  # survey id, country, respondent type
T = TypeVar("T")
log = logging.getLogger(__name__)
# A request waits this long for a refresh before it is answered from the previous state.
FRESH_WAIT_SECONDS = 2.0

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
    """The newest value computed, the documents' state it counts, and the refresh under way."""

    at: Fingerprint | None = None
    value: T | None = None
    refresh: asyncio.Task[T] | None = None

    async def get(
        self,
        documents: Mapping[str, Document],
        read: Callable[[], Awaitable[dict[str, Document]]],
        compute: Callable[[Mapping[str, Document]], Awaitable[T]],
    ) -> T:
        wanted = fingerprint(documents)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FRESH_WAIT_SECONDS
        while self.value is None or self.at != wanted:
            started_now = self.refresh is None or self.refresh.done()
            if started_now:
                # One refresh at a time, however many requests ask: one pass per process.
                self.refresh = asyncio.create_task(self._refreshed(read, compute))
                self.refresh.add_done_callback(_retrieve)
            task = self.refresh
            assert task is not None
            if self.value is None:
                await asyncio.shield(task)
            else:
                done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
                if not done:
                    # A long pass (many responses, a slow server): answer from the previous
                    # state, exact for the responses it counts, while the refresh goes on.
                    return self.value
                task.result()
            if started_now:
                break  # it read the documents after this request did: at least as new
        assert self.value is not None
        return self.value

    async def _refreshed(
        self,
        read: Callable[[], Awaitable[dict[str, Document]]],
        compute: Callable[[Mapping[str, Document]], Awaitable[T]],
    ) -> T:
        documents = await read()
        value = await compute(documents)
        self.value, self.at = value, fingerprint(documents)
        return value

    def cancel(self) -> None:
        if self.refresh is not None:
            self.refresh.cancel()


def _retrieve(task: asyncio.Task[Any]) -> None:
    # A refresh nobody awaited any more must not fail unseen.
    if not task.cancelled() and task.exception() is not None:
        log.warning("snapshot refresh failed", exc_info=task.exception())


Marks = dict[int, int]


def newer(since: Mapping[str, Marks], now: Mapping[str, Marks]) -> list[Document] | None:
    """Filters (to be or-ed) of the responses counted at the watermarks `now` and not at `since`
    (document key -> partition -> offset): none when nothing is new; None when `now` is not
    ahead of `since` everywhere (a rebuild lowered a watermark), so that a full pass is needed."""
    for key, marks in since.items():
        ahead = now.get(key, {})
        if any(ahead.get(partition, -1) < offset for partition, offset in marks.items()):
            return None
    clauses: list[Document] = []
    for key, marks in sorted(now.items()):
        for partition, offset in sorted(marks.items()):
            counted = since.get(key, {}).get(partition, -1)
            if offset > counted:
                clauses.append(
                    {
                        "survey_id": survey_of(key),
                        "position.partition": partition,
                        "position.offset": {"$gt": counted, "$lte": offset},
                    }
                )
    return clauses


def _marks(documents: Mapping[str, Document]) -> dict[str, Marks]:
    return {key: watermarks(document) for key, document in documents.items()}


@dataclass(frozen=True)
class Cube:
    """Counters of each (survey, country, respondent type) of the counted responses."""

    cells: dict[CubeCell, Counter[str]]
    marks: dict[str, Marks] = field(default_factory=dict)  # the state it counts

    def sum(self, filters: Filters) -> dict[str, Counter[str]]:
        """Counters per survey document key of the responses matching `filters`."""
        wanted = (filters.survey_id, filters.country, filters.respondent_type)
        found: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for cell, counters in self.cells.items():
            if all(want is None or want == have for want, have in zip(wanted, cell, strict=True)):
                found[survey_key(cell[0])].update(counters)
        return dict(found)


@dataclass(frozen=True)
class PartnerRows:
    """Each counted response's share of the partner ranking."""

    rows: list[CityResponse]
    marks: dict[str, Marks]


class Snapshots:
    """The shared, lazily refreshed answers of one service process."""

    def __init__(self, store: AnalyticsStore, min_cell: int, running: RunningViews) -> None:
        self._store = store
        self.min_cell = min_cell
        self._running = running
        self._public: _Slot[dict[str, dict[str, Any]]] = _Slot()
        self._cube: _Slot[Cube] = _Slot()
        self._partners: _Slot[PartnerRows] = _Slot()

    def close(self) -> None:
        """Stop the refreshes under way (the service is stopping)."""
        for slot in (self._public, self._cube, self._partners):
            slot.cancel()

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
        return (await self._partners.get(documents, self.documents, self._rows)).rows

    async def _suppressed(self, documents: Mapping[str, Document]) -> dict[str, dict[str, Any]]:
        return suppress_views(await self._running(documents), self.min_cell)

    async def _count(self, documents: Mapping[str, Document]) -> Cube:
        marks = _marks(documents)
        base = self._cube.value
        query, since = _extension(base.marks if base else None, marks)
        if query is None:
            return Cube(base.cells if base else {}, marks)
        cells = dict(base.cells) if base and since else {}
        copied: set[CubeCell] = set()  # cells of `base` are served meanwhile: copy, never change
        # One response at a time: the pass holds the cube, never the responses.
        async for item in self._store.positioned(query):
            key = survey_key(item.response.survey_id)
            if item.offset <= since.get(key, {}).get(item.partition, -1):
                continue  # in `base` already
            # The same watermarks as the running documents: never a response stored but not
            # counted yet, so a filter matching everything gives the running numbers.
            counted = recount_within([item], lambda document: marks.get(document, {}))
            if key in counted:
                who = item.response.respondent
                cell = (item.response.survey_id, who.country, who.type)
                if cell not in copied:
                    cells[cell] = Counter(cells.get(cell, Counter()))
                    copied.add(cell)
                cells[cell].update(counted[key])
        return Cube(cells, marks)

    async def _rows(self, documents: Mapping[str, Document]) -> PartnerRows:
        marks = _marks(documents)
        base = self._partners.value
        query, since = _extension(base.marks if base else None, marks)
        if query is None:
            return PartnerRows(base.rows if base else [], marks)
        taxonomy = load_taxonomy()
        rows = list(base.rows) if base and since else []
        async for row in self._store.raw_documents(query, PARTNER_FIELDS):
            position = row["position"]
            key = survey_key(row["survey_id"])
            if position["offset"] > marks.get(key, {}).get(position["partition"], -1):
                continue  # stored, not counted yet
            if position["offset"] <= since.get(key, {}).get(position["partition"], -1):
                continue  # in `base` already
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
        return PartnerRows(rows, marks)


def _extension(
    since: dict[str, Marks] | None, now: dict[str, Marks]
) -> tuple[Document | None, dict[str, Marks]]:
    """What a pass reads: the responses counted since the previous pass's state when `now` is
    ahead of it (with that state), else all of them (with none). No query: nothing new."""
    if since is None:
        return {}, {}
    clauses = newer(since, now)
    if clauses is None:
        return {}, {}
    return ({"$or": clauses} if clauses else None), since
