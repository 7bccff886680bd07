"""The notifier's HTTP routes: one-click unsubscribe (RFC 8058) and the operators' delivery list."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse

from services.notifier import unsubscribe
from services.notifier.emails import unsubscribe_page
from services.notifier.notifier import Notifier
from services.notifier.people import People
from services.notifier.records import FocalPoint
from shared.http import OperatorRoute, Problem


def get_notifier(request: Request) -> Notifier:
    """The registry's use cases built by the composition root (`wiring`)."""
    notifier: Notifier = request.app.state.notifier
    return notifier


def get_people(request: Request) -> People:
    """The use cases of the personal pages built by the composition root (`wiring`)."""
    people: People = request.app.state.people
    return people


NotifierDep = Annotated[Notifier, Depends(get_notifier)]
PeopleDep = Annotated[People, Depends(get_people)]
Token = Annotated[str, Query(max_length=1000, description="The signed token from the email")]

router = APIRouter(prefix="/v1")


@router.get("/unsubscribe", response_class=HTMLResponse, tags=["unsubscribe"])
async def confirm_unsubscribe(token: Token, people: PeopleDep) -> HTMLResponse:
    """A confirmation page in the focal point's language; nothing changes until it is posted."""
    record = await people.of_link(_verified(token, people))
    action = f"/v1/unsubscribe?{urlencode({'token': token})}"
    return HTMLResponse(
        unsubscribe_page(_language(record), shown(record), done=False, action=action)
    )


@router.post("/unsubscribe", response_class=HTMLResponse, tags=["unsubscribe"])
async def unsubscribe_now(token: Token, people: PeopleDep) -> HTMLResponse:
    """One-click unsubscribe: takes effect at once, for mail clients and for the page's button."""
    record = await people.unsubscribe(_verified(token, people))
    return HTMLResponse(unsubscribe_page(_language(record), shown(record), done=True))


operators = APIRouter(prefix="/v1", route_class=OperatorRoute)


@operators.get("/deliveries", tags=["operators"])
async def list_deliveries(
    pilot_id: Annotated[str, Query(min_length=1, max_length=200)],
    people: PeopleDep,
    authorization: Annotated[
        str, Header(description="`Bearer <OPERATOR_TOKEN>`, checked before anything else")
    ] = "",
) -> dict[str, Any]:
    """Counts by status and each delivery of a pilot (operator token required)."""
    del authorization  # checked by `OperatorRoute`; declared for the API description
    deliveries = await people.deliveries_of(pilot_id)
    return {
        "pilot_id": pilot_id,
        "counts": dict(Counter(d.state for d in deliveries)),
        "deliveries": [
            {
                # None once the delivery was anonymised (erasure).
                "focal_point": d.email_key,
                "state": d.state,
                "attempts": d.attempts,
                # None once stripped by retention, as is the message id.
                "last_error": d.last_error,
                # Deliveries sent together in one digest share it.
                "message_id": d.message_id,
            }
            for d in deliveries
        ],
    }


def _language(record: FocalPoint | None) -> str:
    return (record.survey_language or "en") if record else "en"


def shown(record: FocalPoint | None) -> str:
    """The address as far as its owner needs to recognise it: whoever holds a forwarded link
    learns neither the address nor, from the token, anything else."""
    if record is None or not record.email:
        return "…"
    local, _, domain = record.email.partition("@")
    return f"{local[:1]}…@{domain}"


def _verified(token: str, people: People, purpose: str = unsubscribe.UNSUBSCRIBE) -> str:
    """The opaque id of a genuine link token; 400 otherwise (410 for the outdated format)."""
    try:
        return people.link_id(token, purpose)
    except unsubscribe.OutdatedToken as exc:
        raise Problem(410, "Outdated link", str(exc)) from exc
    except unsubscribe.InvalidToken as exc:
        raise Problem(400, "Invalid token", str(exc)) from exc
