"""Accepting a response: the newest-revision lookup and the claim run side by side, a newer
revision decides whatever the claim found, and the JSON admission encoded is what is published."""

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
from services.intake.revisions import RevisionStore, revision_claim_key
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

    async def claim(self, key: str) -> Claim:
        self.log.append(("claim", key))
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


class FakeRevisions:
    """The newest revision as configured; with `wait_for`, answers only once that has happened."""

    def __init__(self, newest: int | BaseException, wait_for: asyncio.Event | None = None) -> None:
        self._newest = newest
        self._wait_for = wait_for
        self.accepted_revisions: list[int] = []

    async def newest(self, identity: str) -> int:
        if self._wait_for is not None:
            await asyncio.wait_for(self._wait_for.wait(), 1)
        if isinstance(self._newest, BaseException):
            raise self._newest
        return self._newest

    async def accepted(self, identity: str, revision: int) -> None:
        self.accepted_revisions.append(revision)


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[str] = []
        self.events: list[BaseModel | bytes] = []

    async def publish(self, topic: str, key: str, event: BaseModel | bytes) -> None:
        self.published.append(key)
        self.events.append(event)


def intake_of(claims: FakeClaims, revisions: FakeRevisions, publisher: FakePublisher) -> Intake:
    return Intake(
        responses=cast(ClaimStore, claims),
        pilots=cast(ClaimStore, FakeClaims()),
        publisher=cast(EventPublisher, publisher),
        responses_topic="responses",
        pilots_topic="pilots",
        revisions=cast(RevisionStore, revisions),
        reviews_topic="reviews",
    )


async def test_accept_response_lookup_and_claim_go_side_by_side(
    make_event: Callable[..., SurveyResponse],
) -> None:
    claims, publisher = FakeClaims(), FakePublisher()
    # The lookup answers only once the claim was asked for: one after the other, it never would.
    revisions = FakeRevisions(1, wait_for=claims.asked)
    response = make_event(revision=2)

    intake = intake_of(claims, revisions, publisher)
    outcome = await intake.accept_response(response)
    await intake.close(within=1)

    key = revision_claim_key(response.identity, 2)
    assert outcome is Outcome.ACCEPTED
    assert claims.log == [("claim", key), ("confirm", key)]
    assert publisher.published == [response.response_id]
    assert revisions.accepted_revisions == [2]


async def test_accept_response_superseded_releases_the_claim_it_took(
    make_event: Callable[..., SurveyResponse],
) -> None:
    claims, publisher = FakeClaims(Claim.CLAIMED), FakePublisher()
    response = make_event(revision=2)

    outcome = await intake_of(claims, FakeRevisions(3), publisher).accept_response(response)

    key = revision_claim_key(response.identity, 2)
    assert outcome is Outcome.SUPERSEDED
    assert claims.log == [("claim", key), ("release", key)]
    assert publisher.published == []


@pytest.mark.parametrize(
    "claim",
    [Claim.DUPLICATE, Claim.IN_FLIGHT, AutoReconnect("claim store gone")],
    ids=["duplicate", "in-flight", "claim-error"],
)
async def test_accept_response_superseded_whatever_the_claim_found(
    make_event: Callable[..., SurveyResponse], claim: Claim | BaseException
) -> None:
    claims, publisher = FakeClaims(claim), FakePublisher()

    outcome = await intake_of(claims, FakeRevisions(5), publisher).accept_response(make_event())

    assert outcome is Outcome.SUPERSEDED
    assert [action for action, _ in claims.log] == ["claim"]  # nothing of another to release
    assert publisher.published == []


async def test_accept_response_lookup_error_releases_the_claim_and_fails(
    make_event: Callable[..., SurveyResponse],
) -> None:
    claims, publisher = FakeClaims(Claim.CLAIMED), FakePublisher()
    revisions = FakeRevisions(AutoReconnect("revisions gone"))

    with pytest.raises(AutoReconnect, match="revisions gone"):
        await intake_of(claims, revisions, publisher).accept_response(make_event())

    assert [action for action, _ in claims.log] == ["claim", "release"]
    assert publisher.published == []


async def test_accept_response_claim_error_fails_when_not_superseded(
    make_event: Callable[..., SurveyResponse],
) -> None:
    claims, publisher = FakeClaims(AutoReconnect("claim store gone")), FakePublisher()

    with pytest.raises(AutoReconnect, match="claim store gone"):
        await intake_of(claims, FakeRevisions(1), publisher).accept_response(make_event())

    assert publisher.published == []


def test_admit_encoded_gives_the_event_json(make_response: Callable[..., dict[str, Any]]) -> None:
    admitted = Admission().admit_encoded(make_response(), datetime.now(UTC))

    assert admitted.encoded == admitted.response.model_dump_json().encode()


async def test_accept_response_publishes_the_json_admission_encoded(
    make_response: Callable[..., dict[str, Any]],
) -> None:
    publisher = FakePublisher()
    admitted = Admission().admit_encoded(make_response(), datetime.now(UTC))
    intake = intake_of(FakeClaims(), FakeRevisions(1), publisher)

    outcome = await intake.accept_response(admitted.response, admitted.encoded)

    assert outcome is Outcome.ACCEPTED
    assert publisher.events == [admitted.encoded]


async def test_accept_response_answers_before_the_confirmation_is_written(
    make_event: Callable[..., SurveyResponse],
) -> None:
    claims, publisher = FakeClaims(), FakePublisher()
    claims.confirm_gate.clear()  # the database has not answered the confirmation yet
    intake = intake_of(claims, FakeRevisions(1), publisher)

    outcome = await asyncio.wait_for(intake.accept_response(make_event()), 1)

    assert outcome is Outcome.ACCEPTED
    assert [action for action, _ in claims.log] == ["claim"]
    closing = asyncio.ensure_future(intake.close(within=5))
    await asyncio.sleep(0.01)
    assert not closing.done()  # closing waits for the confirmation on its way
    claims.confirm_gate.set()
    await closing
    assert [action for action, _ in claims.log] == ["claim", "confirm"]
