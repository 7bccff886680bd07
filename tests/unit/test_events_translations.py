"""pilots.announced.v1 `translations`: a title, summary and call link per language, checked as
the pilot's own; old events and old readers unchanged."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.events import TOLERANT, PilotAnnounced

ARABIC = {
    "title": "الإنذار المبكر بالفيضانات",
    "summary": "صفارات إنذار.",
    "url": "https://example.org/ar/pilots/007",
}


def error_locations(excinfo: pytest.ExceptionInfo[ValidationError]) -> list[tuple[object, ...]]:
    return [error["loc"] for error in excinfo.value.errors()]


def test_validate_translations_kept_and_serialised(make_pilot):
    pilot = PilotAnnounced.model_validate(make_pilot(translations={"ar": ARABIC}))

    assert pilot.model_dump(mode="json")["translations"] == {"ar": ARABIC}


def test_validate_translation_without_url_or_summary(make_pilot):
    pilot = PilotAnnounced.model_validate(make_pilot(translations={"zh": {"title": "洪水预警"}}))

    assert pilot.model_dump(mode="json")["translations"] == {
        "zh": {"title": "洪水预警", "summary": "", "url": None}
    }


def test_validate_no_translations_serialises_as_before(make_pilot):
    # Events without the field and readers that do not know it see exactly the old shape.
    pilot = PilotAnnounced.model_validate(make_pilot(translations={}))

    assert "translations" not in pilot.model_dump(mode="json")


def test_validate_translation_title_normalised_as_the_pilots(make_pilot):
    pilot = PilotAnnounced.model_validate(
        make_pilot(translations={"ar": {**ARABIC, "title": "  الإنذار\u202e  المبكر "}})
    )

    assert pilot.translations["ar"].title == "الإنذار المبكر"


def test_validate_translation_english_refused_saying_why(make_pilot):
    with pytest.raises(ValidationError, match="the pilot's own text is English") as excinfo:
        PilotAnnounced.model_validate(make_pilot(translations={"en": ARABIC}))

    assert error_locations(excinfo) == [("translations",)]


def test_validate_translation_unknown_language_names_field(make_pilot):
    with pytest.raises(ValidationError) as excinfo:
        PilotAnnounced.model_validate(make_pilot(translations={"de": ARABIC}))

    assert error_locations(excinfo) == [("translations", "de", "[key]")]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "t", "summary": "s" * 5001}, "summary"),
        ({"title": "t", "url": "not a link"}, "url"),
        ({"summary": "no title"}, "title"),
    ],
)
def test_validate_translation_bounds_name_the_field(make_pilot, entry, field):
    with pytest.raises(ValidationError) as excinfo:
        PilotAnnounced.model_validate(make_pilot(translations={"fr": entry}))

    assert error_locations(excinfo) == [("translations", "fr", field)]


def test_validate_tolerant_reader_drops_newer_language(make_pilot):
    # A consumer reads a pilot from a newer producer rather than parking it.
    pilot = PilotAnnounced.model_validate(
        make_pilot(translations={"ar": ARABIC, "pt": {"title": "Alerta"}}), context=TOLERANT
    )

    assert list(pilot.translations) == ["ar"]
