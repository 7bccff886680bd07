"""shared.http: every error is `application/problem+json` (RFC 9457); health endpoints."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from pydantic import BaseModel

from shared.http import (
    PROBLEM_JSON,
    Problem,
    field_errors,
    health_router,
    install_problem_handlers,
)


class Item(BaseModel):
    name: str
    count: int


def make_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/conflict")
    async def conflict() -> None:
        raise Problem(
            409,
            "Conflict",
            "pilot-2025-007 was announced already",
            headers={"Retry-After": "5"},
            pilot_id="pilot-2025-007",
        )

    @app.get("/bare")
    async def bare() -> None:
        raise Problem(401, "Unauthorized")

    @app.get("/typed")
    async def typed() -> None:
        raise Problem(400, "Malformed body", type="https://example.org/problems/malformed")

    @app.get("/http")
    async def http() -> None:
        raise HTTPException(status_code=418, detail="I'm a teapot", headers={"X-Tea": "green"})

    @app.get("/count")
    async def count(n: int) -> dict[str, int]:
        return {"n": n}

    @app.post("/items")
    async def items(item: Item) -> Item:
        return item

    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app())


def test_problem_raised_answered_as_problem_json(client):
    response = client.get("/conflict")

    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == "5"
    assert response.json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "pilot-2025-007 was announced already",
        "pilot_id": "pilot-2025-007",
    }


def test_problem_without_detail_has_no_detail(client):
    response = client.get("/bare")

    assert response.status_code == 401
    assert response.json() == {"type": "about:blank", "title": "Unauthorized", "status": 401}


def test_problem_extra_type_replaces_about_blank(client):
    assert client.get("/typed").json() == {
        "type": "https://example.org/problems/malformed",
        "title": "Malformed body",
        "status": 400,
    }


def test_problem_message_is_detail_or_title():
    assert str(Problem(404, "Unknown survey", "no survey 'x' is defined")) == (
        "no survey 'x' is defined"
    )
    assert str(Problem(404, "Unknown survey")) == "Unknown survey"


def test_http_exception_answered_as_problem_json(client):
    response = client.get("/http")

    assert response.status_code == 418
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["x-tea"] == "green"
    assert response.json() == {"type": "about:blank", "title": "I'm a teapot", "status": 418}


def test_unknown_route_answered_as_problem_json(client):
    response = client.get("/nowhere")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == {"type": "about:blank", "title": "Not Found", "status": 404}


def test_wrong_method_answered_as_problem_json(client):
    response = client.delete("/conflict")

    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["title"] == "Method Not Allowed"


def test_invalid_query_names_field(client):
    response = client.get("/count", params={"n": "many"})

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert {key: body[key] for key in ("type", "title", "status", "detail")} == {
        "type": "about:blank",
        "title": "Invalid request",
        "status": 422,
        "detail": "See `errors` for each failing field.",
    }
    assert [error["field"] for error in body["errors"]] == ["n"]


def test_invalid_body_names_each_field(client):
    response = client.post("/items", json={"count": "many"})

    assert response.status_code == 422
    assert sorted(error["field"] for error in response.json()["errors"]) == ["count", "name"]


def test_valid_request_untouched(client):
    response = client.post("/items", json={"name": "a", "count": 2})

    assert response.status_code == 200
    assert response.json() == {"name": "a", "count": 2}


def test_field_errors_dotted_path_and_message():
    errors = [
        {"loc": ("respondent", "country"), "msg": "not a country"},
        {"loc": ("development_priorities", 1), "msg": "unknown code"},
        {"loc": (), "msg": "not an object"},
    ]

    assert field_errors(errors) == [
        {"field": "respondent.country", "message": "not a country"},
        {"field": "development_priorities.1", "message": "unknown code"},
        {"field": "(body)", "message": "not an object"},
    ]


def health_app(**checks) -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(health_router(checks))
    return TestClient(app)


async def ok() -> None:
    return None


async def broken() -> None:
    raise ConnectionError("connection refused")


def test_healthz_ok():
    response = health_app(kafka=broken).get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_every_check_passes_ready():
    response = health_app(mongodb=ok, kafka=ok).get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": ["kafka", "mongodb"]}


def test_readyz_failing_check_503_with_reason():
    response = health_app(mongodb=ok, kafka=broken).get("/readyz")

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == {
        "type": "about:blank",
        "title": "Not ready",
        "status": 503,
        "failures": {"kafka": "ConnectionError: connection refused"},
    }
