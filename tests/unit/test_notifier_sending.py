"""services.notifier.sending: the send step's checks, composition and records, and the
dispatcher's throttle, with small fakes at the ports (the real adapters: integration tests)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from services.notifier import consent
from services.notifier.dispatcher import Throttle
from services.notifier.emails import Outgoing
from services.notifier.records import Delivery, FocalPoint
from services.notifier.registry import record_of
from services.notifier.settings import NotifierSettings
from services.notifier.wiring import UseCases, use_cases

NOW = datetime.now(UTC)


@dataclass
class Registry:
    """Focal points by key, and the pilots."""

    people: dict[str, FocalPoint]
    pilots: dict[str, Any]

    async def get(self, key: str) -> FocalPoint | None:
        return self.people.get(key)

    async def pilot(self, pilot_id: str) -> Any:
        return self.pilots.get(pilot_id)

    async def remember_link(self, link_id: str, email_key: str, revision: int = 0, **_: Any):
        pass


@dataclass
class Deliveries:
    """Due deliveries in order, the person's other pending ones, and every state change."""

    due: list[Delivery]
    pending: list[Delivery] = field(default_factory=list)
    calls: list[tuple[str, list[str]]] = field(default_factory=list)

    async def claim_due(self) -> Delivery | None:
        return self.due.pop(0) if self.due else None

    async def claim_pending_for(self, email_key: str) -> list[Delivery]:
        taken, self.pending = self.pending, []
        return taken

    async def mark_sent(self, keys: list[str], message_id: str) -> None:
        self.calls.append(("sent", list(keys)))

    async def mark_failed(self, keys: list[str], error: str) -> None:
        self.calls.append(("failed", list(keys)))

    async def mark_suppressed(self, keys: list[str], reason: str) -> None:
        self.calls.append(("suppressed", list(keys)))

    async def postpone(self, keys: list[str], until: datetime) -> None:
        self.calls.append(("postponed", list(keys)))

    async def release(self, claimed: list[Delivery]) -> None:
        self.calls.append(("released", [d.key for d in claimed]))


@dataclass
class Suppressions:
    listed: set[str] = field(default_factory=set)

    async def why(self, email_key: str) -> str | None:
        return "complaint (ses)" if email_key in self.listed else None


@dataclass
class Mailer:
    sent: list[Outgoing] = field(default_factory=list)

    async def send(self, message: Outgoing) -> None:
        self.sent.append(message)


def stored(key: str = "k1", **fields: Any) -> dict[str, Any]:
    """The stored document of a confirmed, consenting focal point (double opt-in)."""
    return {"_id": key, "email": f"{key}@example.org", "name": "An", "language": "en",
            "consent": True, "unsubscribed": False, "confirmed_at": NOW} | fields  # fmt: skip


def person(key: str = "k1", **fields: Any) -> FocalPoint:
    """A confirmed, consenting focal point as the registry reads it."""
    return record_of(stored(key, **fields))


def delivery(pilot_id: str = "p1", key: str = "k1") -> Delivery:
    return Delivery(f"{pilot_id}|{key}", key, 1, pilot_id=pilot_id, codes=("sdg-13",),
                    created_at=NOW)  # fmt: skip


@pytest.fixture
def pilots(make_pilot_event: Any) -> dict[str, Any]:
    return {p: make_pilot_event(pilot_id=p, title=f"Pilot {p}") for p in ("p1", "p2")}


def cases(
    registry: Registry,
    deliveries: Deliveries,
    mailer: Mailer,
    suppressions: Suppressions | None = None,
    **settings: Any,
) -> UseCases:
    return use_cases(
        NotifierSettings(send_rate_per_second=0, **settings),
        registry,  # type: ignore[arg-type]
        deliveries,  # type: ignore[arg-type]
        mailer,  # type: ignore[arg-type]
        suppressions or Suppressions(),  # type: ignore[arg-type]
    )


async def test_send_due_confirmed_person_sent_in_their_language(pilots):
    store, mailer = Deliveries([delivery()]), Mailer()
    registry = Registry({"k1": person(language="fr")}, pilots)

    assert await cases(registry, store, mailer).send_due() is True

    [message] = mailer.sent
    assert store.calls == [("sent", ["p1|k1"])]
    assert message.recipient == "k1@example.org"
    assert message.parsed()["Content-Language"] == "fr"


async def test_send_due_preferred_language_wins_over_the_survey_s(pilots):
    store, mailer = Deliveries([delivery()]), Mailer()
    chosen = person(language="fr", preferences={"language": "es"})

    await cases(Registry({"k1": chosen}, pilots), store, mailer).send_due()

    assert mailer.sent[0].parsed()["Content-Language"] == "es"


@pytest.mark.parametrize(
    "record",
    [
        person(unsubscribed=True),
        person(consent=False),
        person(confirmed_at=None),  # double opt-in: not confirmed yet
        None,  # erased or never registered
    ],
)
async def test_send_due_no_pilot_email_without_consent_fails_it(pilots, record):
    store, mailer = Deliveries([delivery()]), Mailer()
    people = {"k1": record} if record is not None else {}

    assert await cases(Registry(people, pilots), store, mailer).send_due() is True

    assert store.calls == [("failed", ["p1|k1"])]
    assert mailer.sent == []


async def test_send_due_suppressed_after_compose_not_sent(pilots):
    store, mailer = Deliveries([delivery()]), Mailer()
    listed = Suppressions({"k1"})

    assert await cases(Registry({"k1": person()}, pilots), store, mailer, listed).send_due()

    assert store.calls == [("suppressed", ["p1|k1"])]
    assert mailer.sent == []


async def test_send_due_unknown_pilot_fails_only_that_delivery(pilots):
    store = Deliveries([delivery("gone")], pending=[delivery("p2")])
    mailer = Mailer()
    registry = Registry({"k1": person()}, pilots)

    await cases(registry, store, mailer, digest_window_seconds=60).send_due()

    assert store.calls == [("failed", ["gone|k1"]), ("sent", ["p2|k1"])]
    assert len(mailer.sent) == 1


async def test_send_due_digest_window_one_email_for_the_person_s_pending(pilots):
    store = Deliveries([delivery("p1")], pending=[delivery("p2")])
    mailer = Mailer()

    await cases(
        Registry({"k1": person()}, pilots), store, mailer, digest_window_seconds=60
    ).send_due()

    assert store.calls == [("sent", ["p1|k1", "p2|k1"])]
    assert len(mailer.sent) == 1


async def test_send_due_weekly_reader_postponed_to_the_digest_time(pilots):
    weekly = person(preferences={"frequency": consent.WEEKLY})
    store, mailer = Deliveries([delivery()]), Mailer()

    assert await cases(Registry({"k1": weekly}, pilots), store, mailer).send_due() is True

    # Created now: the next digest time is ahead (a weekly digest is never due at once).
    assert store.calls == [("postponed", ["p1|k1"])]
    assert mailer.sent == []


async def test_send_due_stopping_releases_claimed_unsent(pilots):
    store, mailer = Deliveries([delivery()]), Mailer()
    subject = cases(Registry({"k1": person()}, pilots), store, mailer)
    subject.dispatcher.stop()

    assert await subject.send_due() is False

    assert store.calls == [("released", ["p1|k1"])]
    assert mailer.sent == []


async def test_send_due_nothing_due_false():
    assert await cases(Registry({}, {}), Deliveries([]), Mailer()).send_due() is False


async def test_throttle_spaces_sends_by_the_rate():
    throttle = Throttle(20.0)  # a burst of 20, then one every 50 ms
    started = time.monotonic()

    for _ in range(22):
        assert await throttle.allow()

    assert time.monotonic() - started >= 0.09


async def test_throttle_no_limit_never_waits():
    throttle = Throttle(0.0)
    started = time.monotonic()

    assert all([await throttle.allow() for _ in range(1000)])
    assert time.monotonic() - started < 1.0


async def test_dispatcher_new_delivery_wakes_it_before_the_poll(pilots):
    store, mailer = Deliveries([]), Mailer()
    subject = cases(Registry({"k1": person()}, pilots), store, mailer, poll_interval_seconds=10)
    running = asyncio.create_task(subject.dispatcher.run())
    await asyncio.sleep(0.05)  # idle: waits for work or the poll

    store.due.append(delivery())
    subject.dispatcher.wake()
    for _ in range(100):
        if mailer.sent:
            break
        await asyncio.sleep(0.01)
    await asyncio.wait_for(subject.dispatcher.stop_within(running, grace=5), 5)

    assert store.calls == [("sent", ["p1|k1"])]


def test_focal_point_from_document_chosen_language_and_request():
    request = {"number": 2, "requested_at": NOW, "expires_at": NOW}
    document = stored(
        language="fr", preferences={"language": "ar"}, revision=3, confirmation=request
    )

    found = record_of(document)

    assert (found.key, found.email, found.name) == ("k1", "k1@example.org", "An")
    assert (consent.language(found), found.revision) == ("ar", 3)
    assert found.request == consent.Request(2, NOW, NOW)
