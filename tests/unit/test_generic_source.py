"""services.intake.sources.generic: Standard Webhooks authentication and the canonical body.

Deliveries are signed with the reference `standardwebhooks` library, independently of our code.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook

from services.intake.sources import Delivery, Rejected, platforms
from services.intake.sources.generic import PLATFORM, parse_json_object
from services.intake.surveys import SourceDefinition, SurveyDefinition
from shared.events import SurveyResponse

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"x" * 32).decode()
RECEIVED_AT = datetime(2024, 5, 2, 10, 31, 2, tzinfo=UTC)
SURVEY = SurveyDefinition(
    id="cities-2024-priorities",
    title="Development priorities of cities",
    sources={"generic": SourceDefinition()},
)


def signed(
    body: str,
    secret: str = SECRET,
    *,
    msg_id: str = "msg_2b1f9c",
    at: datetime | None = None,
) -> Delivery:
    """A delivery as a Standard Webhooks sender would post it."""
    at = at or datetime.now(UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
    }
    return Delivery(headers=headers, query={}, body=body.encode(), content_type="application/json")


def with_headers(delivery: Delivery, **changes: str | None) -> Delivery:
    headers = dict(delivery.headers)
    for name, value in changes.items():
        header = name.replace("_", "-")
        if value is None:
            del headers[header]
        else:
            headers[header] = value
    return Delivery(headers, delivery.query, delivery.body, delivery.content_type)


def raw(body: bytes) -> Delivery:
    return Delivery(headers={}, query={}, body=body, content_type="application/json")


def rejection(call, *args) -> tuple[int, str, str]:
    with pytest.raises(Rejected) as caught:
        call(*args)
    return caught.value.status, caught.value.title, caught.value.detail


@pytest.fixture
def body(make_response) -> dict:
    """The generic body: the canonical response without `source` and `received_at`."""
    payload = make_response(response_id="faa38eee-4e3f-419e-bac0-e95f1085d998")
    del payload["source"], payload["received_at"]
    return payload


# authenticate


def test_platforms_generic_registered():
    assert platforms()["generic"] is PLATFORM
    assert sorted(platforms()) == ["generic", "google-forms", "jotform", "kobotoolbox", "typeform"]
    assert PLATFORM.content_types == frozenset({"application/json"})


def test_authenticate_valid_signature_accepted(body):
    assert PLATFORM.authenticate(signed(json.dumps(body)), [SECRET]) is None


def test_authenticate_wrong_secret_rejected():
    delivery = signed('{"a": 1}', OTHER_SECRET)

    assert rejection(PLATFORM.authenticate, delivery, [SECRET]) == (
        401,
        "Unauthorized",
        "no signature matches a configured secret",
    )


def test_authenticate_altered_body_rejected():
    delivery = signed('{"a": 1}')
    tampered = Delivery(delivery.headers, {}, b'{"a": 2}', "application/json")

    assert rejection(PLATFORM.authenticate, tampered, [SECRET])[2] == (
        "no signature matches a configured secret"
    )


def test_authenticate_other_message_id_rejected():
    delivery = with_headers(signed('{"a": 1}'), webhook_id="msg_other")

    assert rejection(PLATFORM.authenticate, delivery, [SECRET])[0] == 401


@pytest.mark.parametrize(
    ("missing", "detail"),
    [
        (("webhook_id",), "missing header(s): webhook-id"),
        (("webhook_timestamp",), "missing header(s): webhook-timestamp"),
        (("webhook_signature",), "missing header(s): webhook-signature"),
        (
            ("webhook_id", "webhook_signature"),
            "missing header(s): webhook-id, webhook-signature",
        ),
    ],
)
def test_authenticate_missing_headers_named(missing, detail):
    delivery = with_headers(signed('{"a": 1}'), **dict.fromkeys(missing))

    assert rejection(PLATFORM.authenticate, delivery, [SECRET]) == (401, "Unauthorized", detail)


def test_authenticate_empty_header_counts_as_missing():
    delivery = with_headers(signed('{"a": 1}'), webhook_signature="")

    assert rejection(PLATFORM.authenticate, delivery, [SECRET])[2] == (
        "missing header(s): webhook-signature"
    )


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_authenticate_timestamp_outside_tolerance_rejected(offset):
    delivery = signed('{"a": 1}', at=datetime.now(UTC) + offset)

    assert rejection(PLATFORM.authenticate, delivery, [SECRET]) == (
        401,
        "Unauthorized",
        "webhook-timestamp is more than 5 minutes away from now",
    )


def test_authenticate_timestamp_within_tolerance_accepted():
    delivery = signed('{"a": 1}', at=datetime.now(UTC) - timedelta(minutes=4))

    assert PLATFORM.authenticate(delivery, [SECRET]) is None


@pytest.mark.parametrize("timestamp", ["yesterday", "nan", "1e30"])
def test_authenticate_timestamp_not_a_number_rejected(timestamp):
    delivery = with_headers(signed('{"a": 1}'), webhook_timestamp=timestamp)

    assert rejection(PLATFORM.authenticate, delivery, [SECRET]) == (
        401,
        "Unauthorized",
        "webhook-timestamp is not a Unix timestamp",
    )


@pytest.mark.parametrize(
    ("signature", "detail"),
    [
        ("garbage", "the webhook-signature header is malformed"),
        ("v1,abc", "the webhook-signature header is malformed"),
        ("v1,a,b", "the webhook-signature header is malformed"),
        ("v1,€€€€", "the webhook-signature header is malformed"),
        ("v1,", "no signature matches a configured secret"),
        ("v1,!!!!", "no signature matches a configured secret"),
        ("v1," + "A" * 44, "no signature matches a configured secret"),
    ],
)
def test_authenticate_malformed_signature_rejected_401(signature, detail):
    delivery = with_headers(signed('{"a": 1}'), webhook_signature=signature)

    assert rejection(PLATFORM.authenticate, delivery, [SECRET]) == (401, "Unauthorized", detail)


def test_authenticate_unknown_signature_version_rejected():
    delivery = signed('{"a": 1}')
    v2 = "v2," + delivery.headers["webhook-signature"].removeprefix("v1,")

    assert rejection(PLATFORM.authenticate, with_headers(delivery, webhook_signature=v2), [SECRET])[
        2
    ] == ("no signature matches a configured secret")


def test_authenticate_one_of_several_signatures_accepted():
    delivery = signed('{"a": 1}')
    both = f"v1,{base64.b64encode(b'z' * 32).decode()} {delivery.headers['webhook-signature']}"

    assert PLATFORM.authenticate(with_headers(delivery, webhook_signature=both), [SECRET]) is None


def test_authenticate_non_utf8_body_rejected_401():
    delivery = signed('{"a": 1}')
    binary = Delivery(delivery.headers, {}, b"\xff\xfe\x00", "application/json")

    assert rejection(PLATFORM.authenticate, binary, [SECRET])[0] == 401


@pytest.mark.parametrize("secret", [OLD_SECRET, SECRET])
def test_authenticate_either_secret_of_rotation_accepted(secret):
    assert PLATFORM.authenticate(signed('{"a": 1}', secret), [OLD_SECRET, SECRET]) is None


def test_authenticate_no_secret_configured_rejected():
    assert rejection(PLATFORM.authenticate, signed('{"a": 1}'), []) == (
        401,
        "Unauthorized",
        "no signature matches a configured secret",
    )


def test_authenticate_stale_timestamp_reported_with_rotation():
    delivery = signed('{"a": 1}', at=datetime.now(UTC) - timedelta(minutes=6))

    assert rejection(PLATFORM.authenticate, delivery, [OLD_SECRET, SECRET])[2] == (
        "webhook-timestamp is more than 5 minutes away from now"
    )


# adapt


def test_adapt_canonical_body_completed(body):
    adapted = PLATFORM.adapt(signed(json.dumps(body)), SURVEY, RECEIVED_AT)

    assert adapted == {
        **body,
        "response_id": "generic:faa38eee-4e3f-419e-bac0-e95f1085d998",
        "survey_id": "cities-2024-priorities",
        "source": "generic",
        "received_at": RECEIVED_AT,
    }


def test_adapt_result_is_a_valid_response(body):
    adapted = PLATFORM.adapt(signed(json.dumps(body)), SURVEY, RECEIVED_AT)

    response = SurveyResponse.model_validate(adapted)

    assert response.response_id == "generic:faa38eee-4e3f-419e-bac0-e95f1085d998"
    assert response.model_dump(mode="json")["received_at"] == "2024-05-02T10:31:02Z"


def test_adapt_response_id_already_prefixed_prefixed_once(body):
    body["response_id"] = "generic:faa38eee"

    adapted = PLATFORM.adapt(signed(json.dumps(body)), SURVEY, RECEIVED_AT)

    assert adapted["response_id"] == "generic:faa38eee"


def test_adapt_missing_response_id_fails_validation(body):
    del body["response_id"]

    adapted = PLATFORM.adapt(signed(json.dumps(body)), SURVEY, RECEIVED_AT)

    with pytest.raises(ValidationError) as caught:
        SurveyResponse.model_validate(adapted)
    assert [error["loc"] for error in caught.value.errors()] == [("response_id",)]


def test_adapt_null_response_id_fails_validation(body):
    # `null` is no id: it must be refused like a missing one, not become "generic:None".
    body["response_id"] = None

    adapted = PLATFORM.adapt(signed(json.dumps(body)), SURVEY, RECEIVED_AT)

    with pytest.raises(ValidationError) as caught:
        SurveyResponse.model_validate(adapted)
    assert [error["loc"] for error in caught.value.errors()] == [("response_id",)]


def test_adapt_source_and_received_at_in_body_overridden(body):
    body.update(source="kobotoolbox", received_at="2020-01-01T00:00:00Z")

    adapted = PLATFORM.adapt(signed(json.dumps(body)), SURVEY, RECEIVED_AT)

    assert (adapted["source"], adapted["received_at"]) == ("generic", RECEIVED_AT)


def test_adapt_missing_survey_id_taken_from_url(body):
    del body["survey_id"]

    adapted = PLATFORM.adapt(signed(json.dumps(body)), SURVEY, RECEIVED_AT)

    assert adapted["survey_id"] == "cities-2024-priorities"


def test_adapt_survey_id_mismatch_rejected_422(body):
    body["survey_id"] = "cities-2024-capacity"

    assert rejection(PLATFORM.adapt, signed(json.dumps(body)), SURVEY, RECEIVED_AT) == (
        422,
        "Invalid response",
        "survey_id 'cities-2024-capacity' in the body does not match "
        "'cities-2024-priorities' in the URL",
    )


@pytest.mark.parametrize("payload", [b"not json", b"", b'{"a": 1', b"\xff\xfe{}"])
def test_adapt_non_json_body_rejected_400(payload):
    status, title, detail = rejection(PLATFORM.adapt, raw(payload), SURVEY, RECEIVED_AT)

    assert (status, title) == (400, "Malformed body")
    assert detail.startswith("the body is not valid JSON: ")


@pytest.mark.parametrize("payload", [b"[]", b'[{"response_id": "x"}]', b'"text"', b"42", b"null"])
def test_adapt_non_object_body_rejected_400(payload):
    assert rejection(PLATFORM.adapt, raw(payload), SURVEY, RECEIVED_AT) == (
        400,
        "Malformed body",
        "the body must be a JSON object",
    )


def test_parse_json_object_returns_object():
    assert parse_json_object(b'{"a": [1, 2]}') == {"a": [1, 2]}


def test_parse_json_object_deeply_nested_rejected_400():
    # 12 kB of nesting, far under the 1 MiB body limit: a 400, never an unhandled error.
    depth = 2_000
    payload = b'{"a":' * depth + b"1" + b"}" * depth

    status, title, _ = rejection(parse_json_object, payload)

    assert (status, title) == (400, "Malformed body")
