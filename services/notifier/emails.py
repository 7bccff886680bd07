"""Pure email rendering: a pilot and a focal point in, a complete `EmailMessage` out.

Templates are Jinja2 with autoescaping for HTML, loaded once per process; the strings of each
language are data files (`templates/i18n/<lang>.yaml`), and so are the words for the taxonomy's
codes (`templates/i18n/labels/<lang>.yaml`), each with English as the fallback.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from shared.events import LANGUAGES, PilotAnnounced
from shared.taxonomy import load_taxonomy

TEMPLATES = Path(__file__).with_name("templates")
FALLBACK_LANGUAGE = "en"
# Long header values (the unsubscribe URL) are folded, not turned into encoded words that
# mail clients would not read as a URL; the default policy also refuses CR/LF in values.


class _HeaderClasses(HeaderRegistry):
    """The standard header classes, each built once: the standard registry builds a new class
    for every header of every message, a large share of the time an email takes to compose."""

    @cache  # noqa: B019 - one registry per process, kept for its lifetime anyway
    def __getitem__(self, name: str) -> type[BaseHeader]:
        header_class: type[BaseHeader] = super().__getitem__(name.lower())
        return header_class


EMAIL_POLICY = policy.SMTP.clone(max_line_length=998, header_factory=_HeaderClasses())


@dataclass(frozen=True)
class Recipient:
    """Who an email goes to, as the registry knows them."""

    email: str
    name: str
    language: str


@cache
def environment() -> Environment:
    """The Jinja2 environment (compiled templates are cached by it)."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "html.j2"]),
        undefined=StrictUndefined,
        trim_blocks=False,
    )


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
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    return f"<{hashlib.sha256(delivery_key.encode()).hexdigest()[:32]}@{domain}>"


def compose(
    pilot: PilotAnnounced,
    recipient: Recipient,
    codes: list[str],
    *,
    sender: str,
    unsubscribe_url: str,
    delivery_key: str,
    now: datetime | None = None,
) -> EmailMessage:
    """The email telling `recipient` about `pilot`, both parts, every header."""
    language = language_of(recipient)
    t = strings(language)
    context: dict[str, Any] = {
        "t": t,
        "language": language,
        "pilot": pilot,
        "name": recipient.name,
        "interests": [label(code, language) for code in codes],
        "unsubscribe_url": unsubscribe_url,
    }
    return _message(
        "pilot",
        context,
        t["subject"].format(title=pilot.title),
        recipient,
        sender=sender,
        unsubscribe_url=unsubscribe_url,
        delivery_key=delivery_key,
        now=now,
    )


def compose_digest(
    items: list[tuple[PilotAnnounced, list[str]]],
    recipient: Recipient,
    *,
    sender: str,
    unsubscribe_url: str,
    delivery_key: str,
    now: datetime | None = None,
) -> EmailMessage:
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
            {"pilot": pilot, "interests": [label(code, language) for code in codes]}
            for pilot, codes in items
        ],
        "name": recipient.name,
        "unsubscribe_url": unsubscribe_url,
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
) -> EmailMessage:
    env = environment()
    message = EmailMessage(policy=EMAIL_POLICY)
    # The policy of EmailMessage refuses CR and LF in header values: no field can add a header.
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = formataddr((recipient.name, recipient.email))
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id(delivery_key, sender)
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(env.get_template(f"{template}.txt.j2").render(context))
    message.add_alternative(env.get_template(f"{template}.html.j2").render(context), subtype="html")
    # Set last: set_content() and add_alternative() drop the Content-* headers set before them.
    message["Content-Language"] = str(context["language"])
    return message


def unsubscribe_page(language: str, email: str, *, done: bool, action: str = "") -> str:
    """The confirmation page (`done=False`) or the goodbye page, in the focal point's language."""
    language = language if language in LANGUAGES else FALLBACK_LANGUAGE
    return (
        environment()
        .get_template("unsubscribe.html.j2")
        .render(t=strings(language), language=language, email=email, done=done, action=action)
    )
