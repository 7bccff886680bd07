"""Webhook load for fault tests and the reliability run: clients posting distinct signed
responses to a running intake, each retrying a 503 until it is taken, every answer recorded with
the phase of the fault it was sent and answered in.

The bodies are `tests/recount.py`'s random responses over every shipped survey, so that what was
taken can be recounted by hand and compared with the analytics API.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import httpx

from services.intake.surveys import default_secret_env
from shared.taxonomy import load_taxonomy
from tests.recount import random_response
from tests.support import WEBHOOK_SECRET, dumps, signed_headers

RETRY_PAUSE = 0.3  # seconds; the intake's Retry-After would only make a test slower
ACCEPTED = frozenset({200, 202})  # 202 accepted, 200 a duplicate of an accepted one


def webhook_secrets() -> dict[str, str]:
    """Intake settings that accept the test secret on the generic source of every survey."""
    return {
        default_secret_env(survey, "generic"): WEBHOOK_SECRET
        for survey in sorted(load_taxonomy().surveys)
    }


class Phase(IntEnum):
    """Where the fault is, as far as the test knows."""

    UP = 0
    DOWN = 1  # killed: the process is gone
    RESTARTING = 2  # restarted, or on its way
    BACK = 3  # serving again


@dataclass(frozen=True)
class Answer:
    """One request and its answer, with the phases around it."""

    response_id: str
    status: int
    retry_after: str | None
    sent_in: Phase
    answered_in: Phase
    seconds: float


@dataclass
class WebhookLoad:
    """Concurrent clients posting distinct responses, each retrying a 503 until it is taken.

    `rate` (requests per second over all clients, 0: as fast as answers come) paces the first
    attempt of each response; retries follow `RETRY_PAUSE`.
    """

    intake: str
    run_id: str
    seed: int = 0
    rate: float = 0.0
    phase: Phase = Phase.UP
    stopping: bool = False
    in_flight: int = 0
    answers: list[Answer] = field(default_factory=list)
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # event id -> its response
    taken: dict[str, int] = field(default_factory=dict)  # event id -> 202 or 200
    errors: Counter[str] = field(default_factory=Counter)  # transport errors by kind
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def taken_in(self, phase: Phase) -> int:
        """Responses whose final answer came in `phase`."""
        return sum(1 for a in self.answers if a.status in ACCEPTED and a.answered_in is phase)

    def answered_while(self, phase: Phase) -> list[Answer]:
        """Answers to requests sent and answered in `phase`."""
        return [a for a in self.answers if a.sent_in is phase and a.answered_in is phase]

    def statuses(self) -> Counter[int]:
        """Answers by HTTP status."""
        return Counter(a.status for a in self.answers)

    def records(self) -> list[dict[str, Any]]:
        """What was sent, as the events that count (ids with their source prefix), in order."""
        return list(self.sent.values())

    def _next(self) -> tuple[str, bytes, dict[str, Any]]:
        number = next(self._ids)
        event = random_response(self._rng, f"generic:load-{self.run_id}-{number}")
        body = {k: v for k, v in event.items() if k not in ("source", "received_at")}
        body["response_id"] = event["response_id"].removeprefix("generic:")
        return event["response_id"], dumps(body), event

    async def _pace(self) -> None:
        if self.rate > 0:
            due = self._started + len(self.sent) / self.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    async def client(self, http: httpx.AsyncClient) -> None:
        """Post one response after another until told to stop; never give up on one."""
        while not self.stopping:
            await self._pace()
            if self.stopping:
                return
            response_id, raw, event = self._next()
            self.sent[response_id] = event
            survey = event["survey_id"]
            for attempt in itertools.count():
                sent_in, began = self.phase, time.monotonic()
                self.in_flight += 1
                try:
                    answer = await http.post(
                        f"{self.intake}/v1/webhooks/generic/{survey}",
                        content=raw,
                        headers=signed_headers(raw, f"{response_id}-{attempt}"),
                    )
                except httpx.TransportError as exc:
                    self.errors[type(exc).__name__] += 1
                    await asyncio.sleep(RETRY_PAUSE)
                    continue
                finally:
                    self.in_flight -= 1
                self.answers.append(
                    Answer(
                        response_id,
                        answer.status_code,
                        answer.headers.get("retry-after"),
                        sent_in,
                        self.phase,
                        time.monotonic() - began,
                    )
                )
                if answer.status_code in ACCEPTED:
                    self.taken[response_id] = answer.status_code
                    break
                if answer.status_code != 503:
                    break  # a client error is the test's to report, not to retry
                await asyncio.sleep(RETRY_PAUSE)

    async def run(self, clients: int, http: httpx.AsyncClient) -> list[asyncio.Task[None]]:
        """Start `clients` concurrent clients."""
        return [asyncio.create_task(self.client(http)) for _ in range(clients)]


async def finish(load: WebhookLoad, clients: list[asyncio.Task[None]], within: float) -> None:
    """Stop the load: each client finishes the response in hand (it retries it until taken)."""
    load.stopping = True
    await asyncio.wait_for(asyncio.gather(*clients), timeout=within)


async def current(value: int) -> int:
    """`value`, as the awaitable probe `eventually` polls."""
    return value
