"""services.notifier.notifier and people: registration, double opt-in and the personal pages'
choices on typed focal-point records, with small fakes at the ports (the real registry:
tests/integration/test_notifier_registry.py, test_notifier_consent.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.notifier import consent
from services.notifier.notifier import Notifier, rounds
from services.notifier.people import People
from services.notifier.records import FocalPoint, Request
from services.notifier.settings import NotifierSettings
from shared.events import PilotAnnounced, ResponseReview, SurveyResponse

NOW = datetime.now(UTC)


@dataclass
class Registry:
    """One focal point: what `register` stores and a confirmation link names (`link`)."""

    record: FocalPoint | None
    confirmed: FocalPoint | None = None  # what `confirm` returns: None when not open
    pilots: list[PilotAnnounced] = field(default_factory=list)
    requested: list[Request] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    released: bool = False  # what `review` says of the record

    def key(self, email: str) -> str:
        return "k1"

    async def register_many(
        self, responses: list[SurveyResponse], first_request: Any = None
    ) -> list[FocalPoint | None]:
        return [self.record for _ in responses]

    async def review(self, review: ResponseReview) -> list[tuple[FocalPoint, bool]]:
        self.calls.append(("review", review.status))
        return [] if self.record is None else [(self.record, self.released)]

    async def request_confirmation(self, email_key: str, request: Request) -> None:
        self.requested.append(request)

    async def open_pilots(self, today: date) -> list[PilotAnnounced]:
        return self.pilots

    async def request_of(self, link_id: str) -> tuple[FocalPoint, int] | None:
        return (self.record, 1) if self.record is not None and link_id == "link" else None

    async def confirm(self, email_key: str, number: int, now: datetime) -> FocalPoint | None:
        self.calls.append(("confirm", (email_key, number)))
        return self.confirmed

    async def get(self, key: str) -> FocalPoint | None:
        return self.record

    async def unsubscribe(self, key: str) -> bool:
        self.calls.append(("unsubscribe", key))
        return True

    async def set_preferences(self, key: str, choices: consent.Choices) -> FocalPoint | None:
        self.calls.append(("preferences", (key, choices)))
        return self.record


@dataclass
class Deliveries:
    created: list[tuple[str, str, list[str]]] = field(default_factory=list)
    confirmations: list[tuple[str, int]] = field(default_factory=list)

    async def create(
        self, pilot_id: str, email_key: str, codes: list[str], hold: float = 0.0, **_: Any
    ) -> bool:
        self.created.append((pilot_id, email_key, codes))
        return True

    async def create_confirmations(self, requests: list[tuple[str, int]]) -> int:
        self.confirmations.extend(requests)
        return len(requests)


def person(response: SurveyResponse, **fields: Any) -> FocalPoint:
    """The record `response` registered: consenting, not confirmed yet."""
    stored = FocalPoint(
        "k1",
        email="an.nguyen@example.org",
        consent=True,
        country="VN",
        survey_codes=("climate-resilience",),
        survey_id=response.survey_id,
        response_id=response.response_id,
    )
    return dataclasses.replace(stored, **fields)


def notifier(registry: Registry, deliveries: Deliveries, woken: list[int]) -> Notifier:
    return Notifier(
        NotifierSettings(),
        registry,  # type: ignore[arg-type]
        deliveries,  # type: ignore[arg-type]
        wake=lambda: woken.append(1),
    )


@pytest.fixture
def response(make_event: Callable[..., SurveyResponse]) -> SurveyResponse:
    return make_event()


@pytest.fixture
def open_pilot(make_pilot_event: Callable[..., PilotAnnounced]) -> PilotAnnounced:
    return make_pilot_event(apply_by="2099-12-31")


async def test_on_response_first_consent_asks_confirmation_no_pilot(
    response: SurveyResponse, open_pilot: PilotAnnounced
) -> None:
    registry, deliveries, woken = Registry(person(response), pilots=[open_pilot]), Deliveries(), []

    created = await notifier(registry, deliveries, woken).on_response(response)

    assert created == 1
    [request] = registry.requested
    assert request.number == 1 and request.answered_at is None
    assert deliveries.confirmations == [("k1", 1)] and woken == [1]
    assert deliveries.created == []  # not confirmed: no pilot yet


async def test_on_response_confirmed_open_matching_pilot_delivered(
    response: SurveyResponse, open_pilot: PilotAnnounced
) -> None:
    record = person(response, confirmed_at=NOW)
    registry, deliveries, woken = Registry(record, pilots=[open_pilot]), Deliveries(), []

    created = await notifier(registry, deliveries, woken).on_response(response)

    assert created == 1 and registry.requested == []
    assert deliveries.created == [(open_pilot.pilot_id, "k1", ["climate-resilience"])]


async def test_on_response_older_than_the_record_asks_nothing(
    response: SurveyResponse, make_event: Callable[..., SurveyResponse]
) -> None:
    later = make_event(response_id="kobotoolbox:a-later-response")
    registry, deliveries, woken = Registry(person(later)), Deliveries(), []

    created = await notifier(registry, deliveries, woken).on_response(response)

    assert created == 0 and registry.requested == [] and deliveries.confirmations == []


async def test_confirm_open_request_done_and_open_pilots_delivered(
    response: SurveyResponse, open_pilot: PilotAnnounced
) -> None:
    asked = person(response, request=Request(1, NOW, NOW + timedelta(days=7)))
    confirmed = dataclasses.replace(asked, confirmed_at=NOW)
    registry = Registry(asked, confirmed=confirmed, pilots=[open_pilot])
    deliveries: Deliveries = Deliveries()

    state, record = await notifier(registry, deliveries, []).confirm("link")

    assert (state, record) == ("done", confirmed)
    assert registry.calls == [("confirm", ("k1", 1))]
    assert deliveries.created == [(open_pilot.pilot_id, "k1", ["climate-resilience"])]


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        ({"confirmed_at": NOW}, "done"),  # a second click once it worked says the same
        ({"confirmed_at": NOW, "unsubscribed": True}, "expired"),
        ({}, "expired"),  # expired, answered or superseded, never confirmed
    ],
)
async def test_confirm_request_not_open_done_only_when_confirmed_and_subscribed(
    response: SurveyResponse, fields: dict[str, Any], state: str
) -> None:
    registry, deliveries = Registry(person(response, **fields)), Deliveries()

    found = await notifier(registry, deliveries, []).confirm("link")

    assert found == (state, registry.record)
    assert deliveries.created == []


async def test_confirm_unknown_link_expired(response: SurveyResponse) -> None:
    registry = Registry(person(response))

    assert await notifier(registry, Deliveries(), []).confirm("other") == ("expired", None)
    assert registry.calls == []


async def test_choose_none_unsubscribes_choices_stored(response: SurveyResponse) -> None:
    record = person(response)
    registry = Registry(record)
    people = People(registry, Deliveries(), NotifierSettings().link_keys())  # type: ignore[arg-type]
    choices = consent.Choices(("housing",), "fr", consent.WEEKLY)

    assert await people.choose(record, None) == record
    assert await people.choose(record, choices) == record
    assert registry.calls == [("unsubscribe", "k1"), ("preferences", ("k1", choices))]


def approval(response: SurveyResponse) -> ResponseReview:
    return ResponseReview(
        review_id="r1",
        survey_id=response.survey_id,
        response_id=response.response_id,
        status="approved",
        reviewed_at=NOW,
        order=1,
    )


async def test_on_review_released_record_asked_to_confirm(response: SurveyResponse) -> None:
    registry = Registry(person(response), released=True)
    deliveries, woken = Deliveries(), []

    created = await notifier(registry, deliveries, woken).on_review(approval(response))

    assert created == 1 and deliveries.confirmations == [("k1", 1)]
    assert registry.calls == [("review", "approved")]


async def test_on_review_released_confirmed_record_gets_open_pilots(
    response: SurveyResponse, open_pilot: PilotAnnounced
) -> None:
    record = person(response, confirmed_at=NOW)
    registry = Registry(record, pilots=[open_pilot], released=True)
    deliveries, woken = Deliveries(), []

    created = await notifier(registry, deliveries, woken).on_review(approval(response))

    assert created == 1 and registry.requested == []
    assert deliveries.created == [(open_pilot.pilot_id, "k1", ["climate-resilience"])]


async def test_on_review_not_released_creates_nothing(
    response: SurveyResponse, open_pilot: PilotAnnounced
) -> None:
    record = person(response, confirmed_at=NOW)
    registry = Registry(record, pilots=[open_pilot], released=False)
    deliveries, woken = Deliveries(), []

    created = await notifier(registry, deliveries, woken).on_review(approval(response))

    assert created == 0 and deliveries.created == [] and deliveries.confirmations == []


async def test_on_response_withheld_record_asks_nothing_sends_nothing(
    response: SurveyResponse, open_pilot: PilotAnnounced
) -> None:
    record = person(response, withheld_at=NOW)
    registry, deliveries, woken = Registry(record, pilots=[open_pilot]), Deliveries(), []

    created = await notifier(registry, deliveries, woken).on_response(response)

    assert created == 0 and registry.requested == [] and deliveries.created == []


def test_rounds_one_key_per_round_in_order_no_key_first() -> None:
    assert rounds(["a", "b", "a", None, "a", "b"]) == [[0, 1, 3], [2, 5], [4]]
    assert rounds([]) == []
