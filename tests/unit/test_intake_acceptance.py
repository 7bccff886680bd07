"""Accepting a response: a first delivery asks its revision's seal with its claim, a sealed one is
superseded, a published revision seals the older ones it names, and the JSON admission encoded is
what is published."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from pydantic import BaseModel
from pymongo.errors import AutoReconnect

from services.intake.acceptance import Intake, Outcome
from services.intake.admission import Admission
from services.intake.claims import Claim, ClaimStore
from services.intake.publisher import EventPublisher
from services.intake.revisions import SEAL_ALL_BELOW, revision_claim_key, seal_key
from shared.events import SurveyResponse


class FakeClaims:
    """Claims answered as configured; records what was claimed, confirmed and released."""

    def __init__(self, answer: Claim | BaseException = Claim.CLAIMED) -> None:
        self.answer = answer
        self.asked = asyncio.Event()
        self.confirm_gate = asyncio.Event()  # the confirmation's write is answered once set
        self.confirm_gate.set()
        self.log: list[tuple[str, str]] = []
        self.lease = timedelta(seconds=30)
        self.seals_asked: list[str | None] = []
        self.sealed: list[str] = []

    async def claim(self, key: str, seal: str | None = None) -> Claim:
        self.log.append(("claim", key))
        self.seals_asked.append(seal)
        self.asked.set()
        await asyncio.sleep(0)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    async def confirm(self, key: str) -> None:
        await self.confirm_gate.wait()
        self.log.append(("confirm", key))

    def confirm_soon(self, key: str) -> asyncio.Task[None]:
        return asyncio.ensure_future(self.confirm(key))

    async def release(self, key: str) -> None:
        self.log.append(("release", key))

    async def seal(self, seals: list[str]) -> None:
        self.sealed += seals


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[str] = []
        self.events: list[BaseModel | bytes] = []

    async def publish(self, topic: str, key: str, event: BaseModel | bytes) -> None:
        self.published.append(key)
        self.events.append(event)


def intake_of(claims: FakeClaims, publisher: FakePublisher) -> Intake:
    return Intake(
        responses=cast(ClaimStore, claims),
        pilots=cast(ClaimStore, FakeClaims()),
        publisher=cast(EventPublisher, publisher),
        responses_topic="responses",
        pilots_topic="pilots",
        reviews_topic="reviews",
    )


async def test_accept_response_first_delivery_asks_its_seal_with_its_claim(
    make_event: Callable[..., SurveyResponse],
) -> None:
    claims, publisher = FakeClaims(), FakePublisher()
    response = make_event(revision=2)

    intake = intake_of(claims, publisher)
    outcome = await intake.accept_response(response)
    await intake.close(within=1)

    key = revision_claim_key(response.identity, 2)
    assert outcome is Outcome.ACCEPTED
    assert claims.seals_asked == [seal_key(key)]
    assert claims.log == [("claim", key), ("confirm", key)]
    assert publisher.published == [response.response_id]


async def test_accept_response_published_revision_seals_every_older_one_it_names(
    make_event: Callable[..., SurveyResponse],
) -> None:
    claims = FakeClaims()
    intake = intake_of(claims, FakePublisher())
    first, third = make_event(revision=1), make_event(revision=3)

    assert await intake.accept_response(first) is Outcome.ACCEPTED
    assert await intake.accept_response(third) is Outcome.ACCEPTED
    await intake.close(within=1)

    identity = third.identity
    assert claims.sealed == [seal_key(identity), seal_key(f"{identity}#r2")]


async def test_accept_response_time_numbered_revision_seals_revision_1_alone(
    make_event: Callable[..., SurveyResponse],
) -> None:
    claims = FakeClaims()
    intake = intake_of(claims, FakePublisher())
    edit = make_event(revision=1_717_171_717)  # a Kobo edit: its time in seconds

    assert await intake.accept_response(edit) is Outcome.ACCEPTED
    await intake.close(within=1)

    assert claims.seals_asked == [None]  # no newer revision names it: nothing to ask
    assert claims.sealed == [seal_key(edit.identity)]


@pytest.mark.parametrize(
    ("revision", "asked"), [(SEAL_ALL_BELOW - 1, True), (SEAL_ALL_BELOW, False)]
)
async def test_accept_response_seal_asked_only_where_a_newer_revision_sets_one(
    make_event: Callable[..., SurveyResponse], revision: int, asked: bool
) -> None:
    claims = FakeClaims()

    await intake_of(claims, FakePublisher()).accept_response(make_event(revision=revision))

    assert (claims.seals_asked != [None]) is asked


async def test_accept_response_sealed_superseded_nothing_published_nothing_sealed(
    make_event: Callable[..., SurveyResponse],
) -> None:
    claims, publisher = FakeClaims(Claim.SEALED), FakePublisher()
    response = make_event(revision=2)

    intake = intake_of(claims, publisher)
    outcome = await intake.accept_response(response)
    await intake.close(within=1)

    assert outcome is Outcome.SUPERSEDED
    assert claims.log == [("claim", revision_claim_key(response.identity, 2))]
    assert (publisher.published, claims.sealed) == ([], [])


@pytest.mark.parametrize(
    ("claim", "outcome"), [(Claim.DUPLICATE, Outcome.DUPLICATE), (Claim.CLAIMED, Outcome.ACCEPTED)]
)
async def test_accept_response_seals_only_what_it_published(
    make_event: Callable[..., SurveyResponse], claim: Claim, outcome: Outcome
) -> None:
    claims = FakeClaims(claim)
    intake = intake_of(claims, FakePublisher())

    assert await intake.accept_response(make_event(revision=2)) is outcome
    await intake.close(within=1)

    assert bool(claims.sealed) is (outcome is Outcome.ACCEPTED)


async def test_accept_response_claim_error_fails_nothing_published(
    make_event: Callable[..., SurveyResponse],
) -> None:
    claims, publisher = FakeClaims(AutoReconnect("claim store gone")), FakePublisher()

    with pytest.raises(AutoReconnect, match="claim store gone"):
        await intake_of(claims, publisher).accept_response(make_event())

    assert publisher.published == []


def test_admit_encoded_gives_the_event_json(make_response: Callable[..., dict[str, Any]]) -> None:
    admitted = Admission().admit_encoded(make_response(), datetime.now(UTC))

    assert admitted.encoded == admitted.response.model_dump_json().encode()


async def test_accept_response_publishes_the_json_admission_encoded(
    make_response: Callable[..., dict[str, Any]],
) -> None:
    publisher = FakePublisher()
    admitted = Admission().admit_encoded(make_response(), datetime.now(UTC))
    intake = intake_of(FakeClaims(), publisher)

    outcome = await intake.accept_response(admitted.response, admitted.encoded)

    assert outcome is Outcome.ACCEPTED
    assert publisher.events == [admitted.encoded]


async def test_accept_response_answers_before_the_confirmation_is_written(
    make_event: Callable[..., SurveyResponse],
) -> None:
    claims, publisher = FakeClaims(), FakePublisher()
    claims.confirm_gate.clear()  # the database has not answered the confirmation yet
    intake = intake_of(claims, publisher)

    outcome = await asyncio.wait_for(intake.accept_response(make_event()), 1)

    assert outcome is Outcome.ACCEPTED
    assert [action for action, _ in claims.log] == ["claim"]
    closing = asyncio.ensure_future(intake.close(within=5))
    await asyncio.sleep(0.01)
    assert not closing.done()  # closing waits for the confirmation on its way
    claims.confirm_gate.set()
    await closing
    assert [action for action, _ in claims.log] == ["claim", "confirm"]
