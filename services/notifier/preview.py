"""A sample email of a pilot, for review before it is announced: pure rendering, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from services.notifier import emails
from services.notifier.texts import pilot_text
from shared.events import LANGUAGES, PilotAnnounced

SAMPLE_SENDER = "Cities Project <pilots@cities.example.org>"
SAMPLE_UNSUBSCRIBE_URL = "https://cities.example.org/v1/unsubscribe?token=sample"
SAMPLE_PREFERENCES_URL = "https://cities.example.org/v1/preferences?token=sample"
SAMPLE_NAMES = {
    "en": "Amina Yusuf",
    "fr": "Awa Diallo",
    "es": "María Fernanda López",
    "ar": "ليلى حداد",
    "zh": "王芳",
    "ru": "Анна Петрова",
}


@dataclass(frozen=True)
class Preview:
    """What a focal point would receive: headers and both parts."""

    subject: str
    html: str
    text: str
    fallback: bool  # the pilot has no text in this language: English, and the email says so


def parse_pilot(raw: bytes) -> PilotAnnounced:
    """A pilot file as the notifier would read it from the topic (JSON); `ValueError` if invalid."""
    return PilotAnnounced.model_validate_json(raw)


def render(pilot: PilotAnnounced, language: str, name: str | None = None) -> Preview:
    """The email of `pilot` for a focal point of `language` who shares every one of its themes
    and SDGs: in the pilot's text of that language, else in English with the fallback said."""
    if language not in LANGUAGES:
        raise ValueError(f"{language!r} is not one of the languages: {', '.join(LANGUAGES)}")
    codes = [*pilot.themes, *pilot.sdgs]
    message = emails.compose(
        pilot,
        emails.Recipient("focal.point@example.org", name or SAMPLE_NAMES[language], language),
        codes,
        sender=SAMPLE_SENDER,
        unsubscribe_url=SAMPLE_UNSUBSCRIBE_URL,
        preferences_url=SAMPLE_PREFERENCES_URL,
        delivery_key=f"{pilot.pilot_id}|preview",
    )
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None  # compose always writes both parts
    return Preview(
        str(message["Subject"]),
        str(html.get_content()),
        str(text.get_content()),
        fallback=pilot_text(pilot, language).fallback,
    )
