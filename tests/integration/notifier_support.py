"""Builders shared by the notifier's integration tests: settings, pilots, focal points'
responses, the Kafka records that carry them, and an SMTP server handler that misbehaves on
request."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from services.notifier.settings import NotifierSettings
from shared.events import PilotAnnounced, SurveyResponse
from tests.support import Stack, canonical_response, settings_for

CLIENT_TIMEOUT = 0.5  # the SMTP client timeout of tests that make the server too slow


def notifier_settings(stack: Stack, run_id: str, **overrides: Any) -> NotifierSettings:
    """The notifier's settings for this test's topics and database, polling every 0.1 s."""
    return settings_for(
        NotifierSettings, stack.environment(run_id), **{"poll_interval_seconds": 0.1, **overrides}
    )


def addresses(run_id: str, label: str, count: int) -> list[str]:
    """`count` distinct addresses of this test run."""
    return [f"{label}-{n}-{run_id}@example.org" for n in range(count)]


def pilot(pilot_id: str, **overrides: object) -> PilotAnnounced:
    """A pilot open until 2099 on climate resilience and disaster risk, for VN and ID."""
    return PilotAnnounced.model_validate(
        {
            "pilot_id": pilot_id,
            "title": "Flood early warning for coastal districts",
            "summary": "Early warning for coastal flooding, co-financed.",
            "themes": ["climate-resilience", "disaster-risk-reduction"],
            "sdgs": ["sdg-13"],
            "eligible_countries": ["VN", "ID"],
            "lead_agency": "UNOSSC",
            "apply_by": "2099-03-31",
            "url": "https://example.org/pilots/007",
            **overrides,
        }
    )


def focal_response(
    number: int,
    email: str,
    *,
    interests: list[str],
    country: str = "VN",
    language: str = "en",
    submitted_at: str = "2024-05-02T10:31:00Z",
) -> SurveyResponse:
    """A response whose focal point (`email`, consent given) has these interests."""
    body = canonical_response(
        f"generic:{number}",
        submitted_at=submitted_at,
        respondent={"type": "local_government", "country": country, "city": "Đà Nẵng"},
        development_priorities=["sdg-6"],
        collaboration_interests=interests,
        focal_point={
            "name": "Nguyễn Văn An",
            "email": email,
            "language": language,
            "consent": True,
        },
    )
    return SurveyResponse.model_validate(
        {**body, "source": "generic", "received_at": datetime.now(UTC)}
    )


def records(*events: SurveyResponse | PilotAnnounced) -> list[tuple[bytes, bytes]]:
    """(key, value) Kafka records of `events`, keyed as the intake keys them."""
    return [
        (
            (e.response_id if isinstance(e, SurveyResponse) else e.pilot_id).encode(),
            e.model_dump_json().encode(),
        )
        for e in events
    ]


class Recorder:
    """An aiosmtpd handler that keeps what it accepted and misbehaves on request.

    `refuse`: recipients answered 550 at RCPT; `defer_once`: 451 at their first RCPT;
    `slow_once`: their first RCPT answered only after the client gave up; `hold_at`: the n-th
    DATA waits until `release` is set, then is answered 451 and not kept (the sender died).
    """

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.peers: list[tuple[str, int]] = []
        self.refuse: set[str] = set()
        self.defer_once: set[str] = set()
        self.slow_once: set[str] = set()
        self.hold_at: int | None = None
        self.holding = threading.Event()
        self.release = threading.Event()
        self._seen: set[str] = set()
        self._data_count = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        first = address not in self._seen
        self._seen.add(address)
        if address in self.refuse:
            return "550 5.1.1 No such mailbox here"
        if first and address in self.defer_once:
            return "451 4.3.0 Try again later"
        if first and address in self.slow_once:
            await asyncio.sleep(CLIENT_TIMEOUT * 4)
            return "451 4.4.2 Too slow"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self._data_count += 1
        if self._data_count == self.hold_at:
            self.holding.set()
            await asyncio.to_thread(self.release.wait)
            return "451 4.3.0 Sender went away"
        if session.peer not in self.peers:
            self.peers.append(session.peer)
        self.accepted.extend(envelope.rcpt_tos)
        return "250 Message accepted"

    def count(self) -> Counter[str]:
        """Messages accepted per recipient."""
        return Counter(self.accepted)

    async def counted(self) -> Counter[str]:
        """The same, as a probe for `eventually`."""
        return self.count()
