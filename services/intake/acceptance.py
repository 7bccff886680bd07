"""The intake's use cases: accept a response, announce a pilot. Each event is published once."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel

from services.intake.claims import Claim, ClaimStore
from services.intake.publisher import BrokerUnavailable, EventPublisher
from shared.events import PilotAnnounced, SurveyResponse


class Outcome(StrEnum):
    """What became of an event handed to the intake."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


class InFlight(BrokerUnavailable):
    """The same id is being published by another request right now; retry shortly."""


@dataclass(frozen=True)
class Intake:
    """Publishes each response and pilot once, after a claim on its id."""

    responses: ClaimStore
    pilots: ClaimStore
    publisher: EventPublisher
    responses_topic: str
    pilots_topic: str

    async def accept_response(self, response: SurveyResponse) -> Outcome:
        """Publish a validated response unless its `response_id` was accepted before."""
        return await self._publish_once(
            self.responses, response.response_id, self.responses_topic, response
        )

    async def announce_pilot(self, pilot: PilotAnnounced) -> Outcome:
        """Publish a validated pilot unless its `pilot_id` was announced before."""
        return await self._publish_once(self.pilots, pilot.pilot_id, self.pilots_topic, pilot)

    async def _publish_once(
        self, claims: ClaimStore, key: str, topic: str, event: BaseModel
    ) -> Outcome:
        claim = await claims.claim(key)
        if claim is Claim.DUPLICATE:
            return Outcome.DUPLICATE
        if claim is Claim.IN_FLIGHT:
            raise InFlight(f"{key} is being published by another request")
        try:
            await self.publisher.publish(topic, key, event)
        except BaseException:
            await claims.release(key)
            raise
        await claims.confirm(key)
        return Outcome.ACCEPTED
