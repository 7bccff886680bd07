"""The intake's use cases: accept a response, announce a pilot. Each event is published once."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from pymongo.errors import PyMongoError

from services.intake.claims import Claim, ClaimStore
from services.intake.publisher import BrokerUnavailable, EventPublisher, Unacknowledged
from services.intake.revisions import revision_claim_key, seal_key, sealable, seals_below
from shared.events import PilotAnnounced, ResponseReview, SurveyResponse

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    """What became of an event handed to the intake."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    SUPERSEDED = "superseded"  # a newer revision of the response was accepted before


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
    reviews_topic: str
    # Claims settled in the background: confirmations of acknowledged events, and claims of
    # unacknowledged ones once the broker answers for them.
    _settling: set[asyncio.Task[None]] = field(default_factory=set, init=False, compare=False)

    async def accept_response(
        self, response: SurveyResponse, encoded: bytes | None = None
    ) -> Outcome:
        """Publish a validated response unless this revision of it was delivered before for the
        same survey (`DUPLICATE`) or a newer one was published first (`SUPERSEDED`, found by
        the seals that one set: `revisions.py`). `encoded`: its JSON, when the caller has it
        already (admission encodes it to measure it)."""
        key = revision_claim_key(response.identity, response.revision)
        seal = seal_key(key) if sealable(response.revision) else None
        claim = await self.responses.claim(key, seal=seal)
        if claim is Claim.SEALED:
            return Outcome.SUPERSEDED
        outcome = await self._publish_claimed(
            self.responses,
            claim,
            key,
            self.responses_topic,
            response.response_id,
            response if encoded is None else encoded,
        )
        if outcome is Outcome.ACCEPTED and (
            seals := seals_below(response.identity, response.revision)
        ):
            self._in_background(asyncio.create_task(self._seal(seals), name=f"seal:{key}"))
        return outcome

    async def _seal(self, seals: list[str]) -> None:
        """Seal the older revisions of one just published. One that fails to be set lets a late
        first delivery of that revision through: published, and ordered by its consumers. So
        does a revision the broker acknowledged only after its request was answered 503: it
        sets no seals (its retry is a duplicate and sets none either)."""
        try:
            await self.responses.seal(seals)
        except PyMongoError as exc:
            logger.warning("cannot seal %d older revisions: %s", len(seals), exc)

    async def review(self, review: ResponseReview) -> None:
        """Publish a review or retraction (each is new: it carries its own `review_id`)."""
        await self.publisher.publish(self.reviews_topic, review.identity, review)

    async def announce_pilot(self, pilot: PilotAnnounced) -> Outcome:
        """Publish a validated pilot unless its `pilot_id` was announced before."""
        return await self._publish_once(
            self.pilots, pilot.pilot_id, self.pilots_topic, pilot.pilot_id, pilot
        )

    async def _publish_once(
        self, claims: ClaimStore, key: str, topic: str, event_key: str, event: BaseModel
    ) -> Outcome:
        claim = await claims.claim(key)
        return await self._publish_claimed(claims, claim, key, topic, event_key, event)

    async def _publish_claimed(
        self,
        claims: ClaimStore,
        claim: Claim,
        key: str,
        topic: str,
        event_key: str,
        event: BaseModel | bytes,
    ) -> Outcome:
        if claim is Claim.DUPLICATE:
            return Outcome.DUPLICATE
        if claim is Claim.IN_FLIGHT:
            raise InFlight(f"{key} is being published by another request")
        try:
            await self.publisher.publish(topic, event_key, event)
        except Unacknowledged as late:
            # The producer may still write it once Kafka is back: releasing the claim now would
            # let the platform's retry publish it a second time. Its retries get 503 until the
            # broker answers, then 200 (written) or a fresh claim (never written).
            self._in_background(
                asyncio.create_task(self._settle(claims, key, late.ack), name=f"settle:{key}")
            )
            raise
        except BaseException:
            await claims.release(key)
            raise
        # The event is in Kafka: the answer does not wait for the confirmation's write (one
        # round trip to the database less). `close` gives the confirmations on their way time.
        self._in_background(claims.confirm_soon(key))
        return Outcome.ACCEPTED

    def _in_background(self, task: asyncio.Task[None]) -> None:
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def close(self, within: float) -> None:
        """Give the claims being settled `within` seconds to be written, then stop settling.
        A claim left unsettled is taken over once its lease ran out, and published again."""
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=within)
        for task in set(self._settling):
            task.cancel()

    @staticmethod
    async def _settle(claims: ClaimStore, key: str, ack: asyncio.Future[Any]) -> None:
        """Hold the claim on `key` while the producer retries it; confirm or release it after."""
        while True:
            try:
                await asyncio.wait_for(asyncio.shield(ack), claims.lease.total_seconds() / 3)
                written = True
            except TimeoutError:
                try:  # still in the producer's hands: keep other replicas from taking it over
                    await claims.renew(key)
                except PyMongoError as exc:
                    logger.warning("cannot renew the claim on %s: %s", key, exc)
                continue
            except Exception as exc:  # the producer gave up on it: nothing was written
                logger.warning("%s was never acknowledged: %s", key, exc)
                written = False
            break
        try:
            await (claims.confirm(key) if written else claims.release(key))
        except PyMongoError as exc:  # the claim's lease runs out: a retry publishes it again
            logger.warning("cannot settle the claim on %s: %s", key, exc)
        else:
            logger.info("claim on %s settled: %s", key, "confirmed" if written else "released")
