"""Who sees what, against the real servers: public summaries without small cells, the operator
token or a JWT (checked against a JWKS served here, keys made here) for every cell, filters and
partners; filtered views served from one pass over the stored responses per state."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import AnalyticsStore
from shared.events import SurveyResponse
from tests.support import (
    OPERATOR,
    Stack,
    canonical_response,
    eventually,
    produce,
    serving,
    settings_for,
)

pytestmark = pytest.mark.integration

AUDIENCE = "cities-analytics"
ISSUER = "https://idp.test.example.org"
SCOPE = "analytics:operator"
SUMMARY = "/v1/surveys/cities-2024-priorities/summary"


@dataclass
class Keys:
    """The identity provider of the test: its signing keys and the JWKS URL serving them."""

    url: str
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    requests: list[str]

    def token(self, *, algorithm: str = "RS256", kid: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "sub": "analyst@example.org",
            "aud": AUDIENCE,
            "iss": ISSUER,
            "iat": now,
            "exp": now + 300,
            "scope": f"openid {SCOPE}",
            **claims,
        }
        key = self.rsa if algorithm == "RS256" else self.ec
        default_kid = "rsa-1" if algorithm == "RS256" else "ec-1"
        return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid or default_kid})


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    signing_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signing_ec = ec.generate_private_key(ec.SECP256R1())
    jwks = {
        "keys": [
            {**RSAAlgorithm.to_jwk(signing_rsa.public_key(), as_dict=True), "kid": "rsa-1"},
            {**ECAlgorithm.to_jwk(signing_ec.public_key(), as_dict=True), "kid": "ec-1"},
        ]
    }
    body = json.dumps(jwks).encode()
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Keys(
            f"http://127.0.0.1:{server.server_address[1]}/jwks.json",
            signing_rsa,
            signing_ec,
            requests,
        )
    finally:
        server.shutdown()
        server.server_close()


def event(number: int, city: str, country: str = "VN", **overrides: Any) -> SurveyResponse:
    respondent = {**canonical_response("x")["respondent"], "country": country, "city": city}
    body = canonical_response(f"generic:access{number}", respondent=respondent, **overrides)
    return SurveyResponse.model_validate(
        {**body, "source": "generic", "received_at": datetime.now(UTC)}
    )


def responses() -> list[SurveyResponse]:
    """Đà Nẵng 10, Huế 6, Hội An 3 (a small city), all in VN and one survey."""
    cities = [("Đà Nẵng", 10), ("Huế", 6), ("Hội An", 3)]
    made, number = [], 0
    for city, count in cities:
        for _ in range(count):
            made.append(event(number, city))
            number += 1
    return made


async def send(stack: Stack, topic: str, items: list[SurveyResponse]) -> None:
    records = [(r.response_id.encode(), r.model_dump_json().encode()) for r in items]
    await produce(stack.kafka, topic, records)


@pytest.fixture
async def service(
    stack: Stack, run_id: str, keys: Keys
) -> AsyncIterator[tuple[httpx.AsyncClient, AnalyticsSettings, AnalyticsStore]]:
    settings = settings_for(
        AnalyticsSettings,
        stack.environment(run_id),
        jwks_url=keys.url,
        jwt_audience=AUDIENCE,
        jwt_issuer=ISSUER,
    )
    items = responses()
    await send(stack, settings.topic_responses, items)
    app = create_app(settings)
    async with serving(app) as client:

        async def total() -> int:
            return int((await client.get("/v1/overview")).json()["total"])

        await eventually(total, lambda n: n == len(items), within=60)
        yield client, settings, app.state.store


def cities(summary: dict[str, Any]) -> dict[str, int]:
    return {c["city"]: c["count"] for c in summary["by_city"]}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_public_summary_leaves_out_small_city_operator_sees_it(service: Any) -> None:
    client, _, _ = service

    public = (await client.get(SUMMARY)).json()
    overview = (await client.get("/v1/overview")).json()
    operator = (await client.get(SUMMARY, headers=OPERATOR)).json()

    # Hội An (3) is hidden, and Huế (6) with it: else 19 - 10 - 6 would give Hội An's 3.
    assert cities(public) == {"Đà Nẵng": 10}
    assert "Hội An" not in json.dumps(public, ensure_ascii=False)
    assert "Hội An" not in json.dumps(overview, ensure_ascii=False)
    assert public["suppressed_below"] == overview["suppressed_below"] == 5
    assert public["total"] == overview["total"] == 19
    assert cities(operator) == {"Đà Nẵng": 10, "Huế": 6, "Hội An": 3}
    assert operator["suppressed_below"] is None


async def test_filtered_views_and_partners_without_credentials_401(service: Any) -> None:
    client, _, _ = service

    answers = [
        await client.get(SUMMARY, params={"country": "VN"}),
        await client.get("/v1/overview", params={"respondent_type": "cso"}),
        await client.get("/v1/overview", params={"survey_id": "cities-2024-priorities"}),
        await client.get("/v1/partners"),
    ]

    for answer in answers:
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "Hội An" not in answer.text


async def test_bad_token_401_even_on_public_views(service: Any) -> None:
    client, _, _ = service

    for path in (SUMMARY, "/v1/partners"):
        answer = await client.get(path, headers=bearer("not-the-operator-token"))
        assert answer.status_code == 401, path
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    basic = await client.get(SUMMARY, headers={"authorization": "Basic b3BlcmF0b3I6eA=="})
    assert basic.status_code == 401


async def test_jwt_rs256_and_es256_see_every_cell_and_partners(service: Any, keys: Keys) -> None:
    client, _, _ = service

    for algorithm in ("RS256", "ES256"):
        token = keys.token(algorithm=algorithm)
        summary = (await client.get(SUMMARY, headers=bearer(token))).json()
        ranking = await client.get("/v1/partners", headers=bearer(token))
        filtered = await client.get(SUMMARY, params={"country": "VN"}, headers=bearer(token))

        assert cities(summary) == {"Đà Nẵng": 10, "Huế": 6, "Hội An": 3}, algorithm
        assert summary["suppressed_below"] is None
        assert ranking.status_code == 200
        assert {p["city"] for p in ranking.json()["partners"]} == {"Đà Nẵng", "Huế", "Hội An"}
        assert filtered.json()["total"] == 19
    # The roles claim grants the same as the scope claim.
    roles = keys.token(scope="openid", roles=[SCOPE])
    assert (await client.get("/v1/partners", headers=bearer(roles))).status_code == 200


async def test_jwt_expired_other_audience_issuer_scope_or_key_401(service: Any, keys: Keys) -> None:
    client, _, _ = service
    keys.requests.clear()  # this service's JWKS fetches only
    now = int(time.time())
    other = ec.generate_private_key(ec.SECP256R1())
    refused = {
        "expired": keys.token(exp=now - 3600, iat=now - 7200),
        "other audience": keys.token(aud="another-service"),
        "other issuer": keys.token(iss="https://elsewhere.example.org"),
        "no scope": keys.token(scope="openid profile"),
        "unknown key id": keys.token(kid="rotated-away"),
        "not signed by the JWKS": jwt.encode(
            {"sub": "x", "aud": AUDIENCE, "iss": ISSUER, "exp": now + 300, "scope": SCOPE},
            other,
            algorithm="ES256",
            headers={"kid": "ec-1"},
        ),
        "HS256 with the public key": jwt.encode(
            {"sub": "x", "aud": AUDIENCE, "iss": ISSUER, "exp": now + 300, "scope": SCOPE},
            "rsa-1-public-key-as-secret-0123456789",
            algorithm="HS256",
            headers={"kid": "rsa-1"},
        ),
    }

    for case, token in refused.items():
        answer = await client.get("/v1/partners", headers=bearer(token))
        public = await client.get(SUMMARY, headers=bearer(token))
        assert (answer.status_code, public.status_code) == (401, 401), case
        assert 'error="invalid_token"' in answer.headers["www-authenticate"], case
    # The JWKS was fetched once, plus at most one refetch for the unknown key id.
    assert 1 <= len(keys.requests) <= 2


async def test_filtered_views_one_pass_per_state_of_the_aggregates(
    service: Any, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, settings, store = service
    passes: list[dict[str, Any]] = []
    scan = store.counted

    def counting(query: dict[str, Any] | None = None) -> Any:
        passes.append(query or {})
        return scan(query)

    monkeypatch.setattr(store, "counted", counting)

    async def filtered(**params: str) -> dict[str, Any]:
        answer = await client.get("/v1/overview", params=params, headers=OPERATOR)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    first = [await filtered(country="VN"), await filtered(respondent_type="local_government")]
    again = [await filtered(country="VN"), await filtered(country="KE")]
    assert passes == [{}]  # one pass over every stored response, for all four requests
    await client.get("/v1/partners", params={"country": "KE"}, headers=OPERATOR)
    await client.get("/v1/partners", params={"country": "VN"}, headers=OPERATOR)
    # The newest state of each response (partners, review queue): one pass of its own.
    assert passes == [{}, {}]
    assert first[0] == again[0]
    assert (first[0]["total"], first[1]["total"], again[1]["total"]) == (19, 19, 0)

    await send(stack, settings.topic_responses, [event(100, "Mombasa", country="KE")])
    kenya = await eventually(lambda: filtered(country="KE"), lambda s: s["total"] == 1, within=60)
    vietnam = await filtered(country="VN")
    ranking = (await client.get("/v1/partners", params={"country": "KE"}, headers=OPERATOR)).json()

    assert cities(kenya) == {"Mombasa": 1}
    assert vietnam == first[0]
    assert [p["city"] for p in ranking["partners"]] == ["Mombasa"]
    # Later passes read only the responses counted since the previous one.
    assert len(passes) >= 4
    assert all(set(query) == {"$or"} for query in passes[2:]), passes


async def test_openapi_shows_the_bearer_scheme(service: Any) -> None:
    client, _, _ = service

    spec = (await client.get("/openapi.json")).json()

    scheme = spec["components"]["securitySchemes"]["operator"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert spec["paths"]["/v1/partners"]["get"]["security"] == [{"operator": []}]
    # Open to everyone, more with credentials: "none, or the bearer scheme".
    assert spec["paths"]["/v1/overview"]["get"]["security"] == [{"operator": []}, {}]
    assert "401" in spec["paths"]["/v1/overview"]["get"]["responses"]
