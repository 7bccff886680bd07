"""What an SMTP failure means, for the delivery and for the dispatcher (pure decisions).

Each message has one recipient, so a refusal at RCPT, or the reply to the final "." of DATA, is
the server's word on that one delivery. Everything before (connection, TLS, greeting, EHLO,
login, MAIL FROM) and a 421 at any point is about the server or our account: every message would
meet it, so no delivery is failed for it; the dispatcher pauses and tries again with backoff.

A run of delivery refusals with no message accepted between them is also read as the server
refusing everything (a relay that denies every recipient, a filter that rejects every message):
after `SUSPECT_IN_A_ROW` of them the dispatcher pauses too, and those deliveries are retried
(counted towards MAX_ATTEMPTS, so an address that is really bad still ends `failed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# Delivery refusals or deferrals in a row, with no message accepted between them, after which
# the server is suspected of refusing everything.
SUSPECT_IN_A_ROW = 5

# Replies about our login whatever the command: authentication required (530), mechanism too
# weak (534), credentials invalid (535), encryption required for it (538), temporary (454).
LOGIN_CODES = frozenset({454, 530, 534, 535, 538})


class Stage(StrEnum):
    """Where in the SMTP exchange a send stopped."""

    CONNECT = "connect"  # TCP, implicit TLS, greeting, EHLO, STARTTLS
    LOGIN = "login"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"  # the DATA command, the content and the reply to the final "."


class Kind(StrEnum):
    """What went wrong; the label of `notifier_smtp_failures_total`."""

    RECIPIENT_REFUSED = "recipient_refused"  # 5xx at RCPT
    RECIPIENT_DEFERRED = "recipient_deferred"  # 4xx at RCPT
    MESSAGE_REFUSED = "message_refused"  # 5xx to DATA
    MESSAGE_DEFERRED = "message_deferred"  # 4xx to DATA
    UNCONFIRMED = "unconfirmed"  # no reply at DATA: the server may have the message
    CONNECTION = "connection"  # refused, reset, timed out, TLS failed, before DATA
    LOGIN = "login"  # the server refused our login
    SERVER = "server"  # 421, or a refusal at the greeting, EHLO, STARTTLS or MAIL FROM
    DEADLINE = "deadline"  # the send's overall deadline passed before DATA


class Outcome(StrEnum):
    """What happens to the delivery (or digest) whose message met the failure."""

    FAILED = "failed"  # for good, with the reason
    RETRY = "retry"  # due again after its backoff; counts towards MAX_ATTEMPTS
    HELD = "held"  # due again after the pause; the server's fault, so not counted


@dataclass(frozen=True)
class Decision:
    """The delivery's outcome, and whether the dispatcher pauses before its next message."""

    outcome: Outcome
    pause: bool


DELIVERY_KINDS = frozenset(
    {Kind.RECIPIENT_REFUSED, Kind.RECIPIENT_DEFERRED, Kind.MESSAGE_REFUSED, Kind.MESSAGE_DEFERRED}
)


def classify(stage: Stage, code: int | None) -> Kind:
    """The kind of a failure at `stage`: `code` is the server's reply, None when none came."""
    if code is None:
        return Kind.UNCONFIRMED if stage is Stage.DATA else Kind.CONNECTION
    if code == 421:  # "service not available, closing the channel", whatever the command
        return Kind.SERVER
    if stage is Stage.LOGIN or (code in LOGIN_CODES and stage in (Stage.MAIL, Stage.RCPT)):
        return Kind.LOGIN
    if not 400 <= code < 600:  # a reply the protocol does not allow there
        return Kind.SERVER
    if stage is Stage.RCPT:
        return Kind.RECIPIENT_REFUSED if code >= 500 else Kind.RECIPIENT_DEFERRED
    if stage is Stage.DATA:
        return Kind.MESSAGE_REFUSED if code >= 500 else Kind.MESSAGE_DEFERRED
    return Kind.SERVER


def decide(kind: Kind, in_a_row: int) -> Decision:
    """What to do after a failure of `kind`; `in_a_row` counts the delivery failures (this one
    included) since the server last accepted a message."""
    suspect = kind in DELIVERY_KINDS and in_a_row >= SUSPECT_IN_A_ROW
    if suspect:
        return Decision(Outcome.RETRY, pause=True)
    if kind in (Kind.RECIPIENT_REFUSED, Kind.MESSAGE_REFUSED):
        return Decision(Outcome.FAILED, pause=False)
    if kind in (Kind.RECIPIENT_DEFERRED, Kind.MESSAGE_DEFERRED):
        return Decision(Outcome.RETRY, pause=False)
    if kind is Kind.UNCONFIRMED:
        # The server may have the message, so the retry may be a second copy (same Message-ID):
        # counted, so that MAX_ATTEMPTS bounds the copies a server that never answers can cause.
        return Decision(Outcome.RETRY, pause=True)
    return Decision(Outcome.HELD, pause=True)


# Replies at RCPT that say the mailbox itself does not exist or will never take mail: no such
# user (550), user not local (551), mailbox name not allowed (553). Enhanced status codes 5.7.x
# are about policy (our server's reputation, relaying, authentication), not the mailbox, so they
# never suppress it.
MAILBOX_GONE_CODES = frozenset({550, 551, 553})


def refuses_mailbox(kind: Kind, code: int | None, reply: str) -> bool:
    """Whether a failure is a permanent refusal of the recipient's mailbox at RCPT, after
    which the address is suppressed (`suppressions`); `reply` is the server's text."""
    if kind is not Kind.RECIPIENT_REFUSED or code not in MAILBOX_GONE_CODES:
        return False
    return not enhanced_status(reply).startswith("5.7.")


def enhanced_status(reply: str) -> str:
    """The enhanced status code (RFC 3463, `5.1.1`) a reply text starts with, or ""."""
    first = reply.split(maxsplit=1)[0] if reply.strip() else ""
    parts = first.split(".")
    return first if len(parts) == 3 and all(part.isdigit() for part in parts) else ""
