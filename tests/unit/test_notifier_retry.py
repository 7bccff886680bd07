"""services.notifier.retry: `next_attempt()`, the fate of deliveries whose message was refused."""

from __future__ import annotations

import random

import pytest

from services.notifier.failures import SUSPECT_IN_A_ROW, Kind, Outcome
from services.notifier.records import Delivery
from services.notifier.retry import Backoff, backoff, next_attempt

BACKOFF = Backoff(1.0, 30.0)
SEED = 7


def delivery(attempts: int = 1, held: int = 0, key: str = "pilot|person") -> Delivery:
    return Delivery(key=key, email_key="person", attempts=attempts, held=held, pilot_id="pilot")


def decide(kind: Kind, code: int | None = None, reply: str = "", **overrides):
    arguments = {"refusals": 1, "deliveries": [delivery()], "max_attempts": 5}
    arguments |= overrides
    return next_attempt(kind, code, reply, backoff_of=BACKOFF, rng=random.Random(SEED), **arguments)


def test_next_attempt_mailbox_gone_fails_and_suppresses():
    decided = decide(Kind.RECIPIENT_REFUSED, 550, "5.1.1 <an@example.org> no such user")

    assert (decided.outcome, decided.pause, decided.gave_up) == (Outcome.FAILED, False, False)
    assert decided.suppress is True
    assert decided.detail == "550 5.1.1"  # the codes only: the reply quotes the address


def test_next_attempt_policy_refusal_fails_not_suppressed():
    decided = decide(Kind.RECIPIENT_REFUSED, 550, "5.7.1 Relaying denied")

    assert decided.outcome is Outcome.FAILED
    assert (decided.suppress, decided.detail) == (False, "")


def test_next_attempt_deferral_retried_after_backoff_of_counted_attempts():
    decided = decide(Kind.RECIPIENT_DEFERRED, 450, deliveries=[delivery(attempts=4, held=1)])

    assert (decided.outcome, decided.pause, decided.counted) == (Outcome.RETRY, False, 3)
    assert decided.delay == backoff(3, 1.0, 30.0, random.Random(SEED))


def test_next_attempt_digest_counts_its_most_tried_delivery():
    tried = [delivery(attempts=2, key="a"), delivery(attempts=5, held=1, key="b")]

    assert decide(Kind.MESSAGE_DEFERRED, 451, deliveries=tried).counted == 4


def test_next_attempt_retries_used_up_gives_up():
    decided = decide(Kind.RECIPIENT_DEFERRED, 450, deliveries=[delivery(attempts=5)])

    assert (decided.outcome, decided.gave_up, decided.counted) == (Outcome.FAILED, True, 5)
    assert decided.suppress is False


def test_next_attempt_held_attempts_do_not_use_up_retries():
    decided = decide(Kind.RECIPIENT_DEFERRED, 450, deliveries=[delivery(attempts=7, held=3)])

    assert decided.outcome is Outcome.RETRY


@pytest.mark.parametrize("kind", [Kind.CONNECTION, Kind.LOGIN, Kind.SERVER, Kind.DEADLINE])
def test_next_attempt_server_failure_held_and_pauses(kind):
    decided = decide(kind, deliveries=[delivery(attempts=50)])

    assert (decided.outcome, decided.pause, decided.gave_up) == (Outcome.HELD, True, False)


def test_next_attempt_unconfirmed_retried_counted_and_pauses():
    decided = decide(Kind.UNCONFIRMED, deliveries=[delivery(attempts=5)])

    assert (decided.outcome, decided.pause, decided.gave_up) == (Outcome.FAILED, True, True)


def test_next_attempt_refusals_in_a_row_retried_and_pause():
    decided = decide(Kind.RECIPIENT_REFUSED, 550, "5.1.1 gone", refusals=SUSPECT_IN_A_ROW)

    assert (decided.outcome, decided.pause, decided.suppress) == (Outcome.RETRY, True, False)


def test_delivery_from_document_confirmation_and_pilot():
    confirmation = Delivery.from_document(
        {
            "_id": "confirmation-2|k",
            "kind": "confirmation",
            "request": 2,
            "email_key": "k",
            "codes": [],
            "attempts": 1,
        }
    )
    pilot = Delivery.from_document(
        {
            "_id": "p|k",
            "pilot_id": "p",
            "email_key": "k",
            "codes": ["sdg-13"],
            "attempts": 3,
            "held": 1,
        }
    )

    assert (confirmation.is_confirmation, confirmation.request, confirmation.pilot_id) == (
        True,
        2,
        None,
    )
    assert (pilot.is_confirmation, pilot.codes, pilot.counted_attempts) == (False, ("sdg-13",), 2)
