"""Operator routes of reviews and retractions (bearer `OPERATOR_TOKEN`): each publishes one
event on `survey.reviews.v1` (see `reviews.py` for how reviews are ordered)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.intake.acceptance import Intake
from services.intake.api import IntakeDep, publish_review
from services.intake.reviews import ReviewClock, ReviewRequest, new_review
from services.intake.surveys import SurveyCatalog
from shared.http import OperatorRoute, Problem

reviews = APIRouter(route_class=OperatorRoute)
Authorization = Annotated[
    str, Header(description="`Bearer <OPERATOR_TOKEN>`, checked before the body is read")
]
_ANSWERS: dict[int | str, dict[str, str]] = {
    401: {"description": "No or a wrong operator token"},
    404: {"description": "Unknown survey"},
    422: {"description": "A bad status, note or response id; `errors` names the field"},
    503: {"description": "Kafka cannot take the event now; retry after `Retry-After` seconds"},
}


@reviews.post("/v1/responses/{survey_id}/{response_id}/review", status_code=202, responses=_ANSWERS)
async def review_response(
    survey_id: str,
    response_id: str,
    body: ReviewRequest,
    request: Request,
    intake: IntakeDep,
    authorization: Authorization = "",
) -> JSONResponse:
    """Set a response's review status (`pending`, `approved`, `rejected`) with a note; the
    latest review of a response wins. Analytics leaves rejected responses out of its counts."""
    del authorization  # checked by `OperatorRoute`; declared for the API description
    return await _publish(request, intake, survey_id, response_id, body.status, body.note)


@reviews.delete("/v1/responses/{survey_id}/{response_id}", status_code=202, responses=_ANSWERS)
async def retract_response(
    survey_id: str,
    response_id: str,
    request: Request,
    intake: IntakeDep,
    authorization: Authorization = "",
) -> JSONResponse:
    """Retract a response: it leaves every count (a later review brings it back)."""
    del authorization
    return await _publish(request, intake, survey_id, response_id, "retracted", "")


async def _publish(
    request: Request, intake: Intake, survey_id: str, response_id: str, status: str, note: str
) -> JSONResponse:
    catalog: SurveyCatalog = request.app.state.catalog
    if catalog.get(survey_id) is None:
        raise Problem(404, "Unknown survey", f"no survey {survey_id!r} is defined")
    clock: ReviewClock = request.app.state.review_clock
    try:
        review = new_review(survey_id, response_id, status, note, clock)
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(str(part) for part in error["loc"]),
                "rule": error["type"].replace("_", "-"),
                "message": error["msg"],
            }
            for error in exc.errors(include_url=False, include_input=False)
        ]
        detail = "; ".join(f"{error['field']}: {error['message']}" for error in errors)
        raise Problem(422, "Invalid review", detail, errors=errors) from exc
    await publish_review(intake.review(review))
    return JSONResponse(
        {
            "review_id": review.review_id,
            "survey_id": survey_id,
            "response_id": response_id,
            "status": review.status,
            "order": review.order,
        },
        status_code=202,
    )
