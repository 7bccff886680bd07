"""services.notifier.texts: the pilot text a reader gets; people's text in its own direction."""

from __future__ import annotations

import pytest

from services.notifier.texts import FSI, PDI, PilotText, isolate, needs_isolation, pilot_text
from shared.events import LANGUAGES

ARABIC = {
    "title": "الإنذار المبكر بالفيضانات في المناطق الساحلية",
    "summary": "صفارات إنذار ورسائل نصية للمناطق المنخفضة.",
    "url": "https://example.org/ar/pilots/007",
}
FRENCH = {"title": "Alerte précoce aux inondations", "summary": "Sirènes et SMS."}


@pytest.fixture
def translated(make_pilot_event):
    return make_pilot_event(translations={"ar": ARABIC, "fr": FRENCH})


def test_pilot_text_reader_language_used(translated):
    assert pilot_text(translated, "ar") == PilotText(
        ARABIC["title"], ARABIC["summary"], ARABIC["url"], "ar", fallback=False
    )


def test_pilot_text_translation_without_url_links_the_pilots(translated):
    text = pilot_text(translated, "fr")

    assert (text.title, text.url, text.fallback) == (
        FRENCH["title"],
        "https://example.org/pilots/007",
        False,
    )


@pytest.mark.parametrize("language", ["es", "zh", "ru"])
def test_pilot_text_missing_language_falls_back_to_english(translated, language):
    assert pilot_text(translated, language) == PilotText(
        "Flood early warning for coastal districts",
        "Sirens and SMS alerts for low-lying districts.",
        "https://example.org/pilots/007",
        "en",
        fallback=True,
    )


def test_pilot_text_english_reader_never_falls_back(translated):
    text = pilot_text(translated, "en")

    assert (text.title, text.language, text.fallback) == (translated.title, "en", False)


@pytest.mark.parametrize("language", LANGUAGES)
def test_pilot_text_no_translations_english_for_everyone(make_pilot_event, language):
    text = pilot_text(make_pilot_event(), language)

    assert (text.title, text.language, text.fallback) == (
        "Flood early warning for coastal districts",
        "en",
        language != "en",
    )


@pytest.mark.parametrize(
    ("text", "direction", "needed"),
    [
        ("Flood early warning.", "ltr", False),  # nothing in it can reorder an ltr line
        ("Nguyễn Văn An", "ltr", False),
        ("2025-03-31 (phase 2)", "ltr", False),
        ("ليلى حداد", "ltr", True),  # right-to-left letters in a left-to-right email
        ("שלום", "ltr", True),  # Hebrew too
        ("Budget ١٢٣", "ltr", True),  # Arabic-Indic digits
        ("An\u202eevil", "ltr", True),  # an override would reorder the rest of the line
        ("Flood early warning.", "rtl", True),  # anything people wrote, in an rtl email
        ("ليلى", "rtl", True),
        ("", "rtl", False),
        ("  ", "ltr", False),
    ],
)
def test_needs_isolation_cases(text, direction, needed):
    assert needs_isolation(text, direction) is needed


def test_isolate_english_sentence_in_rtl_keeps_full_stop_inside():
    assert isolate("Sirens for low-lying districts.", "rtl") == (
        f"{FSI}Sirens for low-lying districts.{PDI}"
    )


def test_isolate_each_line_on_its_own():
    # A line break ends an isolate: each line gets its own, blank lines none.
    assert isolate("First line.\n\nSecond line.", "rtl") == (
        f"{FSI}First line.{PDI}\n\n{FSI}Second line.{PDI}"
    )


def test_isolate_ltr_text_in_ltr_email_unchanged():
    assert isolate("Flood early warning.", "ltr") == "Flood early warning."


def test_isolate_drops_the_texts_own_controls():
    # A stray PDI or override in the text cannot end the isolate early.
    assert isolate("An\u2069\u202eevil", "ltr") == f"{FSI}Anevil{PDI}"
