"""Pure email rendering: a pilot and a focal point in, a complete `EmailMessage` out.

Templates are Jinja2 with autoescaping for HTML, loaded once per process; the strings of each
language are data files (`templates/i18n/<lang>.yaml`) with English as the fallback.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
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
EMAIL_POLICY = policy.SMTP.clone(max_line_length=998)


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
    taxonomy = load_taxonomy()
    context: dict[str, Any] = {
        "t": t,
        "language": language,
        "pilot": pilot,
        "name": recipient.name,
        "interests": [taxonomy.label(code) for code in codes],
        "unsubscribe_url": unsubscribe_url,
    }
    env = environment()
    message = EmailMessage(policy=EMAIL_POLICY)
    # The policy of EmailMessage refuses CR and LF in header values: no field can add a header.
    message["Subject"] = t["subject"].format(title=pilot.title)
    message["From"] = sender
    message["To"] = formataddr((recipient.name, recipient.email))
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id(delivery_key, sender)
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(env.get_template("pilot.txt.j2").render(context))
    message.add_alternative(env.get_template("pilot.html.j2").render(context), subtype="html")
    # Set last: set_content() and add_alternative() drop the Content-* headers set before them.
    message["Content-Language"] = language
    return message


def unsubscribe_page(language: str, email: str, *, done: bool, action: str = "") -> str:
    """The confirmation page (`done=False`) or the goodbye page, in the focal point's language."""
    language = language if language in LANGUAGES else FALLBACK_LANGUAGE
    return (
        environment()
        .get_template("unsubscribe.html.j2")
        .render(t=strings(language), language=language, email=email, done=done, action=action)
    )
