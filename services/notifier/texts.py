"""Pure: which text of a pilot a reader gets, and how text that people wrote sits in an email.

A pilot's own title, summary and url are English; `translations` may hold them in the other
languages. A reader gets their language when the pilot has it, else English, and the email says
so (`PilotText.fallback`).

Text that an operator or a focal point wrote (a title, a summary, a name, an agency) keeps its own
direction inside the email's: an English title in an Arabic email is laid out left to right as a
unit, so its full stop stays at its end. HTML wraps such text in `<bdi>` (the `bdi` macro of
templates/_isolate.html.j2); plain text and headers in the Unicode isolates FSI ... PDI, line by
line (a line break ends an isolate).
Where it cannot matter (a left-to-right email and text without a right-to-left character or a
bidi control) the text is left as it is: some older clients draw the isolates as boxes.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from shared.events import PilotAnnounced

ENGLISH = "en"
FSI = "\u2068"  # FIRST STRONG ISOLATE: the text takes the direction of its first letter
PDI = "\u2069"  # POP DIRECTIONAL ISOLATE
# Bidi classes that can reorder a left-to-right line: right-to-left letters, Arabic digits and
# the explicit controls (embeddings, overrides, isolates and their pops).
_REORDERING = frozenset(
    {"R", "AL", "AN", "LRE", "LRO", "RLE", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
)
_CONTROLS = {ord(c): None for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"}


@dataclass(frozen=True)
class PilotText:
    """The words of a pilot a reader gets: in `language`, which is English when `fallback`
    (the pilot has no text in the reader's language)."""

    title: str
    summary: str
    url: str
    language: str
    fallback: bool


def pilot_text(pilot: PilotAnnounced, language: str) -> PilotText:
    """The pilot's text in `language` if it has one, else its English text (`fallback` set
    unless the reader's language is English)."""
    translation = pilot.translations.get(language)  # type: ignore[call-overload]
    if language == ENGLISH or translation is None:
        return PilotText(
            pilot.title, pilot.summary, str(pilot.url), ENGLISH, fallback=language != ENGLISH
        )
    url = translation.url if translation.url is not None else pilot.url
    return PilotText(translation.title, translation.summary, str(url), language, fallback=False)


def needs_isolation(text: str, direction: str) -> bool:
    """Whether `text` could be laid out wrongly among the words of an email of `direction`."""
    if not text.strip():
        return False
    return direction == "rtl" or any(
        unicodedata.bidirectional(char) in _REORDERING for char in text
    )


def without_controls(text: str) -> str:
    """`text` without bidi embeddings, overrides and isolates, so that none of them can end an
    isolate around it early (they are invisible; the isolate gives the text its direction)."""
    return text.translate(_CONTROLS)


def isolate(text: str, direction: str) -> str:
    """Plain text (a part or a header): each line of `text` in FSI ... PDI where it matters."""
    if not needs_isolation(text, direction):
        return text
    lines = without_controls(text).split("\n")
    return "\n".join(f"{FSI}{line}{PDI}" if line.strip() else line for line in lines)
