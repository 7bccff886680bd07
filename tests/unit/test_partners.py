"""services.analytics.partners: the ranking of potential city partners and its reasons."""

from __future__ import annotations

from typing import Any

from demo.sample import generate
from services.analytics.partners import CityResponse, city_response, rank
from shared.taxonomy import load_taxonomy

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

    # contact 10*log2(3); institutions 6*log2(3); breadth 0.5*(log2(1+3) + log2(1+1)) with
    # housing's signal 2+1; modalities 0.5*log2(1+2).
    assert reasons(partner) == {"contact": 16, "institutions": 10, "breadth": 2, "modalities": 1}
    assert partner.score == 29
    assert (partner.responses, partner.institutions, partner.consenting_focal_points) == (3, 2, 2)
    assert partner.themes == ["housing", "water-sanitation"]
    assert partner.modalities == ["knowledge-exchange"]
    assert partner.rank == 1


def test_rank_points_per_doubling():
    scored = [
        rank([response(organization=f"Institution {n}", consent=True) for n in range(count)])[0]
        for count in (1, 3, 7, 15)
    ]

    assert [reasons(p)["contact"] for p in scored] == [10, 20, 30, 40]
    assert [reasons(p)["institutions"] for p in scored] == [6, 12, 18, 24]


def test_rank_many_focal_points_never_saturate():
    many = [response(city="Jakarta", country="ID", consent=True) for _ in range(40)]
    fewer = [response(city="Surabaya", country="ID", consent=True) for _ in range(20)]
    fewer += [response(city="Surabaya", country="ID") for _ in range(30)]

    ranked = rank([*fewer, *many])

    assert [p.city for p in ranked] == ["Jakarta", "Surabaya"]
    assert ranked[0].score > ranked[1].score
    assert ranked[0].responses < ranked[1].responses  # contact outweighs sheer volume


def test_rank_contactable_response_doubles_theme_signal():
    ranked = rank(
        [
            response(city="Kisumu", country="KE", consent=True, codes=THEMES),
            response(city="Mombasa", country="KE", consent=True),
            response(city="Mombasa", country="KE", codes=THEMES),
        ]
    )
    by_city = {p.city: p for p in ranked}

    assert "housing (2)" in by_city["Kisumu"].reasons[2].detail
    assert "housing (1)" in by_city["Mombasa"].reasons[2].detail
    assert reasons(by_city["Kisumu"])["breadth"] > reasons(by_city["Mombasa"])["breadth"]


def test_rank_overlap_weighted_by_signal():
    wanted = ["climate-resilience"]
    strong = [response(city="Colombo", country="LK", codes=("climate-resilience",))] * 7
    weak = [response(city="Galle", country="LK", codes=("climate-resilience",))]
    weak += [response(city="Galle", country="LK", codes=("housing",))] * 6

    ranked = rank([*weak, *strong], themes=wanted)

    assert [p.city for p in ranked] == ["Colombo", "Galle"]
    assert [reasons(p)["overlap"] for p in ranked] == [24, 8]
    assert ranked[0].reasons[-1].detail.endswith(": climate-resilience (7)")


def test_rank_reasons_add_up_to_score():
    ranked = rank(
        [
            response(
                city=f"City {n % 4}",
                organization=f"Org {n % 3}",
                consent=n % 2 == 0,
                codes=THEMES[: n % 4] + MODALITIES[: n % 2],
            )
            for n in range(30)
        ],
        themes=["housing", "climate-resilience"],
    )

    assert ranked
    for partner in ranked:
        assert partner.score == sum(reasons(partner).values())


def test_rank_demo_sample_discriminates_top_cities():
    taxonomy = load_taxonomy()
    rows = [
        city_response(
            item.body["respondent"]["country"],
            item.body["respondent"]["city"],
            item.body["respondent"]["organization"],
            bool(item.body.get("focal_point", {}).get("consent")),
            [*item.body["capacity_needs"], *item.body["collaboration_interests"]],
            taxonomy.themes,
            taxonomy.modalities,
        )
        for item in generate()
    ]

    top = [partner.score for partner in rank(rows, limit=15)]

    assert top == sorted(top, reverse=True)
    assert len(set(top)) >= 8  # it used to be one score, 83, for all fifteen
    assert top[0] - top[-1] >= 10


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
    assert ranked[0].score == 16
    assert ranked[1].score == ranked[2].score == ranked[3].score == 7


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
    assert reasons(partner)["overlap"] == 16
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
