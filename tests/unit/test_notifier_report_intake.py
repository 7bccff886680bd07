"""services.notifier.report_intake: the provider reports' use case, with a small fake of the
suppression list (the real adapter: tests/integration/test_notifier_suppressions.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from services.notifier.records import Suppression
from services.notifier.report_formats import Parsed
from services.notifier.report_intake import Recorded, ReportIntake, outcome
from services.notifier.settings import NotifierSettings
from services.notifier.suppressions import Applied, Event, Report, ReportInProgress
from services.notifier.wiring import use_cases

AT = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


@dataclass
class SuppressionList:
    """Records each report once; a hard bounce or a complaint suppresses; `busy` reports are
    being recorded by another request."""

    seen: set[tuple[str, str]] = field(default_factory=set)
    suppressed: dict[str, Suppression] = field(default_factory=dict)
    busy: set[str] = field(default_factory=set)
    limits: list[int] = field(default_factory=list)

    async def record(self, report: Report, soft_limit: int) -> Applied:
        self.limits.append(soft_limit)
        if report.report_id in self.busy:
            raise ReportInProgress(report.report_id)
        new = (report.report_id, report.email_key) not in self.seen
        self.seen.add((report.report_id, report.email_key))
        if report.event is not Event.SOFT_BOUNCE:
            self.suppressed[report.email_key] = Suppression(
                report.email_key, report.event.value, report.provider, AT, report.report_id
            )
        return Applied(new, report.email_key in self.suppressed)

    async def listing(self, limit: int) -> list[Suppression]:
        return list(self.suppressed.values())[:limit]

    async def counts(self) -> dict[str, int]:
        return {"bounce": len(self.suppressed)} if self.suppressed else {}

    async def lift(self, email_key: str) -> bool:
        return self.suppressed.pop(email_key, None) is not None


def intake(store: SuppressionList) -> ReportIntake:
    return ReportIntake(store, lambda address: f"key:{address.lower()}", soft_bounce_limit=3)


def bounce(report_id: str, *keys: str, event: Event = Event.BOUNCE) -> Parsed:
    return Parsed([Report("ses", report_id, key, event) for key in keys])


def test_outcome_none_new_duplicate_else_recorded() -> None:
    assert outcome([Applied(False, True), Applied(False, False)]) == Recorded("duplicate", 2, 1)
    assert outcome([Applied(True, False), Applied(False, True)]) == Recorded("recorded", 2, 1)


async def test_record_bounce_suppresses_each_recipient_once() -> None:
    store = SuppressionList()
    reports = intake(store)

    first = await reports.record(bounce("r1", "key:a", "key:b"))
    again = await reports.record(bounce("r1", "key:a", "key:b"))

    assert first.answer() == {"status": "recorded", "recipients": 2, "suppressed": 2}
    assert again.answer() == {"status": "duplicate", "recipients": 2, "suppressed": 2}
    assert store.limits == [3, 3, 3, 3]  # the configured soft-bounce limit, every time


async def test_record_soft_bounce_recorded_not_suppressed() -> None:
    recorded = await intake(SuppressionList()).record(
        bounce("r2", "key:c", event=Event.SOFT_BOUNCE)
    )

    assert recorded.answer() == {"status": "recorded", "recipients": 1, "suppressed": 0}


async def test_record_ignored_event_touches_nothing() -> None:
    store = SuppressionList()

    recorded = await intake(store).record(Parsed([], ignored="delivery"))

    assert recorded.answer() == {"status": "ignored", "reason": "delivery"}
    assert store.limits == [] and store.seen == set()


async def test_record_report_in_progress_raised_for_the_route() -> None:
    store = SuppressionList(busy={"r3"})

    with pytest.raises(ReportInProgress):
        await intake(store).record(bounce("r3", "key:d"))


async def test_listing_and_lift_operators_view() -> None:
    store = SuppressionList()
    reports = intake(store)
    await reports.record(bounce("r4", "key:e"))

    listed = await reports.listing(10)
    lifted, again = await reports.lift("key:e"), await reports.lift("key:e")

    assert listed == {
        "counts": {"bounce": 1},
        "suppressions": [
            {
                "focal_point": "key:e",
                "reason": "bounce",
                "source": "ses",
                "report_id": "r4",
                "at": AT.isoformat(),
                "detail": None,
            }
        ],
    }
    assert (lifted, again) == (True, False)
    assert (await reports.listing(10))["suppressions"] == []


def test_use_cases_report_intake_only_with_a_suppression_list() -> None:
    settings = NotifierSettings(soft_bounce_limit=5)
    registry: Any = type("Registry", (), {"key": staticmethod(lambda address: "k")})()
    without = use_cases(settings, registry, None, None)  # type: ignore[arg-type]
    wired = use_cases(settings, registry, None, None, None, SuppressionList())  # type: ignore[arg-type]

    assert without.reports is None
    assert wired.reports is not None and wired.reports.soft_bounce_limit == 5
    assert wired.reports.key("An@Example.org") == "k"
