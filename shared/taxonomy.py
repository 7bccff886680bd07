"""The controlled vocabulary (taxonomy.yaml): every code a survey, event or pilot may use."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import yaml

TAXONOMY_FILE = Path(__file__).with_name("taxonomy.yaml")


@dataclass(frozen=True)
class Taxonomy:
    """Codes and their English labels, by vocabulary."""

    respondent_types: dict[str, str]
    sdgs: dict[str, str]
    themes: dict[str, str]
    modalities: dict[str, str]
    surveys: dict[str, str]

    def label(self, code: str) -> str:
        """English label of any code, or the code itself when it is unknown."""
        for vocabulary in (self.respondent_types, self.sdgs, self.themes, self.modalities):
            if code in vocabulary:
                return vocabulary[code]
        return self.surveys.get(code, code)

    @cached_property
    def interest_codes(self) -> frozenset[str]:
        """Codes a collaboration interest may take: a theme or a modality."""
        return frozenset(self.themes) | frozenset(self.modalities)


@cache
def load_taxonomy(path: Path = TAXONOMY_FILE) -> Taxonomy:
    """Read the taxonomy file once per process."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return Taxonomy(
        respondent_types=dict(data["respondent_types"]),
        sdgs=dict(data["sdgs"]),
        themes=dict(data["themes"]),
        modalities=dict(data["modalities"]),
        surveys=dict(data["surveys"]),
    )
