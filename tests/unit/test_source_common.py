"""The shared pieces of the platform adapters: lookups, secrets, redaction, survey mappings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.sources.canonical import escape_key, unescape_key
from services.intake.sources.credentials import matches_any
from services.intake.sources.vocabulary import (
    Unmapped,
    alpha_2,
    consent,
    country_code,
    language_code,
    vocabularies,
)
from services.intake.surveys import FieldMap, SurveyCatalog
from shared.redaction import RedactSecrets
from shared.redaction import redact_query as redact


@pytest.mark.parametrize("name", ["Korea", "Virgin Islands", "", "   ", "x" * 500, 42, None])
def test_country_code_ambiguous_or_junk_unmapped(name):
    with pytest.raises(Unmapped):
        country_code(name)


@pytest.mark.parametrize(("code", "expected"), [("vn", "VN"), (" LK ", "LK"), ("tr", "TR")])
def test_alpha_2_any_case(code, expected):
    assert alpha_2(code) == expected


@pytest.mark.parametrize("code", ["viet nam", "xx", "", "VNM", 7])
def test_alpha_2_only_codes(code):
    with pytest.raises(Unmapped):
        alpha_2(code)


@pytest.mark.parametrize(("value", "expected"), [(True, True), ("YES", True), ("non", False)])
def test_consent_yes_no(value, expected):
    assert consent(value) is expected


def test_language_code_codes_accepted():
    assert [language_code(code) for code in ("en", "FR", "zh")] == ["en", "fr", "zh"]


def test_vocabulary_every_taxonomy_label_maps_to_its_code():
    words = vocabularies()
    from shared.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    for vocabulary, table in (
        (words.respondent_types, taxonomy.respondent_types),
        (words.sdgs, taxonomy.sdgs),
        (words.themes, taxonomy.themes),
        (words.interests, taxonomy.modalities),
    ):
        assert {code: vocabulary.code(label, {}) for code, label in table.items()} == {
            code: code for code in table
        }


def test_matches_any_constant_time_each_secret():
    assert matches_any("b", ["a", "b"])
    assert not matches_any("c", ["a", "b"])
    assert not matches_any("", [""])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/v1/webhooks/jotform/s?token=abc123", "/v1/webhooks/jotform/s?token=***"),
        ("/x?a=1&token=abc&b=2", "/x?a=1&token=***&b=2"),
        ("/x?TOKEN=abc", "/x?TOKEN=***"),
        ("/x?notatoken=1", "/x?notatoken=1"),
    ],
)
def test_redact_secret_query_values(url, expected):
    assert redact(url) == expected


def test_redact_secrets_filter_rewrites_access_log_line():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/v1/webhooks/jotform/s?token=s3cret", "1.1", 202),
        None,
    )

    assert RedactSecrets().filter(record)
    assert "s3cret" not in record.getMessage()
    assert "token=***" in record.getMessage()


def test_field_map_unknown_key_rejected():
    with pytest.raises(ValueError, match="respondent"):
        FieldMap.model_validate({"respondent": "x"})


def test_field_map_label_to_unknown_code_rejected():
    with pytest.raises(ValueError, match="not in the taxonomy"):
        FieldMap.model_validate({"labels": {"Mayor": "mayor"}}).check_labels()


def test_catalog_load_bad_mapping_names_file_and_source(tmp_path: Path):
    (tmp_path / "cities-2025-x.yaml").write_text(
        "id: cities-2025-x\ntitle: X\nsources:\n  typeform:\n    mapping: {labels: {A: nope}}\n"
    )

    with pytest.raises(
        ValueError, match=r"cities-2025-x\.yaml: invalid mapping of source 'typeform'"
    ):
        SurveyCatalog.load(tmp_path)


def test_catalog_seventh_survey_is_a_file(tmp_path: Path):
    (tmp_path / "cities-2025-water.yaml").write_text(
        "id: cities-2025-water\ntitle: Water\nsources:\n  kobotoolbox:\n"
        "    mapping: {city: where/city}\n"
    )

    survey = SurveyCatalog.load(tmp_path).get("cities-2025-water")

    assert survey is not None
    assert survey.sources["kobotoolbox"].field_map().fields() == {"city": "where/city"}


def test_shipped_surveys_accept_every_platform_with_core_mapping():
    from services.intake.settings import SURVEYS_DIR
    from services.intake.sources import platforms

    for survey in SurveyCatalog.load(SURVEYS_DIR):
        assert set(survey.sources) == set(platforms()), survey.id
        for source in ("kobotoolbox", "typeform", "jotform", "google-forms"):
            assert len(survey.sources[source].field_map().fields()) == 11, (survey.id, source)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_escape_key_reversible_and_storable(name):
    escaped = escape_key(name)

    assert unescape_key(escaped) == name
    assert "." not in escaped and not escaped.startswith("$")
    assert not any(ord(char) < 0x20 for char in escaped)


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("1. Which city?", "1%2E Which city?"),
        ("$ budget", "%24 budget"),
        ("cost in $", "cost in $"),
        ("50% or more", "50%25 or more"),
        ("a\x00b", "a%00b"),
        ("Budget\n(USD)\t", "Budget%0A(USD)%09"),
        ("group/q_1", "group/q_1"),
    ],
)
def test_escape_key_examples(name, escaped):
    assert escape_key(name) == escaped
