"""Double opt-in: `GET /v1/confirm?token=...` shows a page with one button, `POST` confirms.

Only the POST changes anything, so a link scanner that follows the link of the email confirms
nothing. The token names one confirmation request (`unsubscribe.request_id`), not the person.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.notifier import consent, unsubscribe
from services.notifier.api import NotifierDep, PeopleDep, Token, _verified, shown
from services.notifier.emails import confirm_page
from services.notifier.records import FocalPoint

router = APIRouter(prefix="/v1", tags=["consent"])


@router.get("/confirm", response_class=HTMLResponse)
async def confirm_question(token: Token, people: PeopleDep) -> HTMLResponse:
    """The confirmation page in the person's language; nothing changes until it is posted."""
    found = await people.request_of(_verified(token, people, unsubscribe.CONFIRM))
    if found is None:
        return HTMLResponse(confirm_page("en", "…", state="expired"), status_code=410)
    record, number = found
    language, email = _language(record), shown(record)
    if consent.open_request(record, number, datetime.now(UTC)):
        action = f"/v1/confirm?{urlencode({'token': token})}"
        return HTMLResponse(confirm_page(language, email, state="ask", action=action))
    if consent.confirmed_and_subscribed(record):
        return HTMLResponse(confirm_page(language, email, state="done"))
    return HTMLResponse(confirm_page(language, email, state="expired"), status_code=410)


@router.post("/confirm", response_class=HTMLResponse)
async def confirm_now(token: Token, notifier: NotifierDep, people: PeopleDep) -> HTMLResponse:
    """Confirm the address: pilot emails may go to it from now on (410 when the request has
    expired or a later one replaced it)."""
    state, record = await notifier.confirm(_verified(token, people, unsubscribe.CONFIRM))
    page = confirm_page(_language(record), shown(record), state=state)
    return HTMLResponse(page, status_code=200 if state == "done" else 410)


def _language(record: FocalPoint | None) -> str:
    return consent.language(record) if record else "en"
