"""The notifier's use cases on the registry: register focal points, ask them to confirm, turn
pilots into deliveries (`sending` sends them)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.notifier import consent
from services.notifier.matching import shared_codes
from services.notifier.ports import DeliveriesPort, RegistryPort, SuppressionsPort
from services.notifier.records import FocalPoint, Refused
from services.notifier.settings import NotifierSettings
from shared.events import PilotAnnounced, ResponseReview, SurveyResponse

logger = logging.getLogger(__name__)


def _idle() -> None:
    """No dispatcher to wake (a command, or a test that sends by hand)."""


@dataclass(frozen=True)
class Handled:
    """What a batch of responses made: deliveries created, and the responses (by position)
    the database refused for what they are, with the error."""

    created: int
    refused: list[tuple[int, Exception]]


def rounds(keys: Sequence[str | None]) -> list[list[int]]:
    """Positions of `keys` in rounds: round k holds the k-th occurrence of each key, so that
    one round never holds a key twice and a key's positions come in order. (`None`: no key,
    all in the first round.)"""
    seen: dict[str | None, int] = {}
    out: list[list[int]] = []
    for position, key in enumerate(keys):
        k = 0 if key is None else seen.get(key, 0)
        if key is not None:
            seen[key] = k + 1
        if k == len(out):
            out.append([])
        out[k].append(position)
    return out


@dataclass
class Notifier:
    """Registry in, deliveries out."""

    settings: NotifierSettings
    registry: RegistryPort
    deliveries: DeliveriesPort
    # The suppression list (`suppressions`); None only where a test goes without it.
    suppressions: SuppressionsPort | None = None
    # Wakes the dispatcher when a delivery was created, rather than at its next poll.
    wake: Callable[[], None] = _idle

    async def on_response(self, response: SurveyResponse) -> int:
        """Register the response's focal point; returns the deliveries it got: a confirmation
        request (double opt-in) or, once confirmed, the open pilots that match. Raises what the
        database refused."""
        handled = await self.on_responses([response])
        for _, error in handled.refused:
            raise error
        return handled.created

    async def on_responses(self, responses: Sequence[SurveyResponse]) -> Handled:
        """`on_response` for each of `responses`, a few commands for them all. One focal
        point's responses go in the order given, one per round (`rounds`); within a round
        each step (register, ask to confirm, deliver open pilots) is done for all before the
        next, so each record is in the match index before pilots are read for it."""
        created, refused = 0, []
        first_request = self._first_request if self.settings.double_opt_in else None
        keys = [
            None if r.focal_point is None else self.registry.key(str(r.focal_point.email))
            for r in responses
        ]
        for positions in rounds(keys):
            outcomes = await self.registry.register_many(
                [responses[n] for n in positions], first_request
            )
            # Rejected on arrival (Kobo: not approved), the record is kept withheld: nobody is
            # mailed because of it, and an approval later restores it (`on_review`).
            registered: list[tuple[FocalPoint, bool, datetime]] = []
            for n, outcome in zip(positions, outcomes, strict=True):
                if isinstance(outcome, Refused):
                    refused.append((n, outcome.error))
                elif outcome is not None:
                    response = responses[n]
                    latest = outcome.is_latest(response.survey_id, response.response_id)
                    registered.append((outcome, latest, response.received_at))
            created += await self._request_confirmations(registered)
            created += await self._open_pilots_for([record for record, _, _ in registered])
        return Handled(created, refused)

    def _first_request(self, record: FocalPoint) -> consent.Request | None:
        """The confirmation request a focal point's first record is stored with: the one a
        consenting new address is asked at once (`consent.confirmation_step`)."""
        step, request = self._confirmation_step(record, True, datetime.now(UTC))
        return request if step is consent.Step.NEW else None

    async def on_review(self, review: ResponseReview) -> int:
        """Apply a review (or retraction) of a response to the focal point registered from it:
        rejected or retracted, nobody is mailed because of it; approved again, they are asked
        to confirm (double opt-in) or get the open pilots that match. Returns the deliveries
        this created."""
        created = 0
        for record, released in await self.registry.review(review):
            if released:
                created += await self._request_confirmations([(record, True, datetime.now(UTC))])
                created += await self._open_pilots_for([record])
        return created

    async def _open_pilots_for(self, records: Sequence[FocalPoint]) -> int:
        """Deliveries of every open pilot matching each of `records` (when pilots may go to
        them); the pilots are read once for them all."""
        double_opt_in = self.settings.double_opt_in
        receiving = [
            r for r in records if consent.receives_pilots(r, require_confirmation=double_opt_in)
        ]
        if not receiving:
            return 0
        created = 0
        pilots = await self.registry.open_pilots(datetime.now(UTC).date())
        for record in receiving:
            suppressed = await self._suppressed({record.key})
            for pilot in pilots:
                codes = shared_codes(pilot, consent.codes(record), record.country)
                created += await self._deliver(pilot, record.key, codes, suppressed)
        return created

    def _confirmation_step(
        self, record: FocalPoint, latest: bool, received_at: datetime
    ) -> tuple[consent.Step, consent.Request | None]:
        settings = self.settings
        return consent.confirmation_step(
            record,
            datetime.now(UTC),
            latest=latest,
            received_at=received_at,
            ttl=timedelta(seconds=settings.confirmation_ttl_seconds),
            resend_after=timedelta(seconds=settings.confirmation_resend_seconds),
        )

    async def _request_confirmations(
        self, registered: Sequence[tuple[FocalPoint, bool, datetime]]
    ) -> int:
        """Ask the owners of consenting addresses to confirm them, unless asked already; how
        many request emails this made (one insert for them all). Each of `registered`: the
        record, whether it comes from the response at hand (`latest`), received when."""
        if not self.settings.double_opt_in:
            return 0
        asks: list[tuple[str, int]] = []
        for record, latest, received_at in registered:
            step, request = self._confirmation_step(record, latest, received_at)
            if request is None or step is consent.Step.NOTHING:
                continue
            if step is consent.Step.NEW:
                await self.registry.request_confirmation(record.key, request)
            asks.append((record.key, request.number))
        if not asks:
            return 0
        # The request's email has one record, ever: a redelivered response, a second replica or
        # a retry after a crash between these two writes all land on the same one.
        created = await self.deliveries.create_confirmations(asks)
        if created:
            self.wake()
        return created

    async def confirm(self, link_id: str) -> tuple[str, FocalPoint | None]:
        """The owner of an address posted the confirmation form of a link sent to them.

        (`done` | `expired`, the record). Done: pilot emails may go to them, and every open
        pilot that matches is delivered now (also those announced before they confirmed).
        """
        found = await self.registry.request_of(link_id)
        if found is None:
            return "expired", None
        record, number = found
        confirmed = await self.registry.confirm(record.key, number, datetime.now(UTC))
        if confirmed is None:
            # A second click on the same link once it worked says the same.
            done = consent.confirmed_and_subscribed(record)
            return ("done" if done else "expired"), record
        await self._open_pilots_for([confirmed])
        return "done", confirmed

    async def expire_unconfirmed(self) -> int:
        """Drop the details of addresses whose confirmation ran out; how many."""
        now = datetime.now(UTC)
        ttl = timedelta(seconds=self.settings.confirmation_ttl_seconds)
        expired = await self.registry.expire_unconfirmed(now, withheld_before=now - ttl)
        if expired:
            logger.info("%d unconfirmed focal points expired", expired)
        return expired

    async def run_expiry(self, interval: float) -> None:
        """Expire unconfirmed addresses every `interval` seconds until cancelled."""
        while True:
            try:
                await self.expire_unconfirmed()
            except Exception:
                logger.exception("expiring unconfirmed focal points failed")
            await asyncio.sleep(interval)

    async def on_pilot(self, pilot: PilotAnnounced) -> int:
        """Create a delivery for every focal point the pilot matches; returns how many are new."""
        await self.registry.remember_pilot(pilot)
        created = 0
        candidates = await self.registry.candidates(pilot)
        suppressed = await self._suppressed(None)
        for email_key, codes in candidates:
            created += await self._deliver(pilot, email_key, codes, suppressed)
        logger.info("pilot %s: %d new deliveries", pilot.pilot_id, created)
        return created

    async def _suppressed(self, among: set[str] | None) -> set[str]:
        """The suppressed keys (of `among`, or all: one read of the list per pilot)."""
        if self.suppressions is None:
            return set()
        if among is None:
            return await self.suppressions.keys()
        return {key for key in among if await self.suppressions.why(key) is not None}

    async def _deliver(
        self, pilot: PilotAnnounced, email_key: str, codes: list[str], suppressed: set[str]
    ) -> int:
        # Consent, unsubscribe and the suppression list are checked again when the email is sent.
        if not codes:
            return 0
        if email_key in suppressed:
            # Settled at once, so that the pilot's deliveries show who was left out and why.
            reason = "suppressed: the address is on the suppression list"
            await self.deliveries.create(pilot.pilot_id, email_key, codes, suppressed=reason)
            return 0
        created = await self.deliveries.create(
            pilot.pilot_id, email_key, codes, self.settings.digest_window_seconds
        )
        if created:
            self.wake()
        return int(created)
