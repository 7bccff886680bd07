"""services.analytics.partners: the ranking of potential city partners and its reasons."""

from __future__ import annotations

from typing import Any

from services.analytics.partners import CityResponse, city_response, rank

THEMES = ("climate-resilience", "housing", "water-sanitation", "urban-planning")
MODALITIES = ("knowledge-exchange", "pilot-cofinancing")


def response(
    city: str = "Đà Nẵng",
    country: str = "VN",
    organization: str | None = "People's Committee",
    consent: bool = False,
    codes: tuple[str, ...] = (),
) -> CityResponse:
    return city_response(country, city, organization, consent, codes, THEMES, MODALITIES)


def reasons(partner: Any) -> dict[str, int]:
    return {reason.factor: reason.points for reason in partner.reasons}


def test_city_response_splits_themes_and_modalities():
    one = response(codes=("housing", "knowledge-exchange", "sdg-6"))

    assert one.themes == {"housing"}
    assert one.modalities == {"knowledge-exchange"}


def test_city_response_normalises_organization():
    assert response(organization="  Da Nang   PEOPLE's committee ").organization == (
        "da nang people's committee"
    )


def test_rank_scores_each_factor():
    (partner,) = rank(
        [
            response(consent=True, codes=("housing", "knowledge-exchange")),
            response(organization="Water Utility", codes=("housing", "water-sanitation")),
            response(organization="water utility", consent=True),
        ]
    )

    assert reasons(partner) == {"contact": 20, "institutions": 10, "breadth": 4, "modalities": 1}
    assert partner.score == 35
    assert (partner.responses, partner.institutions, partner.consenting_focal_points) == (3, 2, 2)
    assert partner.themes == ["housing", "water-sanitation"]
    assert partner.modalities == ["knowledge-exchange"]
    assert partner.rank == 1


def test_rank_caps_contact_and_institutions():
    (partner,) = rank([response(organization=f"Institution {n}", consent=True) for n in range(9)])

    assert reasons(partner)["contact"] == 30
    assert reasons(partner)["institutions"] == 25


def test_rank_unnamed_organizations_each_count():
    (partner,) = rank([response(organization=None), response(organization=None)])

    assert partner.institutions == 2


def test_rank_best_first_ties_by_responses_then_place():
    ranked = rank(
        [
            response(city="Surabaya", country="ID", codes=("housing",)),
            response(city="Kisumu", country="KE", consent=True),
            response(city="Colombo", country="LK", codes=("housing",)),
            response(city="Colombo", country="LK", codes=("housing",)),
            response(city="Recife", country="BR", codes=("housing",)),
        ]
    )

    assert [(p.rank, p.city) for p in ranked] == [
        (1, "Kisumu"),
        (2, "Colombo"),
        (3, "Recife"),
        (4, "Surabaya"),
    ]
    assert ranked[0].score == 15
    assert ranked[1].score == ranked[2].score == 7


def test_rank_country_filter():
    ranked = rank([response(), response(city="Kisumu", country="KE")], country="KE")

    assert [p.city for p in ranked] == ["Kisumu"]


def test_rank_theme_filter_keeps_sharing_cities_and_scores_overlap():
    ranked = rank(
        [
            response(codes=("housing", "climate-resilience")),
            response(city="Kisumu", country="KE", codes=("urban-planning",)),
        ],
        themes=["climate-resilience", "housing", "water-sanitation"],
    )

    (partner,) = ranked
    assert partner.city == "Đà Nẵng"
    assert partner.matched_themes == ["climate-resilience", "housing"]
    assert reasons(partner)["overlap"] == 20
    assert "2 of the 3 theme(s)" in partner.reasons[-1].detail


def test_rank_no_overlap_reason_without_theme_filter():
    (partner,) = rank([response(codes=("housing",))])

    assert "overlap" not in reasons(partner)
    assert partner.matched_themes == []


def test_rank_limit():
    ranked = rank([response(city=f"City {n}") for n in range(5)], limit=2)

    assert [p.rank for p in ranked] == [1, 2]


def test_rank_nothing_empty():
    assert rank([]) == []


def test_rank_reasons_never_name_an_organization():
    (partner,) = rank([response(organization="Secret Institute", consent=True)])

    assert "secret" not in repr(partner).lower()
