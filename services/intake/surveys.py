"""Survey definitions: data files that say which sources a survey accepts, with which secrets, and
how each platform's fields map to the canonical response.

Adding a survey is adding a file to `surveys/`; no code changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from shared.events import SOURCES
from shared.taxonomy import load_taxonomy


class FieldMap(BaseModel):
    """Where a platform puts each core answer of a survey: the platform's field name (a Kobo
    XLSForm path, a Typeform ref, a Jotform field name without `q<N>_`, a Google Forms question
    title). A field left out keeps the platform's default (the shared questionnaire core)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    respondent_type: str | None = None
    organization: str | None = None
    country: str | None = None
    city: str | None = None
    development_priorities: str | None = None
    capacity_needs: str | None = None
    collaboration_interests: str | None = None
    consent: str | None = None
    contact_name: str | None = None
    contact_email: str | None = None
    language: str | None = None
    # Extra answer texts this survey uses for taxonomy codes, e.g. {"City official": ...}.
    labels: dict[str, str] = Field(default_factory=dict)

    def fields(self) -> dict[str, str]:
        """The canonical names this mapping sets, with the platform's field name for each."""
        return {
            name: value
            for name, value in self.model_dump(exclude={"labels"}).items()
            if value is not None
        }

    def check_labels(self) -> None:
        """Raise `ValueError` naming each label whose code is not in the taxonomy."""
        taxonomy = load_taxonomy()
        known = (
            set(taxonomy.respondent_types)
            | set(taxonomy.sdgs)
            | set(taxonomy.themes)
            | set(taxonomy.modalities)
        )
        unknown = {label: code for label, code in self.labels.items() if code not in known}
        if unknown:
            raise ValueError(f"labels map to codes not in the taxonomy: {unknown}")


class SourceDefinition(BaseModel):
    """How one platform posts to one survey."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret_env: str | None = None
    mapping: dict[str, Any] = Field(default_factory=dict)

    def field_map(self) -> FieldMap:
        """The mapping as a `FieldMap` (checked when the catalog is loaded)."""
        return FieldMap.model_validate(self.mapping)


class SurveyDefinition(BaseModel):
    """One survey: its id, title and the sources it accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")
    title: str
    sources: dict[str, SourceDefinition]

    def secret_env(self, source: str) -> str:
        """The environment variable holding this source's secret(s) for this survey."""
        configured = self.sources[source].secret_env
        return configured or default_secret_env(self.id, source)

    def secrets(self, source: str, environ: Mapping[str, str]) -> list[str]:
        """The accepted secrets (several during a rotation); empty when none is configured."""
        return environ.get(self.secret_env(source), "").split()


def default_secret_env(survey_id: str, source: str) -> str:
    """`WEBHOOK_SECRET_<SURVEY>_<SOURCE>`, upper-cased with `-` as `_`."""
    return re.sub(r"[^A-Z0-9]", "_", f"WEBHOOK_SECRET_{survey_id}_{source}".upper())


class SurveyCatalog:
    """The survey definitions, by id."""

    def __init__(self, surveys: list[SurveyDefinition]) -> None:
        self._surveys = {survey.id: survey for survey in surveys}

    def get(self, survey_id: str) -> SurveyDefinition | None:
        """The survey with this id, if it is defined."""
        return self._surveys.get(survey_id)

    def __iter__(self) -> Iterator[SurveyDefinition]:
        return iter(self._surveys.values())

    @classmethod
    def load(cls, directory: Path) -> SurveyCatalog:
        """Read every `*.yaml` of `directory`; a bad file fails loudly at start, naming the file."""
        surveys = []
        for path in sorted(directory.glob("*.yaml")):
            try:
                survey = SurveyDefinition.model_validate(yaml.safe_load(path.read_text("utf-8")))
            except Exception as exc:
                raise ValueError(f"invalid survey definition {path}: {exc}") from exc
            unknown = set(survey.sources) - set(SOURCES)
            if unknown:
                raise ValueError(f"{path}: unknown sources {sorted(unknown)}")
            if path.stem != survey.id:
                raise ValueError(f"{path}: file name must be the survey id {survey.id!r}")
            for source, definition in survey.sources.items():
                try:
                    definition.field_map().check_labels()
                except ValueError as exc:
                    problem = f"{path}: invalid mapping of source {source!r}: {exc}"
                    raise ValueError(problem) from exc
            surveys.append(survey)
        return cls(surveys)
