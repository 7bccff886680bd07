"""Log redaction every service installs: no email address, link token, bearer token, webhook
secret or configured secret value reaches a log line, whichever logger wrote it.

`RedactSecrets` rewrites each record before it is formatted (message, arguments and the
exception text), so Uvicorn's access log and the application's own lines are covered alike.
`install_redaction` puts it on Uvicorn's loggers and on every handler of the root logger, and
`shared.observability.configure_json_logging` on the handler it creates.
"""

from __future__ import annotations

import logging
import numbers
import os
import re
from collections.abc import Iterable, Mapping

from pydantic import SecretStr
from pydantic_settings import BaseSettings

REDACTED = "***"
# Local part and domain in any script (IDN addresses too); also percent-encoded in a URL.
# Bounded as addresses are (64 characters before the @, 63 per label), so that a long run of
# such characters in a line costs linear time, not quadratic.
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}(?:@|%40)[\w-]{1,63}(?:\.[\w-]{1,63})+")
_SECRET_PARAMETER = re.compile(r"(?i)([?&;](?:token|secret|access_token|signature)=)[^&#\s\"']*")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/=-]+")
_WEBHOOK_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")
# A link token (`services.notifier.unsubscribe`) wherever it appears, not only after `token=`.
_LINK_TOKEN = re.compile(r"\bv1\.[\w-]{8}\.[\w-]{22}\.[\w-]{43}")
# Every pattern below needs one of these; a text without any is returned as it is, at once.
_SUSPECT = re.compile(r"@|%40|=|whsec_|v1\.|(?i:bearer|basic)")
# Names of environment variables whose values are secrets even if no settings field holds them.
SECRET_VARIABLE_PREFIXES = ("WEBHOOK_SECRET_",)


def redact_query(url: str) -> str:
    """`url` with the value of its secret query parameters (`token`, ...) replaced by `***`."""
    return _SECRET_PARAMETER.sub(rf"\1{REDACTED}", url)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without email addresses, secret query values, credentials of an `Authorization`
    header, webhook secrets, link tokens and any of `secrets`."""
    return _redact(text, _alternatives(secrets))


def _alternatives(secrets: Iterable[str]) -> re.Pattern[str] | None:
    # Longest first, so that a secret containing another one is replaced whole.
    ordered = sorted(set(secrets), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, ordered))) if ordered else None


def _redact(text: str, secrets: re.Pattern[str] | None) -> str:
    if secrets is not None:
        text = secrets.sub(REDACTED, text)
    if _SUSPECT.search(text) is None:  # most arguments and lines: nothing below can match
        return text
    text = redact_query(text)
    text = _BEARER.sub(rf"\1 {REDACTED}", text)
    text = _WEBHOOK_SECRET.sub(f"whsec_{REDACTED}", text)
    text = _LINK_TOKEN.sub(REDACTED, text)
    return _EMAIL.sub(f"{REDACTED}@{REDACTED}", text)


class RedactSecrets(logging.Filter):
    """Rewrites a record's message and exception text with `redact`; never drops a line."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Also replace these values (each at least a few characters: short ones are noise)."""
        self._secrets |= {secret for secret in secrets if len(secret) >= 8}
        self._pattern = _alternatives(self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact `record` in place (once formatted, arguments cannot hide a value)."""
        secrets = self._pattern
        if isinstance(record.args, tuple):
            # The arguments stay a tuple of the same length: Uvicorn's own access formatter
            # unpacks them. Anything but a number becomes its redacted text.
            record.msg = _redact(str(record.msg), secrets)
            record.args = tuple(
                arg if isinstance(arg, numbers.Number) else _redact(str(arg), secrets)
                for arg in record.args
            )
        else:
            record.msg, record.args = _redact(record.getMessage(), secrets), None
        if record.exc_info:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_text, record.exc_info = _redact(text, secrets), None
        elif record.exc_text:
            record.exc_text = _redact(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = _redact(record.stack_info, secrets)
        return True


# One filter per process: every service in it adds the secrets it holds.
REDACT = RedactSecrets()


def secret_values(settings: BaseSettings, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret value of `settings` (each value of a rotation list) and of the secret
    environment variables (`WEBHOOK_SECRET_...`)."""
    environ = os.environ if environ is None else environ
    values: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            values += value.get_secret_value().split()
    for name, value in environ.items():
        if name.startswith(SECRET_VARIABLE_PREFIXES):
            values += value.split()
    return values


def install_redaction(settings: BaseSettings) -> None:
    """Redact the secrets of `settings` and the usual personal data in every log line."""
    REDACT.add_secrets(secret_values(settings))
    loggers = [logging.getLogger(name) for name in ("uvicorn.access", "uvicorn.error")]
    for logger in loggers:
        if REDACT not in logger.filters:
            logger.addFilter(REDACT)
    for handler in logging.getLogger().handlers:
        if REDACT not in handler.filters:
            handler.addFilter(REDACT)
