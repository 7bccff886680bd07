"""services.notifier.emails: the pilot email (both parts, every header) and the unsubscribe page."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

from services.notifier.emails import (
    Recipient,
    build,
    compose,
    language_of,
    message_id,
    strings,
    unsubscribe_page,
)
from shared.events import LANGUAGES

SENDER = "Cities Project <pilots@cities.example.org>"
KEY = "pilot-2025-007|an.nguyen@example.org"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
# Longer than a 78-character header line: it must still reach clients as one line.
UNSUBSCRIBE_URL = "https://cities.example.org/v1/unsubscribe?token=" + "QW4" * 30 + ".c2ln" * 10
CODES = ["climate-resilience", "sdg-13"]
TITLE = "Flood early warning for coastal districts"


def recipient(**changes: str) -> Recipient:
    fields = {"email": "an.nguyen@example.org", "name": "Nguyễn Văn An", "language": "en"}
    return Recipient(**{**fields, **changes})


def email(pilot, to: Recipient | None = None, **kwargs):
    arguments = {
        "sender": SENDER,
        "unsubscribe_url": UNSUBSCRIBE_URL,
        "delivery_key": KEY,
        "now": NOW,
        **kwargs,
    }
    return compose(pilot, to or recipient(), CODES, **arguments)


def parts(message) -> tuple[str, str]:
    return (
        message.get_body(("plain",)).get_content(),
        message.get_body(("html",)).get_content(),
    )


def test_compose_both_parts_present(make_pilot_event):
    message = email(make_pilot_event())

    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]


def test_compose_text_part_content(make_pilot_event):
    text, _ = parts(email(make_pilot_event()))

    assert text.startswith("Dear Nguyễn Văn An,\n")
    assert "Flood early warning for coastal districts\n=========" in text
    assert "  - Climate adaptation and resilience\n  - Climate action\n" in text
    assert "Lead agency: UNOSSC\n" in text
    assert "Apply by: 2025-03-31\n" in text
    assert "Read the call and apply: https://example.org/pilots/007\n" in text
    assert text.rstrip().endswith(f"Unsubscribe with one click: {UNSUBSCRIBE_URL}")


def test_compose_html_part_content(make_pilot_event):
    _, html = parts(email(make_pilot_event()))

    assert '<html lang="en" dir="ltr">' in html
    assert '<p style="margin:0 0 12px;">Dear Nguyễn Văn An,</p>' in html
    assert "<li>Climate adaptation and resilience</li>" in html
    assert '<a href="https://example.org/pilots/007"' in html
    assert f'<a href="{UNSUBSCRIBE_URL}"' in html


def test_compose_no_deadline_said_so(make_pilot_event):
    text, html = parts(email(make_pilot_event(apply_by=None)))

    assert "Apply by: Open until further notice\n" in text
    assert "Open until further notice" in html


def test_compose_headers(make_pilot_event):
    message = email(make_pilot_event())

    assert message["Subject"] == f"New pilot for your city: {TITLE}"
    assert message["From"] == SENDER
    assert message["To"] == "Nguyễn Văn An <an.nguyen@example.org>"
    assert message["Date"] == "Thu, 02 Jan 2025 03:04:05 +0000"
    assert message["Content-Language"] == "en"
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE_URL}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_compose_message_id_from_delivery_key(make_pilot_event):
    expected = f"<{hashlib.sha256(KEY.encode()).hexdigest()[:32]}@cities.example.org>"

    assert email(make_pilot_event())["Message-ID"] == expected


def test_compose_message_id_stable_for_same_delivery(make_pilot_event):
    first = email(make_pilot_event(), now=datetime(2025, 1, 1, tzinfo=UTC))
    again = email(make_pilot_event(), now=datetime(2025, 1, 9, tzinfo=UTC))

    assert first["Message-ID"] == again["Message-ID"]


def test_compose_message_id_differs_per_delivery(make_pilot_event):
    first = email(make_pilot_event(), delivery_key="pilot-2025-007|a@example.org")
    other = email(make_pilot_event(), delivery_key="pilot-2025-007|b@example.org")

    assert first["Message-ID"] != other["Message-ID"]


@pytest.mark.parametrize(
    ("sender", "domain"),
    [
        (SENDER, "cities.example.org"),
        ("pilots@mail.example.org", "mail.example.org"),
        ("", "localhost"),
    ],
)
def test_message_id_domain_of_sender(sender, domain):
    assert message_id("k", sender) == f"<{hashlib.sha256(b'k').hexdigest()[:32]}@{domain}>"


def test_compose_list_unsubscribe_one_unfolded_line(make_pilot_event):
    wire = email(make_pilot_event()).as_bytes()

    lines = wire.split(b"\r\n") if b"\r\n" in wire else wire.split(b"\n")

    assert f"List-Unsubscribe: <{UNSUBSCRIBE_URL}>".encode() in lines
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines


def test_compose_wire_format_parses_back(make_pilot_event):
    parsed = message_from_bytes(email(make_pilot_event()).as_bytes(), policy=policy.default)

    assert parsed["List-Unsubscribe"] == f"<{UNSUBSCRIBE_URL}>"
    assert parsed["Subject"] == f"New pilot for your city: {TITLE}"
    assert parsed["To"].addresses[0].display_name == "Nguyễn Văn An"
    assert parsed["Content-Language"] == "en"


@pytest.mark.parametrize(
    "name",
    ["An\r\nBcc: victim@example.org", "An\nBcc: victim@example.org", "An\rBcc: x@example.org"],
)
def test_compose_name_with_line_break_raises(make_pilot_event, name):
    with pytest.raises(ValueError):
        email(make_pilot_event(), recipient(name=name))


def test_compose_address_with_line_break_raises(make_pilot_event):
    with pytest.raises(ValueError):
        email(make_pilot_event(), recipient(email="an@example.org\r\nBcc: victim@example.org"))


def test_compose_unsubscribe_url_with_line_break_raises(make_pilot_event):
    with pytest.raises(ValueError):
        email(make_pilot_event(), unsubscribe_url="https://x.example/u\r\nBcc: victim@example.org")


def test_compose_html_autoescapes_title(make_pilot_event):
    pilot = make_pilot_event(title="Flood <script>alert(1)</script> warning")

    text, html = parts(email(pilot))

    assert "<script>" not in html
    assert '<h1 style="font-size:20px;margin:0 0 8px;color:#00558c;">Flood &lt;script&gt;' in html
    assert "<title>Flood &lt;script&gt;alert(1)&lt;/script&gt; warning</title>" in html
    assert "Flood <script>alert(1)</script> warning\n" in text  # plain text is not HTML


def test_compose_html_autoescapes_name_and_summary(make_pilot_event):
    pilot = make_pilot_event(summary='<img src=x onerror="steal()">')

    _, html = parts(email(pilot, recipient(name="<b>An</b> & co")))

    assert "Dear &lt;b&gt;An&lt;/b&gt; &amp; co," in html
    assert "&lt;img src=x onerror=&#34;steal()&#34;&gt;" in html
    assert "<img" not in html


def test_compose_html_escapes_ampersand_in_link(make_pilot_event):
    url = "https://cities.example.org/v1/unsubscribe?token=abc&lang=fr"

    _, html = parts(email(make_pilot_event(), unsubscribe_url=url))

    assert '<a href="https://cities.example.org/v1/unsubscribe?token=abc&amp;lang=fr"' in html


@pytest.mark.parametrize("language", ["de", "", "EN", "pt-BR"])
def test_compose_unknown_language_falls_back_to_english(make_pilot_event, language):
    message = email(make_pilot_event(), recipient(language=language))

    text, html = parts(message)
    assert message["Content-Language"] == "en"
    assert message["Subject"].startswith("New pilot for your city: ")
    assert text.startswith("Dear Nguyễn Văn An,")
    assert '<html lang="en" dir="ltr">' in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_compose_un_language_named_in_header(make_pilot_event, language):
    message = email(make_pilot_event(), recipient(language=language))

    assert message["Content-Language"] == language


def test_strings_every_un_language_translated():
    # DESIGN: emails in the focal point's language (six UN languages), English only as fallback.
    english = strings("en")

    untranslated = [
        language for language in LANGUAGES if language != "en" and strings(language) == english
    ]

    assert untranslated == []


def test_language_of_known_and_unknown():
    assert language_of(recipient(language="fr")) == "fr"
    assert language_of(recipient(language="de")) == "en"


def test_strings_unknown_language_is_english():
    assert strings("de") == strings("en")
    assert strings("en")["subject"] == "New pilot for your city: {title}"


def test_unsubscribe_page_question_with_form():
    page = unsubscribe_page("en", "an@example.org", done=False, action="/v1/unsubscribe?token=t")

    assert "Stop all pilot emails to an@example.org?" in page
    assert '<form method="post" action="/v1/unsubscribe?token=t">' in page


def test_unsubscribe_page_done_without_form():
    page = unsubscribe_page("en", "an@example.org", done=True)

    assert "You are unsubscribed. an@example.org will receive no more pilot emails." in page
    assert "<form" not in page


def test_unsubscribe_page_escapes_address():
    page = unsubscribe_page("en", "<script>x</script>@example.org", done=True)

    assert "<script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;@example.org" in page


def test_unsubscribe_page_unknown_language_english():
    page = unsubscribe_page("xx", "an@example.org", done=True)

    assert '<html lang="en" dir="ltr">' in page


def wire(pilot, to: Recipient | None = None) -> bytes:
    return build(
        pilot,
        to or recipient(),
        CODES,
        sender=SENDER,
        unsubscribe_url=UNSUBSCRIBE_URL,
        delivery_key=KEY,
        now=NOW,
    ).data


@pytest.mark.parametrize("language", LANGUAGES)
def test_build_wire_seven_bit_crlf_short_lines(make_pilot_event, language):
    data = wire(make_pilot_event(title="Ω" * 200), recipient(name="名" * 200, language=language))

    assert data.isascii()  # no server extension (8BITMIME, SMTPUTF8) needed
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_build_compose_reads_the_wire_bytes(make_pilot_event):
    data = wire(make_pilot_event())
    parsed = message_from_bytes(data, policy=policy.default)

    assert parsed["Subject"] == f"New pilot for your city: {TITLE}"
    assert parsed["To"].addresses[0].display_name == "Nguyễn Văn An"
    assert parts(parsed) == parts(email(make_pilot_event()))


def test_build_name_like_encoded_word_kept_literal(make_pilot_event):
    name = "=?utf-8?q?Admin?="
    data = wire(make_pilot_event(), recipient(name=name))

    parsed = message_from_bytes(data, policy=policy.default)

    assert parsed["To"].addresses[0].display_name == name


def test_build_long_non_ascii_subject_round_trip(make_pilot_event):
    title = "Раннее оповещение " * 10

    parsed = email(make_pilot_event(title=title.strip()), recipient(language="ru"))

    assert title.strip() in parsed["Subject"]


def test_build_address_not_ascii_raises(make_pilot_event):
    with pytest.raises(ValueError):
        wire(make_pilot_event(), recipient(email="änne@example.org"))


def test_compose_internationalised_domain_sent_as_punycode(make_pilot_event):
    outgoing = build(
        make_pilot_event(),
        recipient(email="an@bücher.example"),
        CODES,
        sender=SENDER,
        unsubscribe_url=UNSUBSCRIBE_URL,
        delivery_key=KEY,
        now=NOW,
    )

    assert outgoing.recipient == "an@xn--bcher-kva.example"
    assert outgoing.parsed()["To"].addresses[0].addr_spec == "an@xn--bcher-kva.example"


def test_compose_non_ascii_local_part_raises_saying_why(make_pilot_event):
    with pytest.raises(ValueError, match="needs SMTPUTF8"):
        email(make_pilot_event(), recipient(email="nguyễn@example.org"))
