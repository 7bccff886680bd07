"""JSON logs and HTTP metrics (pure: an in-process app, no servers)."""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from shared.observability import JsonFormatter, instrument


def test_format_log_line_is_json_with_context_fields() -> None:
    record = logging.LogRecord("intake", logging.WARNING, __file__, 1, "kept %s", ("once",), None)
    record.response_id = "kobotoolbox:abc"

    line = json.loads(JsonFormatter("intake").format(record))

    assert line["message"] == "kept once"
    assert line["level"] == "WARNING"
    assert line["service"] == "intake"
    assert line["response_id"] == "kobotoolbox:abc"
    assert "pilot_id" not in line


def test_instrument_counts_requests_by_route_template() -> None:
    app = FastAPI()
    instrument(app, "test-service")

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    client = TestClient(app)
    client.get("/v1/things/a")
    client.get("/v1/things/b")
    client.get("/nowhere")
    metrics = client.get("/metrics")

    assert metrics.status_code == 200
    text = metrics.text
    assert (
        'http_requests_total{method="GET",route="/v1/things/{thing_id}",'
        'service="test-service",status="200"} 2.0'
    ) in text
    assert 'route="unmatched",service="test-service",status="404"} 1.0' in text
    assert "/v1/things/a" not in text


def test_instrument_counts_included_router_routes_by_template() -> None:
    app = FastAPI()
    instrument(app, "test-service")
    router = APIRouter()

    @router.get("/v1/surveys/{survey_id}/summary")
    async def summary(survey_id: str) -> dict[str, str]:
        return {"survey_id": survey_id}

    app.include_router(router)
    client = TestClient(app)
    client.get("/v1/surveys/a/summary")
    client.get("/v1/surveys/b/summary")

    assert (
        'http_requests_total{method="GET",route="/v1/surveys/{survey_id}/summary",'
        'service="test-service",status="200"} 2.0'
    ) in client.get("/metrics").text
