"""services.notifier.failures: which SMTP failures fail a delivery and which pause sending."""

from __future__ import annotations

import pytest

from services.notifier.failures import (
    DELIVERY_KINDS,
    SUSPECT_IN_A_ROW,
    Decision,
    Kind,
    Outcome,
    Stage,
    classify,
    decide,
)


@pytest.mark.parametrize(
    ("stage", "code", "kind"),
    [
        (Stage.CONNECT, None, Kind.CONNECTION),  # refused, reset, timed out, TLS
        (Stage.CONNECT, 554, Kind.SERVER),  # greeting "no SMTP service here"
        (Stage.CONNECT, 421, Kind.SERVER),
        (Stage.CONNECT, 454, Kind.SERVER),  # STARTTLS temporarily unavailable
        (Stage.CONNECT, 502, Kind.SERVER),  # EHLO refused
        (Stage.LOGIN, 535, Kind.LOGIN),
        (Stage.LOGIN, 534, Kind.LOGIN),
        (Stage.LOGIN, 530, Kind.LOGIN),
        (Stage.LOGIN, 504, Kind.LOGIN),  # no mechanism in common
        (Stage.LOGIN, None, Kind.CONNECTION),
        (Stage.MAIL, 530, Kind.LOGIN),  # authentication required
        (Stage.MAIL, 554, Kind.SERVER),  # sender refused: every message would be
        (Stage.MAIL, 550, Kind.SERVER),
        (Stage.MAIL, 451, Kind.SERVER),
        (Stage.MAIL, 421, Kind.SERVER),
        (Stage.MAIL, 250, Kind.SERVER),  # a reply the protocol does not allow there
        (Stage.MAIL, None, Kind.CONNECTION),
        (Stage.RCPT, 550, Kind.RECIPIENT_REFUSED),
        (Stage.RCPT, 553, Kind.RECIPIENT_REFUSED),
        (Stage.RCPT, 451, Kind.RECIPIENT_DEFERRED),
        (Stage.RCPT, 452, Kind.RECIPIENT_DEFERRED),
        (Stage.RCPT, 421, Kind.SERVER),
        (Stage.RCPT, 530, Kind.LOGIN),
        (Stage.RCPT, None, Kind.CONNECTION),
        (Stage.DATA, 554, Kind.MESSAGE_REFUSED),
        (Stage.DATA, 552, Kind.MESSAGE_REFUSED),
        (Stage.DATA, 535, Kind.MESSAGE_REFUSED),  # after DATA a code is about the message
        (Stage.DATA, 451, Kind.MESSAGE_DEFERRED),
        (Stage.DATA, 421, Kind.SERVER),
        (Stage.DATA, None, Kind.UNCONFIRMED),
    ],
)
def test_classify_stage_and_code(stage, code, kind):
    assert classify(stage, code) is kind


@pytest.mark.parametrize(
    ("kind", "decision"),
    [
        (Kind.RECIPIENT_REFUSED, Decision(Outcome.FAILED, pause=False)),
        (Kind.MESSAGE_REFUSED, Decision(Outcome.FAILED, pause=False)),
        (Kind.RECIPIENT_DEFERRED, Decision(Outcome.RETRY, pause=False)),
        (Kind.MESSAGE_DEFERRED, Decision(Outcome.RETRY, pause=False)),
        (Kind.UNCONFIRMED, Decision(Outcome.RETRY, pause=True)),
        (Kind.CONNECTION, Decision(Outcome.HELD, pause=True)),
        (Kind.LOGIN, Decision(Outcome.HELD, pause=True)),
        (Kind.SERVER, Decision(Outcome.HELD, pause=True)),
        (Kind.DEADLINE, Decision(Outcome.HELD, pause=True)),
    ],
)
def test_decide_first_failure(kind, decision):
    assert decide(kind, in_a_row=1) == decision


@pytest.mark.parametrize("kind", sorted(set(Kind) - DELIVERY_KINDS))
@pytest.mark.parametrize("in_a_row", [0, 1, SUSPECT_IN_A_ROW, 1000])
def test_decide_server_failure_never_fails_delivery(kind, in_a_row):
    decision = decide(kind, in_a_row)

    assert decision.outcome is not Outcome.FAILED
    assert decision.pause


@pytest.mark.parametrize("kind", sorted(DELIVERY_KINDS))
def test_decide_delivery_failures_in_a_row_pause_and_retry(kind):
    assert not decide(kind, SUSPECT_IN_A_ROW - 1).pause
    assert decide(kind, SUSPECT_IN_A_ROW) == Decision(Outcome.RETRY, pause=True)
    assert decide(kind, SUSPECT_IN_A_ROW + 10) == Decision(Outcome.RETRY, pause=True)
