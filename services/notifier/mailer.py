"""The SMTP adapter: one connection reused for many messages, reopened when it drops."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import aiosmtplib

from services.notifier.emails import Outgoing


class TransientMailError(Exception):
    """Worth retrying: connection refused or lost, timeout, 4xx reply."""


class PermanentMailError(Exception):
    """Not worth retrying: a 5xx reply (bad recipient, refused sender, ...)."""


class Mailer:
    """Sends messages over one SMTP connection."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str = "",
        password: str = "",
        starttls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self._client = aiosmtplib.SMTP(
            hostname=host, port=port, timeout=timeout, start_tls=starttls, use_tls=False
        )
        self._credentials = (username, password) if username else None
        self._lock = asyncio.Lock()

    async def send(self, message: Outgoing | EmailMessage) -> None:
        """Send `message`, raising `TransientMailError` or `PermanentMailError` on failure."""
        async with self._lock:
            try:
                await self._connected()
                if isinstance(message, Outgoing):
                    # Already the wire format: 7-bit, CRLF, no header left to write.
                    await self._client.sendmail(message.sender, [message.recipient], message.data)
                else:
                    await self._client.send_message(message)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                codes = [refusal.code for refusal in exc.recipients]
                reply = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
                if all(code >= 500 for code in codes):
                    raise PermanentMailError(reply) from exc
                await self._reset()
                raise TransientMailError(reply) from exc
            except aiosmtplib.SMTPResponseException as exc:
                if 400 <= exc.code < 500 or exc.code < 0:
                    await self._reset()
                    raise TransientMailError(f"{exc.code} {exc.message}") from exc
                raise PermanentMailError(f"{exc.code} {exc.message}") from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                await self._reset()
                raise TransientMailError(f"{type(exc).__name__}: {exc}") from exc

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

    async def _connected(self) -> None:
        if self._client.is_connected:
            return
        await self._client.connect()
        if self._credentials:
            await self._client.login(*self._credentials)

    async def _reset(self) -> None:
        if self._client.is_connected:
            self._client.close()
