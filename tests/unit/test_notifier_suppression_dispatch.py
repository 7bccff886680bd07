"""services.notifier: which SMTP refusals suppress an address (pure), and what the dispatcher
does with a suppressed address, for pilot and confirmation emails alike (stand-ins for the stores
and the mailer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifier.failures import Kind, Stage, enhanced_status, refuses_mailbox
from services.notifier.mailer import MailFailure
from services.notifier.records import Delivery, FocalPoint
from services.notifier.registry import record_of
from services.notifier.settings import NotifierSettings
from services.notifier.suppressions import Reason
from services.notifier.wiring import UseCases, use_cases


@pytest.mark.parametrize(
    ("kind", "code", "reply", "suppresses"),
    [
        (Kind.RECIPIENT_REFUSED, 550, "5.1.1 No such user", True),
        (Kind.RECIPIENT_REFUSED, 551, "User not local", True),
        (Kind.RECIPIENT_REFUSED, 553, "5.1.3 Mailbox name not allowed", True),
        (Kind.RECIPIENT_REFUSED, 550, "5.7.1 Relaying denied", False),
        (Kind.RECIPIENT_REFUSED, 554, "5.7.1 Rejected by policy", False),
        (Kind.RECIPIENT_REFUSED, 552, "5.2.2 Mailbox full", False),
        (Kind.RECIPIENT_DEFERRED, 450, "4.2.1 Try later", False),
        (Kind.MESSAGE_REFUSED, 550, "5.1.1 No such user", False),
        (Kind.SERVER, 550, "", False),
    ],
)
def test_refuses_mailbox_cases(kind, code, reply, suppresses):
    assert refuses_mailbox(kind, code, reply) is suppresses


@pytest.mark.parametrize(
    ("reply", "status"),
    [("5.1.1 No such user", "5.1.1"), ("No such user", ""), ("", ""), ("5.1 x", "")],
)
def test_enhanced_status_cases(reply, status):
    assert enhanced_status(reply) == status


@dataclass
class Deliveries:
    due: list[dict[str, Any]]
    calls: list[tuple[str, list[str], str]] = field(default_factory=list)
    created: list[tuple[str, str, str | None]] = field(default_factory=list)

    async def claim_due(self) -> Delivery | None:
        return Delivery.from_document(self.due.pop(0)) if self.due else None

    async def create(self, pilot_id, email_key, codes, hold=0.0, *, suppressed=None) -> bool:
        self.created.append((pilot_id, email_key, suppressed))
        return True

    async def mark_sent(self, keys, message_id) -> None:
        self.calls.append(("sent", keys, message_id))

    async def mark_failed(self, keys, error) -> None:
        self.calls.append(("failed", keys, error))

    async def mark_suppressed(self, keys, reason) -> None:
        self.calls.append(("suppressed", keys, reason))

    async def retry_later(self, keys, error, delay) -> None:
        self.calls.append(("retry", keys, error))


class Registry:
    async def get(self, email_key: str) -> FocalPoint:
        return record_of(
            {"_id": email_key, "email": email_key, "unsubscribed": False, "consent": True}
        )

    async def pilot(self, pilot_id: str) -> object:
        return object()

    async def remember_link(
        self, link_id: str, email_key: str, revision: int = 0, **_: object
    ) -> None:
        pass

    async def remember_pilot(self, pilot: object) -> None:
        pass

    async def candidates(self, pilot: object) -> list[tuple[str, list[str]]]:
        return [("kept@example.org", ["sdg-13"]), ("gone@example.org", ["sdg-13"])]


@dataclass
class Suppressions:
    listed: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def why(self, email_key: str) -> str | None:
        found = self.listed.get(email_key)
        return f"{found['reason']} ({found['source']})" if found else None

    async def keys(self) -> set[str]:
        return set(self.listed)

    async def suppress(self, email_key, reason, source, **details) -> bool:
        self.listed[email_key] = {"reason": str(reason), "source": source, **details}
        return True


@dataclass
class Mailer:
    failure: MailFailure | None = None
    sent: list[str] = field(default_factory=list)

    async def send(self, message: Any) -> None:
        if self.failure is not None:
            raise self.failure
        self.sent.append(message)


@dataclass
class Pilot:
    pilot_id: str = "pilot"


def delivery(email_key: str) -> dict[str, Any]:
    return {
        "_id": f"pilot|{email_key}",
        "email_key": email_key,
        "pilot_id": "pilot",
        "codes": ["sdg-13"],
        "attempts": 1,
    }


class Composer:
    def pilots(self, person: Any, items: list[Any]) -> str:
        return f"<{items[0][2]}>"

    def confirmation(self, person: Any, number: int, key: str) -> str:
        return f"<{key}>"


def notifier(deliveries: Deliveries, mailer: Mailer, suppressions: Suppressions) -> UseCases:
    subject = use_cases(
        # About the suppression list, not double opt-in (test_notifier_consent.py): the fake
        # registry's people count as confirmed.
        NotifierSettings(send_rate_per_second=0, double_opt_in=False),
        Registry(),  # type: ignore[arg-type]
        deliveries,  # type: ignore[arg-type]
        mailer,  # type: ignore[arg-type]
        suppressions,  # type: ignore[arg-type]
    )
    subject.send_due.composer = Composer()  # type: ignore[assignment]
    return subject


async def test_send_due_suppressed_address_settled_not_sent():
    store = Deliveries([delivery("gone@example.org")])
    listed = Suppressions({"gone@example.org": {"reason": "complaint", "source": "ses"}})
    mailer = Mailer()

    assert await notifier(store, mailer, listed).send_due() is True

    assert store.calls == [
        ("suppressed", ["pilot|gone@example.org"], "suppressed: complaint (ses)")
    ]
    assert mailer.sent == []


async def test_send_due_mailbox_refused_fails_and_suppresses():
    store = Deliveries([delivery("gone@example.org")])
    listed = Suppressions()
    refusal = MailFailure(
        Kind.RECIPIENT_REFUSED,
        Stage.RCPT,
        "550 5.1.1 <gone@example.org> no such user",
        code=550,
        reply="5.1.1 <gone@example.org> no such user",
    )

    await notifier(store, Mailer(refusal), listed).send_due()

    assert [call[0] for call in store.calls] == ["failed"]
    assert listed.listed == {
        "gone@example.org": {"reason": Reason.REFUSED, "source": "smtp", "detail": "550 5.1.1"}
    }


async def test_send_due_policy_refusal_fails_not_suppressed():
    store = Deliveries([delivery("kept@example.org")])
    listed = Suppressions()
    refusal = MailFailure(
        Kind.RECIPIENT_REFUSED, Stage.RCPT, "550 5.7.1 relaying denied", code=550, reply="5.7.1 x"
    )

    await notifier(store, Mailer(refusal), listed).send_due()

    assert [call[0] for call in store.calls] == ["failed"]
    assert listed.listed == {}


async def test_on_pilot_suppressed_candidate_settled_at_once():
    store = Deliveries([])
    listed = Suppressions({"gone@example.org": {"reason": "bounce", "source": "postmark"}})

    created = await notifier(store, Mailer(), listed).notifier.on_pilot(Pilot())  # type: ignore[arg-type]

    assert created == 1
    assert store.created == [
        ("pilot", "kept@example.org", None),
        ("pilot", "gone@example.org", "suppressed: the address is on the suppression list"),
    ]


class AskingRegistry(Registry):
    """A person with an open confirmation request (double opt-in), not confirmed yet."""

    async def get(self, email_key: str) -> FocalPoint:
        now = datetime.now(UTC)
        request = {"number": 1, "requested_at": now, "expires_at": now + timedelta(days=7)}
        return record_of({"_id": email_key, "email": "gone@example.org", "consent": True,
                          "unsubscribed": False, "confirmation": request})  # fmt: skip


async def test_send_due_confirmation_to_suppressed_address_settled_not_sent():
    confirmation = {
        "_id": "confirmation-1|gone@example.org",
        "kind": "confirmation",
        "request": 1,
        "email_key": "gone@example.org",
        "codes": [],
        "attempts": 1,
    }
    store = Deliveries([confirmation])
    listed = Suppressions({"gone@example.org": {"reason": "complaint", "source": "postmark"}})
    mailer = Mailer()
    subject = notifier(store, mailer, listed)
    subject.send_due.registry = AskingRegistry()  # type: ignore[assignment]

    assert await subject.send_due() is True

    assert store.calls == [
        ("suppressed", ["confirmation-1|gone@example.org"], "suppressed: complaint (postmark)")
    ]
    assert mailer.sent == []
