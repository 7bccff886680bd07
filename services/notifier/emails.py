"""Pure email rendering: a pilot and a focal point in, a complete message out (`build`: the
bytes the dispatcher sends; `compose`: the same bytes read back as an `EmailMessage`).

Templates are Jinja2 with autoescaping for HTML, loaded once per process; the strings of each
language are data files (`templates/i18n/<lang>.yaml`), and so are the words for the taxonomy's
codes (`templates/i18n/labels/<lang>.yaml`), each with English as the fallback.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.charset import Charset
from email.header import Header
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from functools import cache, lru_cache, wraps
from pathlib import Path
from typing import Any, ParamSpec

import idna
import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.notifier.texts import isolate, needs_isolation, pilot_text, without_controls
from shared.events import LANGUAGES, PilotAnnounced
from shared.taxonomy import load_taxonomy

TEMPLATES = Path(__file__).with_name("templates")
FALLBACK_LANGUAGE = "en"
MAX_LINE = 998  # SMTP's limit on a line, CRLF excluded
P = ParamSpec("P")
UTF8 = Charset("utf-8")


class _HeaderClasses(HeaderRegistry):
    """The standard header classes, each built once: the standard registry builds a new class
    for every header of every message, a large share of the time an email takes to compose."""

    @cache  # noqa: B019 - one registry per process, kept for its lifetime anyway
    def __getitem__(self, name: str) -> type[BaseHeader]:
        header_class: type[BaseHeader] = super().__getitem__(name.lower())
        return header_class


EMAIL_POLICY = policy.SMTP.clone(max_line_length=MAX_LINE, header_factory=_HeaderClasses())


@dataclass(frozen=True)
class Outgoing:
    """A message ready for SMTP: envelope sender and recipient, its Message-ID, its bytes."""

    sender: str
    recipient: str
    message_id: str
    data: bytes

    def parsed(self) -> EmailMessage:
        """The bytes read back by the `email` package (for the preview and for checks)."""
        return message_from_bytes(self.data, policy=EMAIL_POLICY)


@dataclass(frozen=True)
class Recipient:
    """Who an email goes to, as the registry knows them."""

    email: str
    name: str
    language: str


@cache
def environment() -> Environment:
    """The Jinja2 environment (compiled templates are cached by it)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "html.j2"]),
        undefined=StrictUndefined,
        trim_blocks=False,
    )
    # Text people wrote keeps its own direction (services/notifier/texts.py).
    env.filters["isolate"] = isolate
    env.filters["without_controls"] = without_controls
    env.globals["needs_isolation"] = needs_isolation
    return env


@cache
def strings(language: str) -> dict[str, str]:
    """The strings of `language`, each missing one taken from English."""
    english = yaml.safe_load((TEMPLATES / "i18n" / "en.yaml").read_text("utf-8"))
    path = TEMPLATES / "i18n" / f"{language}.yaml"
    if language == FALLBACK_LANGUAGE or not path.exists():
        return dict(english)
    return {**english, **yaml.safe_load(path.read_text("utf-8"))}


@cache
def labels(language: str) -> dict[str, str]:
    """Words for every taxonomy code in `language`; English (the taxonomy's) for any it lacks."""
    taxonomy = load_taxonomy()
    english = {
        **taxonomy.sdgs,
        **taxonomy.themes,
        **taxonomy.modalities,
    }
    path = TEMPLATES / "i18n" / "labels" / f"{language}.yaml"
    if language == FALLBACK_LANGUAGE or not path.exists():
        return english
    translated: dict[str, str] = yaml.safe_load(path.read_text("utf-8")) or {}
    return {code: translated.get(code, label) for code, label in english.items()}


def label(code: str, language: str) -> str:
    """The words for one code in `language` (the code itself when the taxonomy lacks it)."""
    return labels(language).get(code, code)


def language_of(recipient: Recipient) -> str:
    """The recipient's language if we have it, else English."""
    return recipient.language if recipient.language in LANGUAGES else FALLBACK_LANGUAGE


def message_id(delivery_key: str, sender: str) -> str:
    """A stable Message-ID per delivery, so a repeated send is recognisably the same message."""
    domain = _address_of(sender).rpartition("@")[2] or "localhost"
    return f"<{hashlib.sha256(delivery_key.encode()).hexdigest()[:32]}@{domain}>"


def build(
    pilot: PilotAnnounced,
    recipient: Recipient,
    codes: list[str],
    *,
    sender: str,
    unsubscribe_url: str,
    delivery_key: str,
    preferences_url: str = "",
    now: datetime | None = None,
) -> Outgoing:
    """The email telling `recipient` about `pilot`, both parts, every header."""
    language = language_of(recipient)
    t = strings(language)
    text = pilot_text(pilot, language)
    context: dict[str, Any] = {
        "t": t,
        "language": language,
        "pilot": pilot,
        "text": text,
        "name": recipient.name,
        "interests": [label(code, language) for code in codes],
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
    }
    return _message(
        "pilot",
        context,
        t["subject"].format(title=isolate(text.title, t["direction"])),
        recipient,
        sender=sender,
        unsubscribe_url=unsubscribe_url,
        delivery_key=delivery_key,
        now=now,
    )


def build_digest(
    items: list[tuple[PilotAnnounced, list[str]]],
    recipient: Recipient,
    *,
    sender: str,
    unsubscribe_url: str,
    delivery_key: str,
    preferences_url: str = "",
    now: datetime | None = None,
) -> Outgoing:
    """One email telling `recipient` about several pilots (each with the codes it matched)."""
    if not items:
        raise ValueError("a digest needs at least one pilot")
    language = language_of(recipient)
    t = strings(language)
    subject = t["digest_subject"].format(count=len(items))
    context: dict[str, Any] = {
        "t": t,
        "language": language,
        "subject": subject,
        "items": [
            {
                "pilot": pilot,
                "text": pilot_text(pilot, language),
                "interests": [label(code, language) for code in codes],
            }
            for pilot, codes in items
        ],
        "name": recipient.name,
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
    }
    return _message(
        "digest",
        context,
        subject,
        recipient,
        sender=sender,
        unsubscribe_url=unsubscribe_url,
        delivery_key=delivery_key,
        now=now,
    )


def build_confirmation(
    recipient: Recipient,
    *,
    sender: str,
    confirm_url: str,
    expires_at: datetime,
    unsubscribe_url: str,
    preferences_url: str,
    delivery_key: str,
    now: datetime | None = None,
) -> Outgoing:
    """The double opt-in email: a link to the page that confirms the address (by a POST)."""
    language = language_of(recipient)
    t = strings(language)
    context: dict[str, Any] = {
        "t": t,
        "language": language,
        "name": recipient.name,
        "confirm_url": confirm_url,
        "expires": expires_at.strftime("%Y-%m-%d %H:%M UTC"),
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
    }
    return _message(
        "confirmation",
        context,
        t["confirm_subject"],
        recipient,
        sender=sender,
        unsubscribe_url=unsubscribe_url,
        delivery_key=delivery_key,
        now=now,
    )


def _parsed(build: Callable[P, Outgoing]) -> Callable[P, EmailMessage]:
    @wraps(build)
    def parsed(*args: P.args, **kwargs: P.kwargs) -> EmailMessage:
        return build(*args, **kwargs).parsed()

    return parsed


compose = _parsed(build)
compose_digest = _parsed(build_digest)
compose_confirmation = _parsed(build_confirmation)


def _message(
    template: str,
    context: dict[str, Any],
    subject: str,
    recipient: Recipient,
    *,
    sender: str,
    unsubscribe_url: str,
    delivery_key: str,
    now: datetime | None,
) -> Outgoing:
    env = environment()
    text = env.get_template(f"{template}.txt.j2").render(context)
    html = env.get_template(f"{template}.html.j2").render(context)
    mid = message_id(delivery_key, sender)
    address = ascii_address(recipient.email)
    headers = [
        _encoded("Subject", subject),
        _from_line(sender),
        _address_line("To", recipient.name, address),
        _line("Date", format_datetime(now or datetime.now(UTC))),
        _line("Message-ID", mid),
        # One line whatever its length (up to SMTP's 998), so clients read it as one URL.
        _line("List-Unsubscribe", f"<{unsubscribe_url}>"),
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        _line("Content-Language", str(context["language"])),
    ]
    return Outgoing(
        sender=_address_of(sender),
        recipient=address,
        message_id=mid,
        data=b"".join(headers) + _alternative(text, html),
    )


# The wire format is written here rather than by the `email` package, whose header objects
# (parsed, then folded again) cost most of the time a message takes. Every header value is
# refused if it holds a CR or LF, so no field can add a header; values that are not plain ASCII
# become RFC 2047 encoded words (the `email` package's own encoder); every line stays within
# SMTP's limit. `compose` reads the very same bytes back with the `email` package, so every check
# of a composed message is a check of what goes on the wire.


def _no_break(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"the {name} header may not hold a line break: {value!r}")


def _line(name: str, value: str) -> bytes:
    """A header of one line of ASCII (the line as it is: no folding)."""
    _no_break(name, value)
    line = f"{name}: {value}\r\n".encode("ascii")  # UnicodeEncodeError is a ValueError too
    return _short_lines(line, name)


@lru_cache(maxsize=1024)  # a pilot's subject is the same for everyone of a language
def _encoded(name: str, value: str) -> bytes:
    """A free-text header: folded; encoded words unless plain ASCII that no client could
    mistake for an encoded word."""
    _no_break(name, value)
    charset = "us-ascii" if _plain(value) else "utf-8"
    folded = Header(value, charset, header_name=name).encode(linesep="\r\n")
    return _short_lines(f"{name}: {folded}\r\n".encode("ascii"), name)


def ascii_address(address: str) -> str:
    """`address` as plain SMTP takes it: an internationalised domain in its IDNA (punycode)
    form. A local part that is not ASCII would need SMTPUTF8: `ValueError`, saying so."""
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise ValueError(f"{address!r}: a non-ASCII local part needs SMTPUTF8, not sent")
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"{address!r}: the domain is not a valid IDNA name: {exc}") from exc
    return f"{local}@{ascii_domain}"


def _address_line(header: str, name: str, address: str) -> bytes:
    """`Name <address>`: the name quoted, or one encoded word, as it needs; an address that
    is not ASCII (it would need SMTPUTF8) is refused."""
    _no_break(header, name)
    _no_break(header, address)
    address.encode("ascii")  # UnicodeEncodeError is a ValueError too
    if _plain(name):
        return _line(header, formataddr((name, address)))
    return _line(header, f"{UTF8.header_encode(name)} <{address}>")


def _plain(value: str) -> bool:
    return value.isascii() and "=?" not in value


def _short_lines(lines: bytes, name: str) -> bytes:
    if any(len(line) > MAX_LINE for line in lines.split(b"\r\n")):
        raise ValueError(f"the {name} header has a word longer than one SMTP line")
    return lines


@cache
def _address_of(sender: str) -> str:
    """The address part of the configured sender (the same for every message)."""
    return parseaddr(sender)[1]


@cache
def _from_line(sender: str) -> bytes:
    """The From header of the configured sender (the same for every message)."""
    name, address = parseaddr(sender)
    return _address_line("From", name, address)


def _alternative(text: str, html: str) -> bytes:
    """The MIME header and body of a multipart/alternative with a text and an HTML part."""
    parts = [_part("plain", text), _part("html", html)]
    boundary = "=_" + secrets.token_hex(16)
    while any(boundary.encode() in part for part in parts):  # as good as never: pick another
        boundary = "=_" + secrets.token_hex(16)
    delimiter = f"--{boundary}\r\n".encode()
    return b"".join(
        [
            b"MIME-Version: 1.0\r\n",
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode(),
            *(delimiter + part for part in parts),
            f"--{boundary}--\r\n".encode(),
        ]
    )


def _part(subtype: str, content: str) -> bytes:
    data = content.encode("utf-8")
    lines = data.splitlines()
    if data.isascii() and all(len(line) <= MAX_LINE for line in lines):
        encoding, body = "7bit", b"\r\n".join(lines)
    else:
        # Base64 is 7-bit and short-lined: no server extension needed, any content goes.
        encoding = "base64"
        encoded = base64.encodebytes(data)  # 76-character lines
        body = encoded.replace(b"\n", b"\r\n").rstrip(b"\r\n")
    return (
        (
            f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
        ).encode()
        + body
        + b"\r\n"
    )


def unsubscribe_page(language: str, email: str, *, done: bool, action: str = "") -> str:
    """The confirmation page (`done=False`) or the goodbye page, in the focal point's language."""
    language = language if language in LANGUAGES else FALLBACK_LANGUAGE
    return (
        environment()
        .get_template("unsubscribe.html.j2")
        .render(t=strings(language), language=language, email=email, done=done, action=action)
    )


def confirm_page(language: str, email: str, *, state: str, action: str = "") -> str:
    """The confirmation page: `ask` (a button that posts to `action`), `done` or `expired`."""
    language = language if language in LANGUAGES else FALLBACK_LANGUAGE
    return (
        environment()
        .get_template("confirm.html.j2")
        .render(t=strings(language), language=language, email=email, state=state, action=action)
    )


LANGUAGE_NAMES = {
    "en": "English",
    "fr": "Français",
    "es": "Español",
    "ar": "العربية",
    "zh": "中文",
    "ru": "Русский",
}


def preferences_page(language: str, **context: Any) -> str:
    """The preference centre of one person, in `language` (see `preferences` for `context`)."""
    language = language if language in LANGUAGES else FALLBACK_LANGUAGE
    return (
        environment()
        .get_template("preferences.html.j2")
        .render(
            t=strings(language),
            language=language,
            language_names=LANGUAGE_NAMES,
            **context,
        )
    )
