"""services.intake.surveys: survey definitions, their secrets and the catalog of data files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import services.intake.surveys as surveys_module
from services.intake.surveys import (
    SourceDefinition,
    SurveyCatalog,
    SurveyDefinition,
    default_secret_env,
)
from shared.taxonomy import load_taxonomy

SHIPPED = Path(surveys_module.__file__).with_name("surveys")


def survey(**sources: SourceDefinition) -> SurveyDefinition:
    return SurveyDefinition(
        id="cities-2024-priorities",
        title="Development priorities of cities",
        sources=sources or {"generic": SourceDefinition()},
    )


def write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("survey_id", "source", "expected"),
    [
        ("cities-2024-priorities", "generic", "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC"),
        (
            "cities-2024-priorities",
            "kobotoolbox",
            "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_KOBOTOOLBOX",
        ),
        ("national-2024-focal", "google-forms", "WEBHOOK_SECRET_NATIONAL_2024_FOCAL_GOOGLE_FORMS"),
    ],
)
def test_default_secret_env_upper_case_with_underscores(survey_id, source, expected):
    assert default_secret_env(survey_id, source) == expected


def test_secret_env_default_when_not_configured():
    assert survey().secret_env("generic") == "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC"


def test_secret_env_configured_name_used():
    definition = survey(generic=SourceDefinition(secret_env="PRIORITIES_SECRET"))

    assert definition.secret_env("generic") == "PRIORITIES_SECRET"


def test_secrets_single_value():
    environ = {"WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC": "whsec_abc"}

    assert survey().secrets("generic", environ) == ["whsec_abc"]


def test_secrets_rotation_split_on_spaces():
    environ = {"WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC": "  whsec_old   whsec_new \n"}

    assert survey().secrets("generic", environ) == ["whsec_old", "whsec_new"]


@pytest.mark.parametrize("environ", [{}, {"WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC": " "}])
def test_secrets_unset_or_blank_empty(environ):
    assert survey().secrets("generic", environ) == []


def test_secrets_read_from_configured_variable_only():
    definition = survey(generic=SourceDefinition(secret_env="PRIORITIES_SECRET"))
    environ = {"WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC": "whsec_default"}

    assert definition.secrets("generic", environ) == []


@pytest.mark.parametrize("survey_id", ["Cities", "c", "-cities", "cities_2024", "x" * 65])
def test_definition_bad_id_rejected(survey_id):
    with pytest.raises(ValidationError):
        SurveyDefinition(id=survey_id, title="t", sources={})


def test_definition_unknown_key_rejected():
    with pytest.raises(ValidationError):
        SurveyDefinition.model_validate(
            {"id": "cities-2024-priorities", "title": "t", "sources": {}, "secret": "x"}
        )


def test_catalog_get_by_id():
    definition = survey()
    catalog = SurveyCatalog([definition])

    assert catalog.get("cities-2024-priorities") is definition
    assert catalog.get("cities-2099-unknown") is None


def test_load_directory_reads_every_yaml(tmp_path):
    write(
        tmp_path, "cities-2024-capacity.yaml", "id: cities-2024-capacity\ntitle: B\nsources: {}\n"
    )
    write(
        tmp_path,
        "cities-2024-priorities.yaml",
        "id: cities-2024-priorities\ntitle: A\nsources:\n  generic: {}\n"
        "  kobotoolbox: {secret_env: KOBO_SECRET}\n",
    )
    write(tmp_path, "notes.txt", "not a survey")

    catalog = SurveyCatalog.load(tmp_path)

    assert [s.id for s in catalog] == ["cities-2024-capacity", "cities-2024-priorities"]
    assert catalog.get("cities-2024-priorities").sources == {
        "generic": SourceDefinition(),
        "kobotoolbox": SourceDefinition(secret_env="KOBO_SECRET"),
    }


def test_load_empty_directory_empty_catalog(tmp_path):
    assert list(SurveyCatalog.load(tmp_path)) == []


def test_load_file_name_not_id_rejected(tmp_path):
    write(tmp_path, "priorities.yaml", "id: cities-2024-priorities\ntitle: A\nsources: {}\n")

    with pytest.raises(
        ValueError, match="file name must be the survey id 'cities-2024-priorities'"
    ):
        SurveyCatalog.load(tmp_path)


def test_load_unknown_source_rejected(tmp_path):
    write(
        tmp_path,
        "cities-2024-priorities.yaml",
        "id: cities-2024-priorities\ntitle: A\nsources:\n  surveymonkey: {}\n",
    )

    with pytest.raises(ValueError, match=r"unknown sources \['surveymonkey'\]"):
        SurveyCatalog.load(tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "id: cities-2024-priorities\n",
        "id: cities-2024-priorities\ntitle: A\nsources: {}\nowner: me\n",
        "id: [unclosed\n",
    ],
)
def test_load_invalid_file_names_file(tmp_path, text):
    write(tmp_path, "cities-2024-priorities.yaml", text)

    with pytest.raises(
        ValueError, match=r"invalid survey definition .*cities-2024-priorities\.yaml"
    ):
        SurveyCatalog.load(tmp_path)


def test_load_shipped_definitions_are_the_taxonomy_surveys():
    catalog = SurveyCatalog.load(SHIPPED)

    assert sorted(s.id for s in catalog) == sorted(load_taxonomy().surveys)
    assert all("generic" in s.sources for s in catalog)
