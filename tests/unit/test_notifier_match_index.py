"""services.notifier.matching: the compact match index (buckets of lines) and `match()`."""

from __future__ import annotations

import random

import pytest

from services.notifier.matching import (
    BUCKETS,
    IndexEntry,
    bucket_of,
    bucket_text,
    decode_bucket,
    encode_bucket,
    match,
    shared_codes,
)
from shared.taxonomy import load_taxonomy


def entry(key: str, country: str = "VN", *codes: str, revision: int = 1) -> IndexEntry:
    return IndexEntry(key, revision, country, codes)


def test_encode_bucket_round_trip():
    entries = {
        "b@example.org": entry("b@example.org", "VN", "climate-resilience", "sdg-13", revision=3),
        "a@example.org": entry("a@example.org", "KE"),  # no mail: no codes
    }

    data = encode_bucket(entries)

    assert bucket_text(data).splitlines() == [
        "a@example.org\t1\tKE\t",
        "b@example.org\t3\tVN\tclimate-resilience sdg-13",
    ]
    assert decode_bucket(data) == entries


def test_decode_bucket_empty_nothing():
    assert decode_bucket("") == {}


def test_bucket_of_stable_and_in_range():
    keys = [f"person{n}@example.org" for n in range(2000)]

    buckets = [bucket_of(key) for key in keys]

    assert bucket_of("an.nguyen@example.org") == bucket_of("an.nguyen@example.org")
    assert all(0 <= b < BUCKETS for b in buckets)
    assert len(set(buckets)) > BUCKETS * 0.9  # spread over (nearly) all of them


def test_match_codes_in_focal_point_order(make_pilot_event):
    data = encode_bucket(
        {
            "a@x.org": entry("a@x.org", "VN", "sdg-13", "housing", "climate-resilience"),
            "b@x.org": entry("b@x.org", "VN", "housing"),
            "c@x.org": entry("c@x.org", "FR", "climate-resilience"),
            "d@x.org": entry("d@x.org", "ID"),
        }
    )

    assert match(make_pilot_event(), [data]) == [("a@x.org", ["sdg-13", "climate-resilience"])]


def test_match_no_eligible_countries_any_country(make_pilot_event):
    data = encode_bucket({"c@x.org": entry("c@x.org", "FR", "climate-resilience")})

    assert match(make_pilot_event(eligible_countries=[]), [data]) == [
        ("c@x.org", ["climate-resilience"])
    ]


@pytest.mark.parametrize("seed", range(5))
def test_match_agrees_with_shared_codes(make_pilot_event, seed):
    taxonomy = load_taxonomy()
    codes = [*taxonomy.themes, *taxonomy.sdgs, *taxonomy.modalities]
    rng = random.Random(seed)
    entries = {
        f"p{n}@x.org": entry(
            f"p{n}@x.org",
            rng.choice(["VN", "ID", "KE", "LK"]),
            *rng.sample(codes, rng.randint(0, 5)),
        )
        for n in range(500)
    }
    pilot = make_pilot_event(
        themes=rng.sample(list(taxonomy.themes), 2), sdgs=rng.sample(list(taxonomy.sdgs), 1)
    )

    expected = [
        (key, shared)
        for key, e in sorted(entries.items())
        if (shared := shared_codes(pilot, list(e.codes), e.country))
    ]

    assert sorted(match(pilot, [encode_bucket(entries)])) == expected
    assert expected  # the sample is large enough to match someone


def test_match_code_prefix_of_another_no_match(make_pilot_event):
    data = encode_bucket(
        {
            "a@x.org": entry("a@x.org", "VN", "sdg-13", "climate-resilience-x"),
            "b@x.org": entry("b@x.org", "VN", "housing", "sdg-1"),
        }
    )

    pilot = make_pilot_event(themes=["climate-resilience"], sdgs=["sdg-1"])

    assert match(pilot, [data]) == [("b@x.org", ["sdg-1"])]


def test_match_country_prefix_of_another_no_match(make_pilot_event):
    data = encode_bucket({"a@x.org": entry("a@x.org", "VNX", "climate-resilience")})

    assert match(make_pilot_event(eligible_countries=["VN"]), [data]) == []


def test_match_text_bucket_of_earlier_versions_read(make_pilot_event):
    entries = {"a@x.org": entry("a@x.org", "VN", "climate-resilience")}
    text = bucket_text(encode_bucket(entries))

    assert decode_bucket(text) == entries
    assert match(make_pilot_event(), [text]) == [("a@x.org", ["climate-resilience"])]
