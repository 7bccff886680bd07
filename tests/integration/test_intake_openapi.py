"""The intake's OpenAPI operations fuzzed by schemathesis, in process against the real stack:
whatever comes in, no answer is a 5xx (a 503 only when Kafka is really unavailable)."""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.taxonomy import load_taxonomy
from tests.support import OPERATOR_TOKEN, Stack, settings_for, signed_headers

pytestmark = pytest.mark.integration

SECRET = "fuzz-secret"
GENERIC_SECRET = "whsec_" + base64.b64encode(b"f" * 32).decode()
SURVEYS = sorted(load_taxonomy().surveys)
FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=15,
)


@pytest.fixture
def schema(stack: Stack, run_id: str, monkeypatch: pytest.MonkeyPatch) -> schemathesis.BaseSchema:
    for survey in SURVEYS:
        prefix = f"WEBHOOK_SECRET_{survey.upper().replace('-', '_')}"
        for source in ("KOBOTOOLBOX", "TYPEFORM", "JOTFORM", "GOOGLE_FORMS"):
            monkeypatch.setenv(f"{prefix}_{source}", SECRET)
        monkeypatch.setenv(f"{prefix}_GENERIC", GENERIC_SECRET)
    app = create_app(
        settings_for(IntakeSettings, stack.environment(run_id), operator_token=OPERATOR_TOKEN)
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def operations(schema: schemathesis.BaseSchema) -> dict[str, Any]:
    found = (result.ok() for result in schema.get_all_operations())
    return {f"{op.method.upper()} {op.path}": op for op in found}


def fuzz(name: str, operation: Any, statuses: Counter[tuple[str, int]]) -> None:
    @FUZZ
    @given(case=operation.as_strategy(), operator=st.booleans())
    def call(case: Any, operator: bool) -> None:
        headers = {"authorization": f"Bearer {OPERATOR_TOKEN}"} if operator else {}
        response = case.call(headers=headers)
        statuses[(name, response.status_code)] += 1
        assert response.status_code < 500, (name, response.status_code, response.text)

    call()


def test_openapi_operations_no_server_error(schema: schemathesis.BaseSchema) -> None:
    statuses: Counter[tuple[str, int]] = Counter()
    for name, operation in operations(schema).items():
        fuzz(name, operation, statuses)

    assert {name for name, _ in statuses} == set(operations(schema))
    assert statuses[("POST /v1/pilots", 422)] > 0  # the fuzzer got past authentication


@pytest.mark.parametrize(
    "source", ["kobotoolbox", "typeform", "jotform", "google-forms", "generic"]
)
def test_openapi_webhook_junk_bodies_no_server_error(
    schema: schemathesis.BaseSchema, source: str
) -> None:
    operation = operations(schema)["POST /v1/webhooks/{source}/{survey_id}"]
    statuses: Counter[int] = Counter()

    @FUZZ
    @given(case=operation.as_strategy(), survey=st.sampled_from(SURVEYS), body=json_values)
    def call(case: Any, survey: str, body: Any) -> None:
        case.path_parameters = {"source": source, "survey_id": survey}
        content = json.dumps(body).encode()
        headers = {"content-type": "application/json", "x-webhook-token": SECRET}
        headers["authorization"] = f"Bearer {SECRET}"
        if source == "typeform":
            from tests.fixtures.platforms import typeform_signature

            headers["typeform-signature"] = typeform_signature(content, SECRET)
        if source == "generic":
            headers.update(signed_headers(content, "fuzz-1", GENERIC_SECRET))
        if source == "jotform":
            from tests.fixtures.platforms import JOTFORM_CONTENT_TYPE, multipart

            content = multipart({"submissionID": "1", "rawRequest": json.dumps(body)})
            headers["content-type"] = JOTFORM_CONTENT_TYPE
        response = case.call(headers=headers, data=content)
        statuses[response.status_code] += 1
        assert response.status_code < 500, (response.status_code, response.text)

    call()

    # Past authentication every time: the bodies reached the adapters.
    assert 401 not in statuses
    assert set(statuses) <= {200, 202, 400, 422}
