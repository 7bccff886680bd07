"""services.notifier.sending and .dispatcher: what the dispatcher does with each kind of SMTP
failure (stand-ins for the stores and the mailer; the real server's side is in the integration
tests)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.notifier.failures import SUSPECT_IN_A_ROW, Kind, Stage
from services.notifier.mailer import MailFailure
from services.notifier.records import Delivery, FocalPoint
from services.notifier.registry import record_of
from services.notifier.settings import NotifierSettings
from services.notifier.wiring import UseCases, use_cases

WAIT = 5.0  # a bound on waits that end at once when the code is right


@dataclass
class Outgoing:
    message_id: str


@dataclass
class Deliveries:
    """Due deliveries, and what happened to each."""

    due: list[dict[str, Any]]
    calls: list[tuple[str, list[str]]] = field(default_factory=list)

    async def claim_due(self) -> Delivery | None:
        return Delivery.from_document(self.due.pop(0)) if self.due else None

    async def mark_sent(self, keys: list[str], message_id: str) -> None:
        self.calls.append(("sent", keys))

    async def mark_failed(self, keys: list[str], error: str) -> None:
        self.calls.append(("failed", keys))

    async def retry_later(self, keys: list[str], error: str, delay: float) -> None:
        self.calls.append(("retry", keys))

    async def hold(self, keys: list[str], error: str, delay: float) -> None:
        self.calls.append(("held", keys))


class Registry:
    async def get(self, email_key: str) -> FocalPoint:
        # A focal point who confirmed their address (double opt-in).
        return record_of({"_id": email_key, "email": f"{email_key}@example.org",
                          "unsubscribed": False, "consent": True, "confirmed_at": 1})  # fmt: skip

    async def pilot(self, pilot_id: str) -> object:
        return object()

    async def remember_link(
        self, link_id: str, email_key: str, revision: int = 0, **_: Any
    ) -> None:
        pass


@dataclass
class Mailer:
    """Answers each send with the next outcome: None (accepted) or a failure kind."""

    outcomes: list[Kind | None]
    checks: list[Kind | None] = field(default_factory=list)

    async def send(self, message: Outgoing) -> None:
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise MailFailure(outcome, Stage.RCPT, f"scripted {outcome}")

    async def check(self, sender: str) -> None:
        outcome = self.checks.pop(0)
        if outcome is not None:
            raise MailFailure(outcome, Stage.CONNECT, f"scripted {outcome}")


def delivery(n: int, attempts: int = 1, held: int = 0) -> dict[str, Any]:
    return {
        "_id": f"pilot|{n}",
        "email_key": f"person-{n}",
        "pilot_id": "pilot",
        "codes": ["sdg-13"],
        "attempts": attempts,
        "held": held,
    }


class Composer:
    def pilots(self, person: Any, items: list[Any]) -> Outgoing:
        return Outgoing(f"<{items[0][2]}>")


def notifier(deliveries: Deliveries, mailer: Mailer, **settings: Any) -> UseCases:
    subject = use_cases(
        NotifierSettings(send_rate_per_second=0, **settings),
        Registry(),  # type: ignore[arg-type]
        deliveries,  # type: ignore[arg-type]
        mailer,  # type: ignore[arg-type]
    )
    subject.send_due.composer = Composer()  # type: ignore[assignment]
    return subject


def paused_gauge() -> float | None:
    return REGISTRY.get_sample_value("notifier_smtp_paused")


def failures(kind: Kind) -> float:
    return REGISTRY.get_sample_value("notifier_smtp_failures_total", {"kind": kind}) or 0.0


@pytest.mark.parametrize("kind", [Kind.LOGIN, Kind.CONNECTION, Kind.SERVER, Kind.DEADLINE])
async def test_send_due_server_failure_holds_delivery_and_pauses(kind):
    store = Deliveries([delivery(1)])
    before = failures(kind)
    subject = notifier(store, Mailer([kind]))

    assert await subject.send_due() is False
    assert store.calls == [("held", ["pilot|1"])]
    assert paused_gauge() == 1.0
    assert failures(kind) == before + 1


async def test_send_due_recipient_refused_fails_it_and_goes_on():
    store = Deliveries([delivery(1), delivery(2)])
    subject = notifier(store, Mailer([Kind.RECIPIENT_REFUSED, None]))

    assert await subject.send_due() is True
    assert await subject.send_due() is True
    assert store.calls == [("failed", ["pilot|1"]), ("sent", ["pilot|2"])]


async def test_send_due_recipient_deferred_retried_not_paused():
    store = Deliveries([delivery(1)])
    subject = notifier(store, Mailer([Kind.RECIPIENT_DEFERRED]))

    assert await subject.send_due() is True
    assert store.calls == [("retry", ["pilot|1"])]


async def test_send_due_refusals_in_a_row_pause_instead_of_failing():
    store = Deliveries([delivery(n) for n in range(SUSPECT_IN_A_ROW + 1)])
    mailer = Mailer([Kind.RECIPIENT_REFUSED] * SUSPECT_IN_A_ROW + [None])
    subject = notifier(store, mailer)

    results = [await subject.send_due() for _ in range(SUSPECT_IN_A_ROW + 1)]

    assert results == [True] * (SUSPECT_IN_A_ROW - 1) + [False, True]
    outcomes = [outcome for outcome, _ in store.calls]
    assert outcomes == ["failed"] * (SUSPECT_IN_A_ROW - 1) + ["retry", "sent"]
    assert paused_gauge() == 0.0  # the accepted message ended the pause


async def test_send_due_held_attempts_not_counted_towards_max_attempts():
    # 3 attempts, 2 of them while the server was down: one counted, so one more retry.
    store = Deliveries([delivery(1, attempts=3, held=2), delivery(2, attempts=3, held=1)])
    subject = notifier(store, Mailer([Kind.RECIPIENT_DEFERRED] * 2), max_attempts=2)

    await subject.send_due()
    await subject.send_due()

    assert store.calls == [("retry", ["pilot|1"]), ("failed", ["pilot|2"])]


async def test_send_due_pause_logged_once_per_state_change(caplog):
    store = Deliveries([delivery(n) for n in range(5)])
    kinds = [Kind.CONNECTION, Kind.CONNECTION, Kind.LOGIN, Kind.LOGIN, None]
    subject = notifier(store, Mailer(list(kinds)))

    with caplog.at_level(logging.INFO, logger="services.notifier.health"):
        for _ in kinds:
            await subject.send_due()

    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert lines[0].startswith("SMTP sending paused: connection")
    assert lines[1].startswith("SMTP sending paused: login")
    assert lines[2].startswith("SMTP sending resumed after 4 tries")


async def test_send_due_paused_nothing_due_probe_resumes():
    store = Deliveries([delivery(1)])
    subject = notifier(store, Mailer([Kind.LOGIN], checks=[Kind.LOGIN, None]))
    await subject.send_due()

    await subject.send_due()  # nothing due: the probe fails, still paused
    assert paused_gauge() == 1.0
    await subject.send_due()  # the probe passes

    assert paused_gauge() == 0.0
    assert store.calls == [("held", ["pilot|1"])]


async def test_run_dispatcher_paused_new_work_does_not_wake_it_stop_does():
    store = Deliveries([delivery(1), delivery(2)])
    mailer = Mailer([Kind.CONNECTION, None])
    subject = notifier(store, mailer, retry_first_delay_seconds=30, retry_max_delay_seconds=30)
    dispatcher = asyncio.create_task(subject.dispatcher.run())
    for _ in range(100):
        await asyncio.sleep(0.01)
        if store.calls:
            break
    subject.dispatcher.wake()  # a new delivery was created: the pause goes on
    await asyncio.sleep(0.1)

    assert store.calls == [("held", ["pilot|1"])]
    await asyncio.wait_for(subject.dispatcher.stop_within(dispatcher, grace=WAIT), WAIT)
    assert dispatcher.done() and not dispatcher.cancelled()
    assert mailer.outcomes == [None]  # nothing more was sent
