"""What becomes of deliveries whose message the SMTP server did not take (pure decisions).

`failures.decide` says what a failure means; this adds what the deliveries' own attempts allow:
a retry that came to the end of its tries fails for good, and a retry waits its backoff.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from services.notifier.failures import Kind, Outcome, decide, enhanced_status, refuses_mailbox
from services.notifier.records import Delivery


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter: the first delay and the cap, in seconds."""

    first: float
    cap: float

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds before try `attempts` + 1 (`backoff`)."""
        return backoff(attempts, self.first, self.cap, rng)


@dataclass(frozen=True)
class NextAttempt:
    """The fate of the deliveries of a message that was not accepted.

    `outcome`: failed for good, due again after `delay` (retry), or held until sending resumes
    (the caller's pause). `pause`: sending pauses before the next message. `suppress`:
    the failure says the mailbox is gone, `detail` its codes (never the reply text, which may
    quote the address). `gave_up`: a retry that ran out of attempts (`counted` of them).
    """

    outcome: Outcome
    pause: bool
    delay: float = 0.0
    gave_up: bool = False
    counted: int = 0
    suppress: bool = False
    detail: str = ""


def next_attempt(
    failure: Kind,
    code: int | None,
    reply: str,
    *,
    refusals: int,
    deliveries: Sequence[Delivery],
    max_attempts: int,
    backoff_of: Backoff,
    rng: random.Random | None = None,
) -> NextAttempt:
    """Decide for the deliveries of one message after `failure` (`code`, `reply`: the server's
    answer, if any); `refusals` counts the delivery failures in a row, this one included."""
    decision = decide(failure, refusals)
    if decision.outcome is Outcome.FAILED:
        suppress = refuses_mailbox(failure, code, reply)
        detail = f"{code} {enhanced_status(reply)}".strip() if suppress else ""
        return NextAttempt(Outcome.FAILED, decision.pause, suppress=suppress, detail=detail)
    if decision.outcome is Outcome.HELD:
        return NextAttempt(Outcome.HELD, decision.pause)
    # Attempts made while the server failed as a whole do not count.
    counted = max(delivery.counted_attempts for delivery in deliveries)
    if counted >= max_attempts:
        return NextAttempt(Outcome.FAILED, decision.pause, gave_up=True, counted=counted)
    delay = backoff_of.delay(counted, rng)
    return NextAttempt(Outcome.RETRY, decision.pause, delay=delay, counted=counted)


def backoff(attempts: int, first: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before the next try: exponential, capped, with jitter so replicas do not align."""
    # The exponent is bounded first: 2.0 ** 1100 would overflow long before the cap applies.
    delay = min(cap, first * 2.0 ** min(max(0, attempts - 1), 64))
    jitter: float = (rng or random.Random()).random()
    return delay * (0.5 + jitter / 2)
