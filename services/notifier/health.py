"""Sending's health: delivery refusals in a row, and the pause of sending while the SMTP server
fails as a whole (`failures`), with one log line per change of state, not one per try."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from services.notifier.failures import DELIVERY_KINDS, Kind
from services.notifier.mailer import MailFailure
from services.notifier.ports import MailerPort
from services.notifier.retry import Backoff
from shared.observability import SMTP_FAILURES, SMTP_PAUSED

logger = logging.getLogger(__name__)


@dataclass
class SmtpHealth:
    """Whether sending is paused, why, since when and until when."""

    backoff: Backoff
    refusals: int = 0  # delivery failures in a row since the server last accepted a message
    pauses: int = 0
    paused: Kind | None = None
    paused_since: float = 0.0
    resume_at: float = 0.0

    def failed(self, failure: MailFailure) -> None:
        """Count a failure of a send (a delivery refusal also counts towards a run of them)."""
        SMTP_FAILURES.labels(failure.kind).inc()
        if failure.kind in DELIVERY_KINDS:
            self.refusals += 1

    def pause(self, failure: MailFailure) -> float:
        """Pause sending after a failure of the server as a whole; the seconds of the pause."""
        self.pauses += 1
        delay = self.backoff.delay(self.pauses)
        self.resume_at = time.monotonic() + delay
        if self.paused is None:
            self.paused_since = time.monotonic()
            SMTP_PAUSED.set(1)
        if self.paused is not failure.kind:
            logger.warning("SMTP sending paused: %s; next try in %.1fs", failure, delay)
        self.paused = failure.kind
        return delay

    def paused_for(self) -> float:
        """Seconds left of the pause (0 or less when not paused)."""
        return self.resume_at - time.monotonic() if self.paused is not None else 0.0

    def accepted(self) -> None:
        """The server accepted a message: whatever failed before was not about it."""
        self.refusals = 0
        self.resumed()

    def resumed(self) -> None:
        """Sending works again: end the pause, if any."""
        if self.paused is None:
            return
        logger.warning(
            "SMTP sending resumed after %d tries over %.0fs (last: %s)",
            self.pauses,
            time.monotonic() - self.paused_since,
            self.paused,
        )
        self.paused, self.pauses = None, 0
        SMTP_PAUSED.set(0)

    async def probe(self, mailer: MailerPort, sender: str) -> None:
        """Paused with nothing due: is the server back? Connect, log in, MAIL FROM, RSET."""
        try:
            await mailer.check(sender)
        except MailFailure as failure:
            SMTP_FAILURES.labels(failure.kind).inc()
            self.pause(failure)
        else:
            self.resumed()
