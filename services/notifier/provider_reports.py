"""Bounces and complaints reported by email providers, and the operators' suppression list.

- `POST /v1/provider-reports/ses`: Amazon SES notifications through an SNS topic subscribed
  over HTTPS. The SNS signature is verified (`sns`) and the topic must be one of
  `SES_TOPIC_ARNS`. A subscription confirmation of such a topic is confirmed by fetching its
  SubscribeURL, which must itself be https on an SNS host; any other is refused.
- `POST /v1/provider-reports/postmark`: Postmark's bounce and spam complaint webhooks, with the
  `POSTMARK_WEBHOOK_SECRET` as the basic-auth password of the webhook's URL.
- `GET /v1/suppressions` (operator token): the suppressed addresses by key, with counts;
  `DELETE /v1/suppressions/{focal_point}` lifts one.

The routes authenticate and parse; `report_intake.ReportIntake` records (built by `wiring`).
A report names addresses; only their keys (`Registry.key`, the keyed hash of `shared.personal`)
are kept (`report_formats` reads the providers' shapes). An address nobody registered is
recorded all the same: a suppression can precede a registration. A report is recorded once per
provider report id and recipient, so a report sent again answers 200 and changes nothing. Bad
reports get a problem+json 4xx naming the field; an event that does not suppress (a delivery, an
open, an auto-reply) is answered 200 `ignored`, so that the provider does not send it again.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response

from services.notifier import sns
from services.notifier.report_formats import Invalid, Parsed, parse_postmark, parse_ses
from services.notifier.report_intake import ReportIntake
from services.notifier.settings import NotifierSettings
from services.notifier.suppressions import ReportInProgress
from shared.http import OperatorRoute, Problem

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "30"


def check_basic_auth(authorization: str, secrets: list[str]) -> None:
    """401 unless `authorization` is basic auth whose password (any user) is one of `secrets`."""
    challenge = {"WWW-Authenticate": 'Basic realm="provider-reports"'}
    scheme, _, encoded = authorization.strip().partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    _, colon, password = decoded.partition(":")
    if scheme.lower() != "basic" or not colon:
        raise Problem(401, "Unauthorized", "basic auth is required", headers=challenge)
    found = False
    for secret in secrets:  # no early exit: the time taken tells nothing of which matched
        found |= hmac.compare_digest(password.encode(), secret.encode())
    if not found:
        raise Problem(
            401, "Unauthorized", "the password matches no configured secret", headers=challenge
        )


def get_settings(request: Request) -> NotifierSettings:
    """The settings the webhooks authenticate with (allowed SNS topics, Postmark secrets)."""
    settings: NotifierSettings = request.app.state.wiring.settings
    return settings


def get_reports(request: Request) -> ReportIntake:
    """The provider reports' use case, built by the composition root (`wiring`)."""
    reports: ReportIntake | None = request.app.state.wiring.cases.reports
    assert reports is not None  # `wire` always gives the service its suppression list
    return reports


def get_certificates(request: Request) -> sns.Certificates:
    """The SNS signing keys (a port: tests serve their own certificates)."""
    certificates: sns.Certificates = request.app.state.sns_certificates
    return certificates


SettingsDep = Annotated[NotifierSettings, Depends(get_settings)]
ReportsDep = Annotated[ReportIntake, Depends(get_reports)]
CertificatesDep = Annotated[sns.Certificates, Depends(get_certificates)]

reports = APIRouter(prefix="/v1/provider-reports", tags=["provider reports"])


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise Problem(400, "Malformed body", "the body must be JSON") from None


def _invalid(exc: Invalid | sns.Rejected) -> Problem:
    errors = [{"field": exc.field, "message": exc.message}]
    return Problem(422, "Invalid report", str(exc), errors=errors)


async def _record(reports: ReportIntake, parsed: Parsed) -> dict[str, Any]:
    try:
        recorded = await reports.record(parsed)
    except ReportInProgress:
        raise Problem(
            503,
            "Report in progress",
            "the same report is being recorded: send it again later",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        ) from None
    return recorded.answer()


@reports.post("/ses")
async def ses_report(
    request: Request, settings: SettingsDep, reports: ReportsDep, certificates: CertificatesDep
) -> dict[str, Any]:
    """An SNS message carrying an SES bounce or complaint notification (or a subscription
    confirmation of an allowed topic)."""
    allowed = settings.ses_topic_arns.split()
    if not allowed:
        raise Problem(
            403, "Forbidden", "the SES endpoint is not enabled: SES_TOPIC_ARNS is not set"
        )
    body = await _json(request)
    try:
        message = await certificates.verify(body)
    except sns.Rejected as exc:
        status = 401 if exc.field == "Signature" or exc.field == "SigningCertURL" else 422
        title = "Invalid signature" if status == 401 else "Invalid report"
        raise Problem(
            status, title, str(exc), errors=[{"field": exc.field, "message": exc.message}]
        ) from exc
    except sns.Unavailable as exc:
        raise Problem(
            503, "Certificate unavailable", str(exc), headers={"Retry-After": RETRY_AFTER_SECONDS}
        ) from exc
    declared = request.headers.get("x-amz-sns-message-type")
    if declared is not None and declared != message.type:
        raise _invalid(
            sns.Rejected("x-amz-sns-message-type", f"says {declared}, the body {message.type}")
        )
    if message.topic_arn not in allowed:
        raise Problem(403, "Forbidden", f"topic {message.topic_arn} is not one of SES_TOPIC_ARNS")
    if message.type == sns.SUBSCRIPTION_CONFIRMATION:
        return await _confirm(certificates, message)
    if message.type == sns.UNSUBSCRIBE_CONFIRMATION:
        logger.warning("SNS topic %s: the subscription was removed", message.topic_arn)
        return {"status": "ignored", "reason": "unsubscribe confirmation"}
    try:
        parsed = parse_ses(message.message, reports.key)
    except Invalid as exc:
        raise _invalid(exc) from exc
    return await _record(reports, parsed)


async def _confirm(certificates: sns.Certificates, message: sns.Message) -> dict[str, Any]:
    # Only a signed confirmation of an allowed topic reaches this, and its URL is on an SNS
    # host (checked in `sns.parse`): nothing else is ever visited.
    assert message.subscribe_url is not None
    try:
        await certificates.fetch(message.subscribe_url)
    except Exception as exc:
        logger.warning(
            "SNS topic %s: subscription not confirmed (%s); confirm it by hand",
            message.topic_arn,
            type(exc).__name__,
        )
        raise Problem(
            503,
            "Subscription not confirmed",
            "SNS did not answer the confirmation",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        ) from exc
    logger.warning("SNS topic %s: subscription confirmed", message.topic_arn)
    return {"status": "confirmed", "topic_arn": message.topic_arn}


@reports.post("/postmark")
async def postmark_report(
    request: Request,
    settings: SettingsDep,
    reports: ReportsDep,
    authorization: Annotated[str, Header(description="Basic auth from the webhook's URL")] = "",
) -> dict[str, Any]:
    """A Postmark bounce or spam complaint webhook."""
    check_basic_auth(authorization, settings.postmark_secrets)
    try:
        parsed = parse_postmark(await _json(request), reports.key)
    except Invalid as exc:
        raise _invalid(exc) from exc
    return await _record(reports, parsed)


operators = APIRouter(prefix="/v1", route_class=OperatorRoute, tags=["operators"])


@operators.get("/suppressions")
async def list_suppressions(
    reports: ReportsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    authorization: Annotated[
        str, Header(description="`Bearer <OPERATOR_TOKEN>`, checked before anything else")
    ] = "",
) -> dict[str, Any]:
    """Suppressed focal points (by key), newest first, and how many by reason."""
    del authorization  # checked by `OperatorRoute`; declared for the API description
    return await reports.listing(limit)


@operators.delete("/suppressions/{focal_point}", status_code=204)
async def lift_suppression(
    focal_point: Annotated[str, Path(min_length=1, max_length=320)],
    reports: ReportsDep,
    authorization: Annotated[
        str, Header(description="`Bearer <OPERATOR_TOKEN>`, checked before anything else")
    ] = "",
) -> Response:
    """Lift the suppression of one focal point (by key, as listed): it gets email again."""
    del authorization  # checked by `OperatorRoute`; declared for the API description
    if not await reports.lift(focal_point):
        raise Problem(404, "Not suppressed", "no suppression of that focal point is listed")
    logger.warning("suppression of %s lifted by an operator", focal_point)
    return Response(status_code=204)


def install(app: FastAPI, fetch: sns.Fetch = sns.https_get) -> None:
    """Mount the provider webhooks and the suppression list on the notifier's `app`."""
    app.state.sns_certificates = sns.Certificates(fetch)
    app.include_router(reports)
    app.include_router(operators)
