"""The intake's HTTP routes. Thin: read -> authenticate -> adapt -> admit -> publish."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError

from services.intake.acceptance import Intake, Outcome
from services.intake.admission import Admission, Admitted, Refused
from services.intake.publisher import BrokerUnavailable
from services.intake.settings import IntakeSettings
from services.intake.sources import Delivery, Platform, Rejected
from services.intake.surveys import SurveyCatalog
from shared.events import PilotAnnounced
from shared.http import PROBLEM_JSON, OperatorRoute, Problem

RETRY_AFTER_SECONDS = "5"
# Sources whose credential travels in the headers or the query (basic auth, a token): the intake
# checks it before reading the body. The signed ones (generic, typeform) sign the body, so theirs
# is read first, within MAX_BODY_BYTES, once the source is known to be enabled.
CREDENTIALS_IN_HEADERS = frozenset({"kobotoolbox", "jotform", "google-forms"})
logger = logging.getLogger(__name__)

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"description": title, "content": {PROBLEM_JSON: {}}}
    for status, title in {
        400: "Malformed body",
        401: "Bad or missing credentials, or a stale timestamp",
        404: "Unknown survey or source",
        413: "Body over the size limit",
        415: "Unsupported content type",
        422: "Invalid response; each failing field and its rule are named in `errors`",
        503: "Kafka cannot take the event now; retry after `Retry-After` seconds",
    }.items()
}


# A coroutine: FastAPI runs a plain-function dependency in a worker thread, a hand-off that
# cost more than the rest of it on every request.
async def get_intake(request: Request) -> Intake:
    """The intake use cases built by the composition root."""
    intake: Intake = request.app.state.intake
    return intake


IntakeDep = Annotated[Intake, Depends(get_intake)]

router = APIRouter()


@router.post(
    "/v1/webhooks/{source}/{survey_id}",
    status_code=202,
    responses={
        200: {
            "description": "This revision was delivered before (`duplicate`), or it is an older "
            "one, delivered for the first time after a newer one was accepted (`superseded`): "
            "nothing published"
        },
        **_PROBLEMS,
    },
)
async def receive_webhook(source: str, survey_id: str, request: Request) -> JSONResponse:
    """Accept one survey response from a platform's webhook."""
    # Read from the app's state like the catalog: resolving them as dependencies took FastAPI
    # about a tenth of this route's own time.
    intake: Intake = request.app.state.intake
    settings: IntakeSettings = request.app.state.settings
    catalog: SurveyCatalog = request.app.state.catalog
    platforms: dict[str, Platform] = request.app.state.platforms
    survey = catalog.get(survey_id)
    platform = platforms.get(source)
    if survey is None:
        raise Problem(404, "Unknown survey", f"no survey {survey_id!r} is defined")
    if platform is None or source not in survey.sources:
        raise Problem(404, "Unknown source", f"survey {survey_id!r} accepts no source {source!r}")
    survey_secrets = survey.secrets(source, os.environ)
    if not survey_secrets:
        raise Problem(
            401,
            "Unauthorized",
            f"source {source!r} is not enabled for {survey_id!r}: no secret is configured",
        )
    if source in CREDENTIALS_IN_HEADERS:
        # Their credential is in the headers or the query: checked before the body is read.
        try:
            platform.authenticate(_without_body(request), survey_secrets)
        except Rejected as rejected:
            raise Problem(rejected.status, rejected.title, rejected.detail) from rejected
    delivery = await read_delivery(request, settings.max_body_bytes, platform.content_types)
    try:
        platform.authenticate(delivery, survey_secrets)
        candidate = platform.adapt(delivery, survey, datetime.now(UTC))
    except Rejected as rejected:
        extra: dict[str, Any] = {"errors": rejected.errors} if rejected.errors else {}
        raise Problem(rejected.status, rejected.title, rejected.detail, **extra) from rejected
    admitted = validated(candidate, admission_of(settings))
    outcome = await publish(intake.accept_response(admitted.response, admitted.encoded))
    return _outcome_response(outcome, response_id=admitted.response.response_id)


# Operator endpoints: the bearer token is checked before the body is read (`OperatorRoute`).
operators = APIRouter(route_class=OperatorRoute)


@operators.post(
    "/v1/pilots",
    status_code=202,
    responses={200: {"description": "Already announced: nothing published"}, **_PROBLEMS},
)
async def announce_pilot(
    pilot: PilotAnnounced,
    intake: IntakeDep,
    authorization: Annotated[
        str, Header(description="`Bearer <OPERATOR_TOKEN>`, checked before the body is read")
    ] = "",
) -> JSONResponse:
    """Announce a demonstration pilot to the notifier (operator token required): its title,
    summary and call link in English, and in any of fr, es, ar, zh, ru (`translations`)."""
    del authorization  # checked by `OperatorRoute`; declared for the API description
    outcome = await publish(intake.announce_pilot(pilot))
    return _outcome_response(outcome, pilot_id=pilot.pilot_id)


def _without_body(request: Request) -> Delivery:
    """The delivery's headers and query, before any of its body is read."""
    return Delivery(
        headers={name.lower(): value for name, value in request.headers.items()},
        query=dict(request.query_params),
        body=b"",
        content_type=request.headers.get("content-type", "").split(";")[0].strip().lower(),
    )


async def read_delivery(request: Request, limit: int, content_types: frozenset[str]) -> Delivery:
    """The raw delivery, refusing bodies over `limit` without reading more than `limit` bytes."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in content_types:
        raise Problem(
            415,
            "Unsupported content type",
            f"expected {' or '.join(sorted(content_types))}, got {content_type or 'none'!r}",
        )
    declared = request.headers.get("content-length", "")
    too_large = Problem(413, "Body too large", f"the body must be at most {limit} bytes")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise too_large
    return Delivery(
        headers={name.lower(): value for name, value in request.headers.items()},
        query=dict(request.query_params),
        body=bytes(body),
        content_type=content_type,
    )


def admission_of(settings: IntakeSettings) -> Admission:
    """The admission rules with the configured tolerance for `submitted_at` ahead of now."""
    return Admission(future_tolerance=timedelta(seconds=settings.submitted_at_tolerance_seconds))


def validated(candidate: dict[str, Any], admission: Admission | None = None) -> Admitted:
    """The candidate as an admitted response event with its JSON, or a 422 naming every refused
    field and the rule it breaks (`services.intake.admission`)."""
    try:
        return (admission or Admission()).admit_encoded(candidate, datetime.now(UTC))
    except Refused as refused:
        listed = "; ".join(f"{error.field}: {error.rule}" for error in refused.refusals[:5])
        more = len(refused.refusals) - 5
        raise Problem(
            422,
            "Invalid response",
            f"{len(refused.refusals)} field(s) refused: {listed}"
            + (f" and {more} more" if more > 0 else ""),
            errors=refused.errors,
        ) from refused


async def publish(outcome: Any) -> Outcome:
    """Await a publishing use case; Kafka or MongoDB trouble becomes 503 with `Retry-After`
    (platforms retry a 503, never a 500)."""
    try:
        result: Outcome = await outcome
    except BrokerUnavailable as exc:
        raise Problem(
            503, "Service unavailable", str(exc), headers={"Retry-After": RETRY_AFTER_SECONDS}
        ) from exc
    except PyMongoError as exc:
        logger.warning("claim store unavailable: %s", exc)
        raise Problem(
            503,
            "Service unavailable",
            "the claim store (MongoDB) cannot take the event now",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        ) from exc
    return result


async def publish_review(published: Any) -> None:
    """Await the publishing of a review; Kafka trouble becomes 503 with `Retry-After`."""
    try:
        await published
    except BrokerUnavailable as exc:
        raise Problem(
            503, "Service unavailable", str(exc), headers={"Retry-After": RETRY_AFTER_SECONDS}
        ) from exc


def _outcome_response(outcome: Outcome, **ids: str | int) -> JSONResponse:
    if outcome is not Outcome.ACCEPTED:
        return JSONResponse({**ids, "status": outcome.value}, status_code=200)
    return JSONResponse({**ids, "status": "accepted"}, status_code=202)
