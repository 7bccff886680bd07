"""services.notifier.emails in each UN language: subject, greeting, direction, interest labels."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
import yaml

from services.notifier import emails
from services.notifier.emails import Recipient, compose, label, labels
from shared.events import LANGUAGES
from shared.taxonomy import load_taxonomy

TITLE = "Flood early warning for coastal districts"
NAME = "Nguyễn Văn An"
CODES = ["climate-resilience", "sdg-13"]

# language: (subject prefix, greeting, direction, label of climate-resilience, label of sdg-13)
EXPECTED = {
    "en": (
        "New pilot for your city: ",
        f"Dear {NAME},",
        "ltr",
        "Climate adaptation and resilience",
        "Climate action",
    ),
    "fr": (
        "Nouveau projet pilote pour votre ville : ",
        f"Bonjour {NAME},",
        "ltr",
        "Adaptation et résilience climatiques",
        "Mesures relatives à la lutte contre les changements climatiques",
    ),
    "es": (
        "Nuevo proyecto piloto para su ciudad: ",
        f"Estimado/a {NAME}:",
        "ltr",
        "Adaptación al clima y resiliencia",
        "Acción por el clima",
    ),
    "ar": (
        "مشروع تجريبي جديد لمدينتكم: ",
        f"السيد/السيدة {NAME}،",
        "rtl",
        "التكيف مع تغير المناخ والقدرة على الصمود",
        "العمل المناخي",
    ),
    # Full-width colons and Cyrillic letters are the languages' own, not look-alikes.
    "zh": ("贵市的新试点项目：", f"尊敬的{NAME}：", "ltr", "气候适应与韧性", "气候行动"),  # noqa: RUF001
    "ru": (
        "Новый пилотный проект для вашего города: ",
        f"Уважаемый(ая) {NAME}!",
        "ltr",
        "Адаптация к изменению климата и устойчивость",
        "Борьба с изменением климата",  # noqa: RUF001
    ),
}


def own_direction(text, language, *, html=False):
    """`text` as a person wrote it, isolated in an email of the other direction."""
    if EXPECTED[language][2] == "ltr":
        return text
    return f"<bdi>{text}</bdi>" if html else f"\u2068{text}\u2069"


def email_in(language, pilot):
    return compose(
        pilot,
        Recipient("an.nguyen@example.org", NAME, language),
        CODES,
        sender="Cities Project <pilots@cities.example.org>",
        unsubscribe_url="https://cities.example.org/v1/unsubscribe?token=t",
        delivery_key="pilot-2025-007|an.nguyen@example.org",
        now=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def test_expected_covers_every_language():
    assert set(EXPECTED) == set(LANGUAGES)


@pytest.mark.parametrize("language", LANGUAGES)
def test_compose_subject_in_language(make_pilot_event, language):
    message = email_in(language, make_pilot_event())

    assert message["Subject"] == EXPECTED[language][0] + own_direction(TITLE, language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_compose_greeting_in_language(make_pilot_event, language):
    message = email_in(language, make_pilot_event())
    greeting = EXPECTED[language][1]
    text = greeting.replace(NAME, own_direction(NAME, language))
    html = greeting.replace(NAME, own_direction(NAME, language, html=True))

    assert message.get_body(("plain",)).get_content().startswith(text + "\n")
    assert f">{html}</p>" in message.get_body(("html",)).get_content()


@pytest.mark.parametrize("language", LANGUAGES)
def test_compose_direction_in_language(make_pilot_event, language):
    html = email_in(language, make_pilot_event()).get_body(("html",)).get_content()
    direction = EXPECTED[language][2]

    assert f'<html lang="{language}" dir="{direction}">' in html
    assert f'dir="{direction}"\n' in html  # the content table, not only the document


def test_compose_arabic_right_aligned(make_pilot_event):
    html = email_in("ar", make_pilot_event()).get_body(("html",)).get_content()

    assert "text-align:right;" in html
    assert "padding-right:20px;" in html
    assert "text-align:left;" not in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_compose_interest_labels_in_language(make_pilot_event, language):
    message = email_in(language, make_pilot_event())
    *_, climate, sdg13 = EXPECTED[language]

    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert f"  - {climate}\n  - {sdg13}\n" in text
    assert f"<li>{climate}</li>" in html
    assert f"<li>{sdg13}</li>" in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_compose_date_header_present(make_pilot_event, language):
    wire = email_in(language, make_pilot_event()).as_bytes()

    assert message_from_bytes(wire, policy=policy.default)["Date"] == (
        "Thu, 02 Jan 2025 03:04:05 +0000"
    )


def test_compose_date_header_now_by_default(make_pilot_event):
    message = compose(
        make_pilot_event(),
        Recipient("a@example.org", "A", "en"),
        CODES,
        sender="pilots@example.org",
        unsubscribe_url="https://x.example/u",
        delivery_key="k",
    )
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)["Date"].datetime

    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 3600


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "en"])
def test_labels_file_translates_every_code(language):
    taxonomy = load_taxonomy()
    english = {**taxonomy.sdgs, **taxonomy.themes, **taxonomy.modalities}
    path = emails.TEMPLATES / "i18n" / "labels" / f"{language}.yaml"

    translated = yaml.safe_load(path.read_text("utf-8"))

    assert set(translated) == set(english)  # no unknown code, none missing
    assert all(translated[code] != english[code] for code in english)


def test_labels_english_from_taxonomy():
    taxonomy = load_taxonomy()

    assert labels("en")["sdg-6"] == taxonomy.sdgs["sdg-6"]
    assert labels("en")["city-twinning"] == taxonomy.modalities["city-twinning"]


def test_labels_missing_code_english_fallback(tmp_path, monkeypatch):
    (tmp_path / "i18n" / "labels").mkdir(parents=True)
    (tmp_path / "i18n" / "labels" / "fr.yaml").write_text("sdg-6: Eau propre\n", "utf-8")
    monkeypatch.setattr(emails, "TEMPLATES", tmp_path)
    labels.cache_clear()
    try:
        assert label("sdg-6", "fr") == "Eau propre"
        assert label("housing", "fr") == "Affordable housing and informal settlements"
    finally:
        labels.cache_clear()


@pytest.mark.parametrize("language", ["de", "", "pt-BR"])
def test_label_unknown_language_english(language):
    assert label("climate-resilience", language) == "Climate adaptation and resilience"


def test_label_unknown_code_itself():
    assert label("not-a-code", "fr") == "not-a-code"


def digest_in(language, pilots):
    return emails.compose_digest(
        [(pilot, CODES) for pilot in pilots],
        Recipient("an.nguyen@example.org", NAME, language),
        sender="Cities Project <pilots@cities.example.org>",
        unsubscribe_url="https://cities.example.org/v1/unsubscribe?token=t",
        delivery_key="a|an.nguyen@example.org+b|an.nguyen@example.org",
        now=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def test_compose_digest_lists_every_pilot(make_pilot_event):
    first = make_pilot_event(pilot_id="a", title="Flood warning", url="https://example.org/a")
    second = make_pilot_event(pilot_id="b", title="Heat plans", url="https://example.org/b")

    message = digest_in("en", [first, second])

    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert message["Subject"] == "2 new pilots for your city"
    assert text.startswith(f"Dear {NAME},\n")
    assert "Flood warning\n=============" in text
    assert "Heat plans\n==========" in text
    assert text.count("  - Climate adaptation and resilience\n") == 2
    assert "Read the call and apply: https://example.org/a\n" in text
    assert "Read the call and apply: https://example.org/b\n" in text
    assert html.count("<li>Climate adaptation and resilience</li>") == 2
    assert '<a href="https://example.org/b"' in html
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Date"] == "Thu, 02 Jan 2025 03:04:05 +0000"


@pytest.mark.parametrize("language", LANGUAGES)
def test_compose_digest_in_language(make_pilot_event, language):
    pilots = [make_pilot_event(pilot_id=f"p{n}") for n in range(3)]

    message = digest_in(language, pilots)

    html = message.get_body(("html",)).get_content()
    assert message["Subject"] == emails.strings(language)["digest_subject"].format(count=3)
    assert "3" in message["Subject"]
    assert (message["Subject"] == "3 new pilots for your city") is (language == "en")
    assert message["Content-Language"] == language
    assert f'<html lang="{language}" dir="{EXPECTED[language][2]}">' in html
    assert html.count(f"<li>{EXPECTED[language][3]}</li>") == 3


def test_compose_digest_escapes_titles(make_pilot_event):
    pilots = [make_pilot_event(title="<b>x</b>"), make_pilot_event(title="y")]

    html = digest_in("en", pilots).get_body(("html",)).get_content()

    assert "<b>x</b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html


def test_compose_digest_nothing_raises():
    with pytest.raises(ValueError, match="at least one pilot"):
        digest_in("en", [])


def test_compose_digest_name_with_line_break_raises(make_pilot_event):
    with pytest.raises(ValueError):
        emails.compose_digest(
            [(make_pilot_event(), CODES)] * 2,
            Recipient("a@example.org", "A\r\nBcc: v@example.org", "en"),
            sender="pilots@example.org",
            unsubscribe_url="https://x.example/u",
            delivery_key="k",
        )
