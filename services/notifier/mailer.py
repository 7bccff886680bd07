"""The SMTP adapter: one connection reused for many messages, reopened when it drops.

Each send runs its steps one by one (connect, login, MAIL, RCPT, DATA) so that a failure says
where it happened (`failures.classify`), all within one overall deadline: a server that answers
every line just inside the reply timeout cannot hold a message, and its delivery's lease, longer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import getaddresses, parseaddr
from typing import Any

import aiosmtplib

from services.notifier.emails import Outgoing
from services.notifier.failures import Kind, Stage, classify


class MailFailure(Exception):
    """A send that did not end with the server accepting the message."""

    def __init__(
        self, kind: Kind, stage: Stage, reason: str, *, code: int | None = None, reply: str = ""
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.stage = stage
        self.code = code  # the server's reply code and text, when a refusal of the recipient
        self.reply = reply

    def __str__(self) -> str:
        return f"{self.kind} at {self.stage}: {self.args[0]}"


class Mailer:
    """Sends messages over one SMTP connection, in plain text, with STARTTLS or implicit TLS.

    With TLS the server's certificate is always verified, against `ca_file` when given (a PEM
    bundle) or the system's certificate authorities; STARTTLS is required, never optional: a
    server that does not offer it gets no message.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str = "",
        password: str = "",
        starttls: bool = False,
        implicit_tls: bool = False,
        ca_file: str = "",
        timeout: float = 10.0,
        deadline: float = 20.0,
    ) -> None:
        if starttls and implicit_tls:
            raise ValueError("STARTTLS and implicit TLS exclude each other")
        self._client = aiosmtplib.SMTP(
            hostname=host,
            port=port,
            timeout=timeout,
            start_tls=starttls,
            use_tls=implicit_tls,
            validate_certs=True,
            cert_bundle=ca_file or None,
        )
        self._credentials = (username, password) if username else None
        self._deadline = deadline
        self._lock = asyncio.Lock()
        self._stage = Stage.CONNECT

    async def send(self, message: Outgoing | EmailMessage) -> None:
        """Send `message`; raise `MailFailure` (with its kind and stage) unless it was accepted."""
        if isinstance(message, Outgoing):
            # Already the wire format: 7-bit, CRLF, no header left to write.
            envelope = (message.sender, [message.recipient], message.data)
        else:
            envelope = _envelope(message)
        async with self._lock:
            await self._guarded(self._transaction(*envelope))

    async def check(self, sender: str) -> None:
        """Would the server take a message from `sender`? Connect, log in, MAIL FROM, RSET:
        everything but a recipient (raising `MailFailure` as `send` does)."""
        async with self._lock:
            await self._guarded(self._probe(sender))

    async def close(self, grace: float | None = None) -> None:
        """Say QUIT if connected; drop the connection if the server has not answered within
        `grace` seconds (a hung server must not hold a shutdown)."""
        async with self._lock:
            if not self._client.is_connected:
                return
            try:
                async with asyncio.timeout(grace):
                    await self._client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                self._client.close()

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        # `work` runs under the overall deadline, and every way it can fail is a MailFailure.
        deadline = asyncio.timeout(self._deadline)
        self._stage = Stage.CONNECT
        try:
            async with deadline:
                await work
        except aiosmtplib.SMTPRecipientRefused as exc:
            await self._reset()
            kind, stage = classify(self._stage, exc.code), self._stage
            failure = MailFailure(kind, stage, _reply(exc), code=exc.code, reply=exc.message)
            raise failure from exc
        except aiosmtplib.SMTPResponseException as exc:
            self._client.close()
            code = exc.code if exc.code > 0 else None
            raise MailFailure(classify(self._stage, code), self._stage, _reply(exc)) from exc
        except TimeoutError as exc:
            self._client.close()
            if deadline.expired():
                kind = Kind.UNCONFIRMED if self._stage is Stage.DATA else Kind.DEADLINE
                reason = f"no answer within the send deadline of {self._deadline:g}s"
                raise MailFailure(kind, self._stage, reason) from exc
            stage = self._stage
            raise MailFailure(classify(stage, None), stage, _error(exc)) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:  # refused, reset, TLS, no STARTTLS
            self._client.close()
            stage, kind = self._stage, classify(self._stage, None)
            if stage is Stage.LOGIN and not isinstance(exc, ConnectionError):
                kind = Kind.LOGIN  # no AUTH offered, or no mechanism in common
            raise MailFailure(kind, stage, _error(exc)) from exc
        except asyncio.CancelledError:
            self._client.close()  # stopped mid-exchange: the connection's state is unknown
            raise

    async def _transaction(self, sender: str, recipients: list[str], data: bytes) -> None:
        await self._begin(sender)
        self._stage = Stage.RCPT
        for recipient in recipients:
            await self._client.rcpt(recipient)
        self._stage = Stage.DATA
        await self._client.data(data)

    async def _probe(self, sender: str) -> None:
        await self._begin(sender)
        await self._client.rset()

    async def _begin(self, sender: str) -> None:
        """Connect if needed, then MAIL FROM."""
        reused = self._client.is_connected
        try:
            await self._connected()
            self._stage = Stage.MAIL
            await self._client.mail(sender)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPSenderRefused) as exc:
            # A server closes a connection left idle (often saying 421 first): once, open a
            # new one. Nothing of this message has been sent yet.
            stale = not isinstance(exc, aiosmtplib.SMTPSenderRefused) or exc.code == 421
            if not (reused and stale):
                raise
            self._client.close()
            await self._connected()
            self._stage = Stage.MAIL
            await self._client.mail(sender)

    async def _connected(self) -> None:
        if self._client.is_connected:
            return
        self._stage = Stage.CONNECT
        await self._client.connect()
        if self._credentials:
            self._stage = Stage.LOGIN
            await self._client.login(*self._credentials)

    async def _reset(self) -> None:
        # After a refused recipient the connection is fine: RSET ends the transaction so the
        # next message can use it. If even that fails, start afresh next time.
        try:
            await self._client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._client.close()


def _envelope(message: EmailMessage) -> tuple[str, list[str], bytes]:
    sender = parseaddr(str(message["Sender"] or message["From"]))[1]
    fields = [str(value) for name in ("To", "Cc") for value in message.get_all(name, [])]
    recipients = [address for _, address in getaddresses(fields) if address]
    return sender, recipients, message.as_bytes(policy=SMTP_POLICY)


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}"


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
