"""shared.taxonomy: the controlled vocabulary every event, aggregate and pilot uses."""

from __future__ import annotations

import pytest

from shared.taxonomy import load_taxonomy


def test_load_taxonomy_vocabulary_sizes():
    taxonomy = load_taxonomy()

    assert len(taxonomy.respondent_types) == 8
    assert list(taxonomy.sdgs) == [f"sdg-{n}" for n in range(1, 18)]
    assert len(taxonomy.themes) == 18
    assert len(taxonomy.modalities) == 8
    assert len(taxonomy.surveys) == 6


def test_load_taxonomy_read_once():
    assert load_taxonomy() is load_taxonomy()


@pytest.mark.parametrize(
    ("code", "label"),
    [
        ("local_government", "Local government official (city, municipality, province)"),
        ("sdg-6", "Clean water and sanitation"),
        ("urban-planning", "Urban planning and land use"),
        ("knowledge-exchange", "Knowledge sharing and peer learning"),
        ("cities-2024-priorities", "Development priorities of cities"),
        ("no-such-code", "no-such-code"),
    ],
)
def test_label_of_code(code, label):
    assert load_taxonomy().label(code) == label


def test_interest_codes_themes_and_modalities():
    taxonomy = load_taxonomy()

    assert taxonomy.interest_codes == frozenset(taxonomy.themes) | frozenset(taxonomy.modalities)
    assert "housing" in taxonomy.interest_codes
    assert "city-twinning" in taxonomy.interest_codes
    assert "sdg-11" not in taxonomy.interest_codes


def test_vocabularies_share_no_code():
    taxonomy = load_taxonomy()
    vocabularies = [
        taxonomy.respondent_types,
        taxonomy.sdgs,
        taxonomy.themes,
        taxonomy.modalities,
        taxonomy.surveys,
    ]

    assert sum(len(v) for v in vocabularies) == len(set().union(*vocabularies))
