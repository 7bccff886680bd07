"""Properties of the platform adapters: any valid response, rendered as a platform would post it,
adapts back to the same codes; junk is never anything but `Rejected` (or a validation error)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest import mock

import bson
import pycountry
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.intake.acceptance import Outcome
from services.intake.admission import EARLIEST_SUBMISSION, name_refusals, structure
from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from services.intake.sources import Delivery, Rejected, platforms
from services.intake.surveys import SourceDefinition, SurveyDefinition
from shared.events import LANGUAGES, SurveyResponse, normalise_name
from shared.taxonomy import load_taxonomy
from tests.fixtures.platforms import (
    BOUNDARY,
    JOTFORM_CONTENT_TYPE,
    SECRETS,
    as_jotform,
    as_kobo,
    as_typeform,
    google_forms_body,
    google_forms_request,
    jotform_body,
    jotform_delivery,
    json_delivery,
    kobo_request,
    kobo_submission,
    labelled_answers,
    multipart,
    secret_variable,
    typeform_event,
    typeform_signature,
    without_refs,
)
from tests.support import WEBHOOK_SECRET, canonical_response, signed_headers

RECEIVED_AT = datetime(2024, 5, 2, 10, 31, 2, tzinfo=UTC)
SURVEY = SurveyDefinition(
    id="cities-2024-priorities",
    title="t",
    sources={name: SourceDefinition() for name in platforms()},
)
TAXONOMY = load_taxonomy()
COUNTRIES = sorted((country.alpha_2, country.name) for country in pycountry.countries)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

free_text = (
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40)
    .map(lambda text: " ".join(text.split()))
    # A valid answer: something is left once invisible format characters are removed (a city
    # of a lone zero-width space is refused by every source alike).
    .filter(normalise_name)
)


@st.composite
def canonical_responses(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid canonical response and the country's English name."""
    code, name = draw(st.sampled_from(COUNTRIES))
    response: dict[str, Any] = {
        "submitted_at": draw(
            st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1))
        ).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "respondent": {
            "type": draw(st.sampled_from(sorted(TAXONOMY.respondent_types))),
            "organization": draw(st.none() | free_text),
            "country": code,
            "city": draw(free_text),
        },
        "development_priorities": draw(
            st.lists(st.sampled_from(sorted(TAXONOMY.sdgs)), unique=True)
        ),
        "capacity_needs": draw(st.lists(st.sampled_from(sorted(TAXONOMY.themes)), unique=True)),
        "collaboration_interests": draw(
            st.lists(st.sampled_from(sorted(TAXONOMY.interest_codes)), unique=True)
        ),
    }
    if draw(st.booleans()):
        response["focal_point"] = {
            "name": draw(free_text),
            "email": draw(st.sampled_from(["a@example.org", "focal.point@city.example.net"])),
            "language": draw(st.sampled_from(LANGUAGES)),
            "consent": True,
        }
    return response, name


def codes(event: SurveyResponse) -> dict[str, Any]:
    focal = event.focal_point
    return {
        "submitted_at": event.submitted_at,
        "type": event.respondent.type,
        "country": event.respondent.country,
        "city": event.respondent.city,
        "sdgs": event.development_priorities,
        "needs": event.capacity_needs,
        "interests": event.collaboration_interests,
        "focal_point": focal and (focal.name, focal.email, focal.language),
    }


def expected(response: dict[str, Any]) -> dict[str, Any]:
    return codes(
        SurveyResponse.model_validate(
            {
                **response,
                "response_id": "x",
                "survey_id": SURVEY.id,
                "source": "generic",
                "received_at": RECEIVED_AT,
            }
        )
    )


def adapted(source: str, delivery: Delivery) -> SurveyResponse:
    return SurveyResponse.model_validate(platforms()[source].adapt(delivery, SURVEY, RECEIVED_AT))


@PROPERTY
@given(canonical_responses())
def test_adapt_kobo_rendering_same_codes(drawn: tuple[dict[str, Any], str]) -> None:
    response, _ = drawn
    delivery = json_delivery(as_kobo(response, "0a4c5b7e-1f2d-4e3a-9b8c-7d6e5f4a3b2c"))

    assert codes(adapted("kobotoolbox", delivery)) == expected(response)


@PROPERTY
@given(canonical_responses(), st.booleans())
def test_adapt_typeform_rendering_same_codes(
    drawn: tuple[dict[str, Any], str], with_refs: bool
) -> None:
    response, country = drawn
    delivery = json_delivery(as_typeform(response, "tok123", country, with_refs=with_refs))

    assert codes(adapted("typeform", delivery)) == expected(response)


@PROPERTY
@given(canonical_responses())
def test_adapt_jotform_rendering_same_codes(drawn: tuple[dict[str, Any], str]) -> None:
    response, country = drawn
    delivery = jotform_delivery(as_jotform(response, "5912345678901234567", country))
    event = adapted("jotform", delivery)

    assert {**codes(event), "submitted_at": None} == {**expected(response), "submitted_at": None}


@PROPERTY
@given(canonical_responses())
def test_adapt_google_forms_rendering_same_codes(drawn: tuple[dict[str, Any], str]) -> None:
    response, country = drawn
    answers = labelled_answers(response, country)
    answers["consent"] = "Yes" if answers["consent"] else "No"
    body = {"response_id": "2_abc", "submitted_at": response["submitted_at"], "answers": answers}

    assert codes(adapted("google-forms", json_delivery(body))) == expected(response)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def only_rejected(source: str, delivery: Delivery) -> None:
    try:
        candidate = platforms()[source].adapt(delivery, SURVEY, RECEIVED_AT)
    except Rejected as rejected:
        assert rejected.status in (400, 422)
        return
    with contextlib.suppress(ValidationError):
        json.dumps(SurveyResponse.model_validate(candidate).model_dump(mode="json"))


@PROPERTY
@given(source=st.sampled_from(sorted(platforms())), body=st.binary(max_size=200))
def test_adapt_arbitrary_bytes_only_rejected(source: str, body: bytes) -> None:
    content_type = "multipart/form-data" if source == "jotform" else "application/json"
    delivery = Delivery({"content-type": f"{content_type}; boundary=xyz"}, {}, body, content_type)

    only_rejected(source, delivery)


@PROPERTY
@given(key=st.sampled_from(sorted(kobo_submission())), value=json_values)
def test_adapt_kobo_junk_field_only_rejected(key: str, value: Any) -> None:
    only_rejected("kobotoolbox", json_delivery({**kobo_submission(), key: value}))


@PROPERTY
@given(
    index=st.integers(0, 12),
    path=st.sampled_from(["choice", "choices", "text", "field", "type"]),
    value=json_values,
)
def test_adapt_typeform_junk_answer_only_rejected(index: int, path: str, value: Any) -> None:
    event = without_refs(typeform_event()) if index % 2 else typeform_event()
    event["form_response"]["answers"][index][path] = value

    only_rejected("typeform", json_delivery(event))


@PROPERTY
@given(
    key=st.sampled_from(
        [
            "q3_respondenttype",
            "q5_country",
            "q7_priorities",
            "q10_consent",
            "q11_contactname",
            "q13_language",
            "submitDate",
        ]
    ),
    value=json_values,
)
def test_adapt_jotform_junk_answer_only_rejected(key: str, value: Any) -> None:
    from services.intake.sources.jotform import form_fields

    fields = form_fields(jotform_delivery(jotform_body()))
    raw = json.loads(fields["rawRequest"])
    raw[key] = value
    fields["rawRequest"] = json.dumps(raw)

    only_rejected("jotform", jotform_delivery(multipart(fields)))


@PROPERTY
@given(key=st.sampled_from(sorted(google_forms_body()["answers"])), value=json_values)
def test_adapt_google_forms_junk_answer_only_rejected(key: str, value: Any) -> None:
    body = google_forms_body()
    body["answers"][key] = value
    body["answers"]["consent"] = "Yes"

    only_rejected("google-forms", json_delivery(body))


@pytest.mark.parametrize("source", sorted(platforms()))
def test_adapt_top_level_junk_only_rejected(source: str) -> None:
    for body in (b"null", b"[]", b"{}", b'{"answers": 1}', b'{"form_response": {"answers": 3}}'):
        only_rejected(source, json_delivery(body))


# Hostile deliveries through the real HTTP routes, with an in-memory intake behind them: never a
# 5xx, every 422 names each field and rule, and whatever is accepted passes the admission rules,
# encodes as BSON (what analytics stores) and reads back from its JSON (what consumers read).

ROUTE_SURVEY = "cities-2024-priorities"
ROUTE_PROPERTY = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
ANSWERED = {200, 202, 400, 401, 413, 415, 422}
HOSTILE_CHARS = (
    "\x00\x1b\u202e\u202d\u2066\u200b\u200c\u200d\u200e\ufeff\u0301\ud800\udfff.$%é\u0645 "
)
HOSTILE_KEYS = ["", ".", "a.b", "$where", "x\x00y", "\ud800", "k" * 1001, "1. City?", "50%", "%2E"]


class RecordingIntake:
    """The intake's use case in memory: publishes each identity once."""

    def __init__(self) -> None:
        self.published: list[SurveyResponse] = []
        self._seen: set[str] = set()

    async def accept_response(
        self, response: SurveyResponse, encoded: bytes | None = None
    ) -> Outcome:
        if response.identity in self._seen:
            return Outcome.DUPLICATE
        self._seen.add(response.identity)
        self.published.append(response)
        return Outcome.ACCEPTED


@pytest.fixture(scope="module")
def routes() -> Iterator[tuple[TestClient, RecordingIntake]]:
    secrets = {secret_variable(ROUTE_SURVEY, source): SECRETS[source] for source in SECRETS}
    secrets[secret_variable(ROUTE_SURVEY, "generic")] = WEBHOOK_SECRET
    # A module-wide app: the per-test secrets of the unit conftest are not set yet.
    secrets["OPERATOR_TOKEN"] = os.urandom(24).hex()
    secrets["EMAIL_KEY_SECRET"] = os.urandom(24).hex()
    with mock.patch.dict(os.environ, secrets):
        app = create_app(IntakeSettings(mongodb_url="mongodb://127.0.0.1:1"))
        intake = RecordingIntake()
        app.state.intake = intake  # no lifespan: nothing connects to Kafka or MongoDB
        yield TestClient(app, raise_server_exceptions=False), intake


def nest(depth: int, leaf: Any, as_list: bool) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"sub": value}
    return value


hostile_text = st.text(st.sampled_from(HOSTILE_CHARS) | st.characters(), max_size=12)
hostile_keys = st.sampled_from(HOSTILE_KEYS) | hostile_text
hostile_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.sampled_from([2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 10**40])
    | st.floats()
    | hostile_text
)
hostile_values = st.recursive(
    hostile_scalars
    | st.builds(nest, st.integers(1, 400), hostile_scalars, st.booleans())
    | st.sampled_from(
        [list(range(1001)), "x" * 100_001, {f"k{n}": n for n in range(501)}, "\u202eHanoi"]
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(hostile_keys, children, max_size=3)
    ),
    max_leaves=8,
)


OFFSETS = [UTC, *(timezone(timedelta(hours=hours)) for hours in (-14, -5, 5.5, 14))]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


hostile_times = (
    st.sampled_from(
        [
            "2999-01-01T00:00:00Z",
            "1999-12-31T23:59:59Z",
            "0001-01-01T00:00:00",
            "9999-12-31T23:59:59+14:00",
            "",
            "now",
            "2024-05-02T10:31:00.123456Z",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
        ]
    )
    | st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(_iso)
    | st.datetimes(timezones=st.sampled_from(OFFSETS)).map(datetime.isoformat)
    | st.just("future").map(lambda _: _iso(datetime.now(UTC) + timedelta(minutes=10)))
    | hostile_values
)


def check_answer(answer: Any, intake: RecordingIntake, before: int) -> None:
    """What every answer to a hostile delivery must be."""
    assert answer.status_code in ANSWERED, (answer.status_code, answer.text[:2000])
    if answer.status_code >= 400:
        assert answer.headers["content-type"] == "application/problem+json"
    if answer.status_code == 422:
        errors = answer.json()["errors"]
        assert errors
        assert all(error["field"] and error["rule"] and error["message"] for error in errors)
    published = intake.published[before:]
    assert len(published) == (1 if answer.status_code == 202 else 0)
    for response in published:
        assert_storable(response)


def assert_storable(response: SurveyResponse) -> None:
    document = response.model_dump(mode="json")
    assert structure(document)[0] == []
    assert name_refusals(document) == []
    latest = datetime.now(UTC) + timedelta(minutes=5)
    assert EARLIEST_SUBMISSION <= response.submitted_at <= latest
    assert bson.encode(document)
    as_json = response.model_dump_json()
    assert SurveyResponse.model_validate_json(as_json).model_dump_json() == as_json


def mutated(base: dict[str, Any], changes: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    """`base` with each `(path, value)` set (parents made objects where they are not)."""
    body = copy.deepcopy(base)
    for path, value in changes:
        target = body
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[path[-1]] = value
    return body


generic_changes = st.lists(
    st.one_of(
        st.tuples(st.tuples(st.just("answers"), hostile_keys), hostile_values),
        st.tuples(
            st.sampled_from(
                [
                    ("respondent", "city"),
                    ("respondent", "organization"),
                    ("focal_point", "name"),
                    ("response_id",),
                    ("survey_id",),
                    ("development_priorities",),
                    ("answers",),
                ]
            ),
            hostile_values,
        ),
        st.tuples(st.just(("submitted_at",)), hostile_times),
        st.tuples(st.tuples(hostile_keys), hostile_values),
    ),
    min_size=1,
    max_size=3,
)


@ROUTE_PROPERTY
@given(changes=generic_changes, consent=st.booleans(), number=st.integers(0, 10**6))
def test_receive_generic_hostile_never_5xx(
    routes: tuple[TestClient, RecordingIntake], changes: Any, consent: bool, number: int
) -> None:
    client, intake = routes
    base = canonical_response(f"hostile-{number}")
    if consent:
        base["focal_point"] = {"name": "An", "email": "an@example.org", "consent": True}
    body = json.dumps(mutated(base, changes)).encode()
    before = len(intake.published)

    answer = client.post(
        f"/v1/webhooks/generic/{ROUTE_SURVEY}",
        content=body,
        headers=signed_headers(body, f"msg-{number}"),
    )

    check_answer(answer, intake, before)


kobo_keys = st.sampled_from(sorted(kobo_submission())) | hostile_keys


@ROUTE_PROPERTY
@given(
    changes=st.lists(st.tuples(kobo_keys, hostile_values), min_size=1, max_size=3),
    time=st.none() | hostile_times,
)
def test_receive_kobotoolbox_hostile_never_5xx(
    routes: tuple[TestClient, RecordingIntake], changes: Any, time: Any
) -> None:
    client, intake = routes
    submission = kobo_submission()
    submission.update(dict(changes))
    if time is not None:
        submission["_submission_time"] = time
    path, _, headers = kobo_request(ROUTE_SURVEY)
    before = len(intake.published)

    answer = client.post(path, content=json.dumps(submission).encode(), headers=headers)

    check_answer(answer, intake, before)


@ROUTE_PROPERTY
@given(
    index=st.integers(0, 12),
    part=st.sampled_from(["choice", "choices", "text", "field", "type", "email", "boolean"]),
    value=hostile_values,
    ref=hostile_keys,
    extra=hostile_values,
    time=st.none() | hostile_times,
)
def test_receive_typeform_hostile_never_5xx(
    routes: tuple[TestClient, RecordingIntake],
    index: int,
    part: str,
    value: Any,
    ref: str,
    extra: Any,
    time: Any,
) -> None:
    client, intake = routes
    event = without_refs(typeform_event()) if index % 2 else typeform_event()
    form = event["form_response"]
    form["answers"][index][part] = value
    form["answers"].append({"type": "text", "text": extra, "field": {"id": ref, "ref": ref}})
    if time is not None:
        form["submitted_at"] = time
    body = json.dumps(event).encode()
    headers = {
        "content-type": "application/json",
        "typeform-signature": typeform_signature(body, SECRETS["typeform"]),
    }
    before = len(intake.published)

    answer = client.post(f"/v1/webhooks/typeform/{ROUTE_SURVEY}", content=body, headers=headers)

    check_answer(answer, intake, before)


def raw_multipart(fields: dict[str, bytes], charset: str | None) -> bytes:
    """A multipart body of byte values (which need not be UTF-8), maybe with a part charset."""
    body = b""
    kind = f"\r\nContent-Type: text/plain; charset={charset}" if charset else ""
    for name, value in fields.items():
        body += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"{kind}\r\n\r\n'.encode()
            + value
            + b"\r\n"
        )
    return body + f"--{BOUNDARY}--\r\n".encode()


jotform_keys = st.sampled_from(
    ["q3_respondenttype", "q5_country", "q6_city", "q4_organization", "q11_contactname"]
) | hostile_keys.map(lambda key: f"q99_{key}")


@ROUTE_PROPERTY
@given(
    changes=st.lists(st.tuples(jotform_keys, hostile_values), max_size=3),
    submit_date=st.none()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from(["999999999999999", "\u00b2", "1714645860000", "9" * 30])
    | hostile_values,
    submission=st.none() | st.binary(max_size=20) | st.sampled_from([b"\xff\xfe", b"1" * 300]),
    charset=st.none()
    | st.sampled_from(["utf-8", "latin-1", "x-nonesuch", "utf-7", '"'])
    | st.text(max_size=5),
    cut=st.none() | st.integers(0, 2000),
)
def test_receive_jotform_hostile_never_5xx(
    routes: tuple[TestClient, RecordingIntake],
    changes: Any,
    submit_date: Any,
    submission: bytes | None,
    charset: str | None,
    cut: int | None,
) -> None:
    client, intake = routes
    from services.intake.sources.jotform import form_fields

    fields = form_fields(jotform_delivery(jotform_body()))
    raw = json.loads(fields["rawRequest"])
    raw.update(dict(changes))
    if submit_date is not None:
        raw["submitDate"] = submit_date
    fields["rawRequest"] = json.dumps(raw)
    parts = {name: value.encode() for name, value in fields.items()}
    if submission is not None:
        parts["submissionID"] = submission
    body = raw_multipart(parts, charset)
    if cut is not None:
        body = body[:cut]
    before = len(intake.published)

    answer = client.post(
        f"/v1/webhooks/jotform/{ROUTE_SURVEY}?token={SECRETS['jotform']}",
        content=body,
        headers={"content-type": JOTFORM_CONTENT_TYPE},
    )

    check_answer(answer, intake, before)


google_keys = st.sampled_from(sorted(google_forms_body()["answers"])) | hostile_keys


@ROUTE_PROPERTY
@given(
    changes=st.lists(st.tuples(google_keys, hostile_values), min_size=1, max_size=3),
    consent=st.booleans(),
    time=st.none() | hostile_times,
    response_id=st.none() | hostile_values,
)
def test_receive_google_forms_hostile_never_5xx(
    routes: tuple[TestClient, RecordingIntake],
    changes: Any,
    consent: bool,
    time: Any,
    response_id: Any,
) -> None:
    client, intake = routes
    body = google_forms_body()
    body["answers"]["consent"] = "Yes" if consent else "No"
    body["answers"].update(dict(changes))
    if time is not None:
        body["submitted_at"] = time
    if response_id is not None:
        body["response_id"] = response_id
    path, _, headers = google_forms_request(ROUTE_SURVEY)
    before = len(intake.published)

    answer = client.post(path, content=json.dumps(body).encode(), headers=headers)

    check_answer(answer, intake, before)


@ROUTE_PROPERTY
@given(
    source=st.sampled_from(sorted(platforms())),
    body=st.binary(max_size=300)
    | st.sampled_from([b"[" * 5000, b'{"a": ' + b"1" * 5000 + b"}", b'{"a": NaN}', b"\xff"]),
    content_type=st.sampled_from(
        [
            "application/json",
            "multipart/form-data; boundary=xyz",
            "multipart/form-data",
            "application/x-www-form-urlencoded",
            "text/plain",
            "",
        ]
    ),
)
def test_receive_arbitrary_bytes_never_5xx(
    routes: tuple[TestClient, RecordingIntake], source: str, body: bytes, content_type: str
) -> None:
    client, intake = routes
    headers: dict[str, str] = {"content-type": content_type} if content_type else {}
    if source == "generic":
        signable = body.decode(errors="replace").encode()  # the reference signer takes text
        signed = signed_headers(signable, "m")
        headers.update({name: signed[name] for name in signed if name.startswith("webhook-")})
    elif source == "typeform":
        headers["typeform-signature"] = typeform_signature(body, SECRETS["typeform"])
    elif source == "kobotoolbox":
        headers["x-webhook-token"] = SECRETS["kobotoolbox"]
    else:
        headers["authorization"] = f"Bearer {SECRETS[source]}"
    before = len(intake.published)

    answer = client.post(f"/v1/webhooks/{source}/{ROUTE_SURVEY}", content=body, headers=headers)

    check_answer(answer, intake, before)


@pytest.mark.parametrize("length", ["\u00b2", "-1", "1e9", " 12", "99999999999999999999"])
def test_receive_odd_content_length_never_5xx(
    routes: tuple[TestClient, RecordingIntake], length: str
) -> None:
    client, intake = routes
    path, body, headers = kobo_request(ROUTE_SURVEY)
    before = len(intake.published)

    answer = client.post(
        path, content=body, headers={**headers, "content-length": length.encode("latin-1")}
    )

    check_answer(answer, intake, before)


CREDENTIAL_HEADERS = [
    "authorization",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "typeform-signature",
    "x-webhook-token",
    "content-type",
]
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40) | (
    st.sampled_from(
        [
            "Basic " + "=" * 7,
            "Basic w6k=",
            "Bearer ",
            "v1,",
            "v1,AAAA v2,BBBB x",
            "sha256=",
            "nan",
            "1e400",
            "-99999999999999999999",
            "multipart/form-data; boundary=",
        ]
    )
)


@ROUTE_PROPERTY
@given(
    source=st.sampled_from(sorted(platforms())),
    headers=st.dictionaries(st.sampled_from(CREDENTIAL_HEADERS), header_values, max_size=4),
    token=st.none() | st.text(max_size=20),
)
def test_receive_arbitrary_credentials_never_5xx(
    routes: tuple[TestClient, RecordingIntake],
    source: str,
    headers: dict[str, str],
    token: str | None,
) -> None:
    client, intake = routes
    body = (
        jotform_body()
        if source == "jotform"
        else json.dumps(canonical_response("cred") if source == "generic" else {}).encode()
    )
    sent = {"content-type": JOTFORM_CONTENT_TYPE if source == "jotform" else "application/json"}
    sent.update(headers)
    before = len(intake.published)

    answer = client.post(
        f"/v1/webhooks/{source}/{ROUTE_SURVEY}",
        content=body,
        headers={name: value.encode("latin-1") for name, value in sent.items()},
        params={} if token is None else {"token": token},
    )

    check_answer(answer, intake, before)
