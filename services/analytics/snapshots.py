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

from services.analytics.aggregates import Counted, Positioned, survey_key, survey_of
from services.analytics.audit import watermarks
from services.analytics.models import Filters
from services.analytics.partners import CityResponse, city_response
from services.analytics.states import Change, State, contribution, legacy_state
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
    """Counters of each (survey, country, respondent type) of the counted responses, and of
    the approved ones alone (`approved`)."""

    cells: dict[CubeCell, Counter[str]]
    marks: dict[str, Marks] = field(default_factory=dict)  # the state it counts
    approved: dict[CubeCell, Counter[str]] = field(default_factory=dict)

    def sum(self, filters: Filters) -> dict[str, Counter[str]]:
        """Counters per survey document key of the responses matching `filters`; with
        `review=approved` those of the approved ones, with every review status counted."""
        found = _summed(self.cells, filters)
        if filters.review != "approved":
            return found
        approved = _summed(self.approved, filters)
        for key, counters in found.items():
            only = approved.setdefault(key, Counter())
            for status in ("approved", "rejected"):
                only[f"by_review.{status}"] = counters[f"by_review.{status}"]
            only["by_review.pending"] = counters["total"] - counters["by_review.approved"]
        return approved


def _summed(cells: Mapping[CubeCell, Counter[str]], filters: Filters) -> dict[str, Counter[str]]:
    wanted = (filters.survey_id, filters.country, filters.respondent_type)
    found: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for cell, counters in cells.items():
        if all(want is None or want == have for want, have in zip(wanted, cell, strict=True)):
            found[survey_key(cell[0])].update(counters)
    return dict(found)


def _shares(item: Counted, key: str) -> list[tuple[CubeCell, Counter[str], bool]]:
    """What a counted response or change adds to which cell: (cell, counters, approved)."""
    if isinstance(item, Positioned):
        who = item.response.respondent
        return [((item.response.survey_id, who.country, who.type), item.delta(key), False)]
    assert isinstance(item, Change)
    shares = []
    for state, sign in ((item.before, -1), (item.after, 1)):
        if state is None or state.revision == 0:
            continue
        counters = contribution(state, key)
        if sign < 0:
            counters = Counter({path: -n for path, n in counters.items()})
        cell = (state.survey_id, state.country, state.respondent_type)
        shares.append((cell, counters, state.status == "approved"))
    return shares


@dataclass(frozen=True)
class Latest:
    """The newest counted state of each response (by chain order), within the watermarks."""

    states: dict[str, tuple[int, State]]
    marks: dict[str, Marks]


def _latest_of(item: Counted) -> tuple[str, int, State]:
    if isinstance(item, Positioned):
        return item.response.identity, 0, legacy_state(item.response)
    assert isinstance(item, Change)
    return item.identity, item.seq, item.after


def partner_row(state: State) -> CityResponse:
    """One counted response's share of the partner ranking."""
    taxonomy = load_taxonomy()
    return city_response(
        state.country,
        state.city,
        state.organization,
        state.consenting,
        state.codes,
        taxonomy.themes,
        taxonomy.modalities,
    )


class Snapshots:
    """The shared, lazily refreshed answers of one service process."""

    def __init__(self, store: AnalyticsStore, min_cell: int, running: RunningViews) -> None:
        self._store = store
        self.min_cell = min_cell
        self._running = running
        self._public: _Slot[dict[str, dict[str, Any]]] = _Slot()
        self._cube: _Slot[Cube] = _Slot()
        self._latest: _Slot[Latest] = _Slot()

    def close(self) -> None:
        """Stop the refreshes under way (the service is stopping)."""
        for slot in (self._public, self._cube, self._latest):
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
        """Each counted response's share of the partner ranking: its newest revision, unless
        rejected or retracted."""
        latest = await self._latest.get(documents, self.documents, self._newest)
        return [partner_row(state) for _, state in latest.states.values() if state.counted]

    async def latest(self, documents: Mapping[str, Document]) -> dict[str, State]:
        """The newest state of every response the documents count (by identity)."""
        latest = await self._latest.get(documents, self.documents, self._newest)
        return {identity: state for identity, (_, state) in latest.states.items()}

    async def _suppressed(self, documents: Mapping[str, Document]) -> dict[str, dict[str, Any]]:
        return suppress_views(await self._running(documents), self.min_cell)

    async def _count(self, documents: Mapping[str, Document]) -> Cube:
        marks = _marks(documents)
        base = self._cube.value
        query, since = _extension(base.marks if base else None, marks)
        if query is None:
            return Cube(base.cells if base else {}, marks, base.approved if base else {})
        extend = bool(base and since)
        every = dict(base.cells) if base and extend else {}
        approved = dict(base.approved) if base and extend else {}
        copied: set[tuple[bool, CubeCell]] = set()  # cells of `base` are served: copy them
        # One response or change at a time: the pass holds the cube, never the responses.
        async for item in self._store.counted(query):
            key = survey_key(item.survey_id)
            if item.offset <= since.get(key, {}).get(item.partition, -1):
                continue  # in `base` already
            # The same watermarks as the running documents: never a response stored but not
            # counted yet, so a filter matching everything gives the running numbers.
            if item.offset > marks.get(key, {}).get(item.partition, -1):
                continue
            for cell, counters, is_approved in _shares(item, key):
                targets = [(False, every)] + ([(True, approved)] if is_approved else [])
                for which, cells in targets:
                    if (which, cell) not in copied:
                        cells[cell] = Counter(cells.get(cell, Counter()))
                        copied.add((which, cell))
                    cells[cell].update(counters)
        return Cube(every, marks, approved)

    async def _newest(self, documents: Mapping[str, Document]) -> Latest:
        marks = _marks(documents)
        base = self._latest.value
        query, since = _extension(base.marks if base else None, marks)
        if query is None:
            return Latest(base.states if base else {}, marks)
        states = dict(base.states) if base and since else {}
        async for item in self._store.counted(query):
            key = survey_key(item.survey_id)
            if item.offset > marks.get(key, {}).get(item.partition, -1):
                continue  # stored, not counted yet
            if item.offset <= since.get(key, {}).get(item.partition, -1):
                continue  # in `base` already
            identity, seq, state = _latest_of(item)
            if identity not in states or states[identity][0] < seq:
                states[identity] = (seq, state)
        return Latest(states, marks)


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
