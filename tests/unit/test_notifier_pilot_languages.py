"""A pilot's own text per language in its emails: the reader's language, else English said so,
and text people wrote laid out in its own direction (HTML and plain text, pilot and digest)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.notifier import emails, preview
from services.notifier.__main__ import main
from services.notifier.emails import Recipient, compose, compose_digest
from services.notifier.texts import FSI, PDI
from shared.events import LANGUAGES

ARABIC = {
    "title": "الإنذار المبكر بالفيضانات في المناطق الساحلية",
    "summary": "صفارات إنذار ورسائل نصية للمناطق المنخفضة.",
    "url": "https://example.org/ar/pilots/007",
}
TITLE = "Flood early warning for coastal districts"
SUMMARY = "Sirens and SMS alerts for low-lying districts."
FALLBACK_AR = "لا يتوفر وصف هذا المشروع التجريبي باللغة العربية بعد، وإليكم وصفه باللغة الإنكليزية."
CODES = ["climate-resilience", "sdg-13"]
ARGS = {
    "sender": "Cities Project <pilots@cities.example.org>",
    "unsubscribe_url": "https://cities.example.org/v1/unsubscribe?token=t",
    "delivery_key": "pilot-2025-007|layla@example.org",
    "now": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
}


def reader(language: str, name: str = "ليلى حداد") -> Recipient:
    return Recipient("layla@example.org", name, language)


def parts(message) -> tuple[str, str]:
    return (
        message.get_body(("plain",)).get_content(),
        message.get_body(("html",)).get_content(),
    )


def test_compose_arabic_translation_reaches_arabic_reader(make_pilot_event):
    message = compose(make_pilot_event(translations={"ar": ARABIC}), reader("ar"), CODES, **ARGS)
    text, html = parts(message)

    assert message["Content-Language"] == "ar"
    assert message["Subject"] == f"مشروع تجريبي جديد لمدينتكم: {FSI}{ARABIC['title']}{PDI}"
    assert f"{FSI}{ARABIC['title']}{PDI}\n" in text
    assert f"{FSI}{ARABIC['summary']}{PDI}\n" in text
    assert f"اقرأ الدعوة وقدّم طلبك: {ARABIC['url']}\n" in text
    assert f"<bdi>{ARABIC['title']}</bdi></h1>" in html
    assert f'<a href="{ARABIC["url"]}"' in html
    assert '<html lang="ar" dir="rtl">' in html
    assert TITLE not in text + html
    assert FALLBACK_AR not in text + html


def test_compose_missing_translation_english_with_fallback_said(make_pilot_event):
    message = compose(make_pilot_event(translations={}), reader("ar"), CODES, **ARGS)
    text, html = parts(message)

    assert message["Content-Language"] == "ar"  # the email stays the reader's
    assert message["Subject"] == f"مشروع تجريبي جديد لمدينتكم: {FSI}{TITLE}{PDI}"
    assert f"{FALLBACK_AR}\n\n{FSI}{TITLE}{PDI}\n" in text
    assert f">{FALLBACK_AR}</p>\n<h1 " in html
    assert f' lang="en"><bdi>{TITLE}</bdi></h1>' in html
    assert f' lang="en"><bdi>{SUMMARY}</bdi></p>' in html
    assert '<html lang="ar" dir="rtl">' in html


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "en"])
def test_compose_fallback_sentence_in_reader_language(make_pilot_event, language):
    text, html = parts(compose(make_pilot_event(), reader(language, "An"), CODES, **ARGS))
    sentence = emails.strings(language)["fallback"]

    assert sentence != emails.strings("en")["fallback"]
    assert sentence in text
    assert sentence in html


def test_compose_english_reader_no_fallback_sentence(make_pilot_event):
    text, html = parts(compose(make_pilot_event(), reader("en", "An"), CODES, **ARGS))

    assert emails.strings("en")["fallback"] not in text + html


def test_compose_arabic_email_keeps_english_full_stop_with_its_sentence(make_pilot_event):
    # The full stop ends the isolated English run: it cannot move to the left of the line.
    text, html = parts(compose(make_pilot_event(), reader("ar"), CODES, **ARGS))

    assert f"\n{FSI}{SUMMARY}{PDI}\n" in text
    assert f"<bdi>{SUMMARY}</bdi>" in html
    assert f"الجهة الرائدة: {FSI}UNOSSC{PDI}\n" in text
    assert "<strong>الجهة الرائدة:</strong> <bdi>UNOSSC</bdi></p>" in html
    assert text.startswith(f"السيد/السيدة {FSI}ليلى حداد{PDI}،\n")
    assert ">السيد/السيدة <bdi>ليلى حداد</bdi>،</p>" in html
    assert f"<title>{FSI}{TITLE}{PDI}</title>" in html


def test_compose_english_email_isolates_arabic_name(make_pilot_event):
    text, html = parts(compose(make_pilot_event(), reader("en"), CODES, **ARGS))

    assert text.startswith(f"Dear {FSI}ليلى حداد{PDI},\n")
    assert '<p style="margin:0 0 12px;">Dear <bdi>ليلى حداد</bdi>,</p>' in html
    assert f"\n{TITLE}\n" in text  # left-to-right text in a left-to-right email: as it is
    assert f">{TITLE}</h1>" in html


def test_compose_isolated_text_still_escaped(make_pilot_event):
    pilot = make_pilot_event(translations={"ar": {**ARABIC, "title": "<script>x</script> طوفان"}})

    _, html = parts(compose(pilot, reader("ar"), CODES, **ARGS))

    assert "<script>" not in html
    assert "<bdi>&lt;script&gt;x&lt;/script&gt; طوفان</bdi>" in html


def test_compose_digest_each_pilot_in_its_own_language(make_pilot_event):
    translated = make_pilot_event(translations={"ar": ARABIC})
    english_only = make_pilot_event(pilot_id="pilot-2025-008", title="Green roofs")

    text, html = parts(
        compose_digest([(translated, CODES), (english_only, CODES)], reader("ar"), **ARGS)
    )

    assert f"{FSI}{ARABIC['title']}{PDI}\n" in text
    assert f"{FSI}Green roofs{PDI}\n===========\n\n{FALLBACK_AR}\n" in text
    assert text.count(FALLBACK_AR) == 1
    assert f"<bdi>{ARABIC['title']}</bdi></h2>" in html
    assert ' lang="en"><bdi>Green roofs</bdi></h2>' in html
    assert html.count(FALLBACK_AR) == 1
    assert f'<a href="{ARABIC["url"]}"' in html


def test_render_preview_uses_translation_and_says_fallback(make_pilot_event):
    pilot = make_pilot_event(translations={"ar": ARABIC})

    arabic, french = preview.render(pilot, "ar"), preview.render(pilot, "fr")

    assert ARABIC["title"] in arabic.subject
    assert not arabic.fallback
    assert french.fallback
    assert emails.strings("fr")["fallback"] in french.text


def test_preview_all_languages_one_file_pair_each(make_pilot, tmp_path, capsys):
    pilot_file = tmp_path / "pilot.json"
    pilot_file.write_text(json.dumps(make_pilot(translations={"ar": ARABIC})), "utf-8")

    code = main(
        ["preview", "--pilot", str(pilot_file), "--language", "all", "--out", str(tmp_path)]
    )

    out = capsys.readouterr()
    assert code == 0
    assert out.out.split() == [
        str(tmp_path / f"pilot-2025-007.{language}.{kind}")
        for language in LANGUAGES
        for kind in ("html", "txt")
    ]
    assert ARABIC["title"] in (tmp_path / "pilot-2025-007.ar.txt").read_text("utf-8")
    assert emails.strings("es")["fallback"] in (tmp_path / "pilot-2025-007.es.txt").read_text()
    assert out.err.splitlines() == [
        f"{language}: no translation; the English text, said so"
        for language in ("fr", "es", "zh", "ru")
    ]
