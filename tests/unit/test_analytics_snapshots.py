"""services.analytics.snapshots: one computation per state of the documents, shared by every
request; a slow refresh answered from the previous state; filters as sums of cube cells."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest

from services.analytics import snapshots
from services.analytics.models import Filters
from services.analytics.snapshots import Cube, _Slot, fingerprint, newer


def state(offset: int) -> dict[str, dict[str, Any]]:
    return {"survey:a": {"_id": f"survey:a#{offset:012d}", "applied": {"p0": offset}}}


class Source:
    """The documents as the store would give them, and a computation that counts its calls."""

    def __init__(self, offset: int, delay: float = 0.0) -> None:
        self.offset = offset
        self.delay = delay
        self.computed: list[int] = []

    async def read(self) -> dict[str, dict[str, Any]]:
        return state(self.offset)

    async def compute(self, documents: Mapping[str, dict[str, Any]]) -> int:
        await asyncio.sleep(self.delay)
        offset = int(documents["survey:a"]["applied"]["p0"])
        self.computed.append(offset)
        return offset


async def test_slot_computes_once_for_concurrent_requests_of_one_state() -> None:
    slot: _Slot[int] = _Slot()
    source = Source(7, delay=0.05)

    answers = await asyncio.gather(
        *(slot.get(state(7), source.read, source.compute) for _ in range(5))
    )
    again = await slot.get(state(7), source.read, source.compute)

    assert answers == [7] * 5
    assert again == 7
    assert source.computed == [7]


async def test_slot_recomputes_when_documents_move_on() -> None:
    slot: _Slot[int] = _Slot()
    source = Source(7)
    await slot.get(state(7), source.read, source.compute)

    source.offset = 9
    answer = await slot.get(state(9), source.read, source.compute)

    assert answer == 9
    assert source.computed == [7, 9]


async def test_slot_slow_refresh_answers_previous_state_then_new(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(snapshots, "FRESH_WAIT_SECONDS", 0.05)
    slot: _Slot[int] = _Slot()
    source = Source(7)
    await slot.get(state(7), source.read, source.compute)

    source.offset, source.delay = 9, 0.3
    stale = await slot.get(state(9), source.read, source.compute)
    assert slot.refresh is not None
    await slot.refresh
    fresh = await slot.get(state(9), source.read, source.compute)

    assert (stale, fresh) == (7, 9)
    assert source.computed == [7, 9]


def test_fingerprint_changes_with_version_or_watermarks() -> None:
    assert fingerprint(state(7)) == fingerprint(state(7))
    assert fingerprint(state(7)) != fingerprint(state(8))


def test_cube_sum_filters_cells_by_survey_country_and_type() -> None:
    cube = Cube(
        {
            ("a", "VN", "cso"): Counter({"total": 2, "by_country.VN": 2}),
            ("a", "KE", "cso"): Counter({"total": 1, "by_country.KE": 1}),
            ("b", "VN", "igo"): Counter({"total": 4, "by_country.VN": 4}),
        }
    )

    assert cube.sum(Filters(country="VN")) == {
        "survey:a": Counter({"total": 2, "by_country.VN": 2}),
        "survey:b": Counter({"total": 4, "by_country.VN": 4}),
    }
    assert cube.sum(Filters(survey_id="a", respondent_type="cso"))["survey:a"]["total"] == 3
    assert cube.sum(Filters(country="LK")) == {}


def test_newer_reads_only_offsets_counted_since() -> None:
    since = {"survey:a": {0: 10, 1: 4}}
    now = {"survey:a": {0: 12, 1: 4}, "survey:b": {1: 3}}

    assert newer(since, now) == [
        {
            "survey_id": "a",
            "position.partition": 0,
            "position.offset": {"$gt": 10, "$lte": 12},
        },
        {
            "survey_id": "b",
            "position.partition": 1,
            "position.offset": {"$gt": -1, "$lte": 3},
        },
    ]
    assert newer(since, since) == []


def test_newer_none_when_a_watermark_went_back() -> None:
    # After a rebuild the documents may count less than the previous pass did: read all again.
    assert newer({"survey:a": {0: 10}}, {"survey:a": {0: 9}}) is None
    assert newer({"survey:a": {0: 10}}, {}) is None


def test_cube_sum_review_approved_counts_approved_cells_with_every_status() -> None:
    cube = Cube(
        {
            ("a", "VN", "cso"): Counter(
                {"total": 3, "by_country.VN": 3, "by_review.approved": 1, "by_review.rejected": 2}
            ),
            ("a", "KE", "cso"): Counter({"total": 1, "by_country.KE": 1}),
        },
        approved={
            ("a", "VN", "cso"): Counter({"total": 1, "by_country.VN": 1, "by_review.approved": 1})
        },
    )

    approved = cube.sum(Filters(review="approved"))["survey:a"]

    assert (approved["total"], approved["by_country.VN"], approved["by_country.KE"]) == (1, 1, 0)
    # Pending: the counted ones not approved (3 + 1 - 1); rejected as counted.
    assert (approved["by_review.pending"], approved["by_review.rejected"]) == (3, 2)
    assert cube.sum(Filters())["survey:a"]["total"] == 4
