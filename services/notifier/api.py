"""The notifier's HTTP routes: one-click unsubscribe (RFC 8058) and the operators' delivery list."""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse

from services.notifier import unsubscribe
from services.notifier.emails import unsubscribe_page
from services.notifier.notifier import Notifier
from shared.http import Problem


def get_notifier(request: Request) -> Notifier:
    """The use cases built by the composition root."""
    notifier: Notifier = request.app.state.notifier
    return notifier


NotifierDep = Annotated[Notifier, Depends(get_notifier)]
Token = Annotated[str, Query(max_length=1000, description="The signed token from the email")]

router = APIRouter(prefix="/v1")


@router.get("/unsubscribe", response_class=HTMLResponse, tags=["unsubscribe"])
async def confirm_unsubscribe(token: Token, notifier: NotifierDep) -> HTMLResponse:
    """A confirmation page in the focal point's language; nothing changes until it is posted."""
    email_key = _verified(token, notifier)
    record = await notifier.registry.get(email_key)
    action = f"/v1/unsubscribe?{urlencode({'token': token})}"
    return HTMLResponse(unsubscribe_page(_language(record), email_key, done=False, action=action))


@router.post("/unsubscribe", response_class=HTMLResponse, tags=["unsubscribe"])
async def unsubscribe_now(token: Token, notifier: NotifierDep) -> HTMLResponse:
    """One-click unsubscribe: takes effect at once, for mail clients and for the page's button."""
    email_key = _verified(token, notifier)
    record = await notifier.registry.get(email_key)
    await notifier.registry.unsubscribe(email_key)
    return HTMLResponse(unsubscribe_page(_language(record), email_key, done=True))


@router.get("/deliveries", tags=["operators"])
async def list_deliveries(
    pilot_id: Annotated[str, Query(min_length=1, max_length=200)],
    notifier: NotifierDep,
    authorization: Annotated[str, Header()] = "",
) -> dict[str, Any]:
    """Counts by status and each delivery of a pilot (operator token required)."""
    expected = notifier.settings.operator_token.get_secret_value()
    presented = authorization.removeprefix("Bearer ").strip()
    if not expected or not secrets.compare_digest(presented.encode(), expected.encode()):
        raise Problem(401, "Unauthorized", "a valid operator bearer token is required")
    deliveries = await notifier.deliveries.for_pilot(pilot_id)
    return {
        "pilot_id": pilot_id,
        "counts": dict(Counter(d["state"] for d in deliveries)),
        "deliveries": [
            {
                "focal_point": d["email_key"],
                "state": d["state"],
                "attempts": d["attempts"],
                "last_error": d.get("last_error"),
                # Deliveries sent together in one digest share it.
                "message_id": d.get("message_id"),
            }
            for d in deliveries
        ],
    }


def _language(record: dict[str, Any] | None) -> str:
    return str(record["language"]) if record else "en"


def _verified(token: str, notifier: Notifier) -> str:
    try:
        return unsubscribe.verify(token, *notifier.settings.unsubscribe_secrets)
    except unsubscribe.InvalidToken as exc:
        raise Problem(400, "Invalid token", str(exc)) from exc
