"""The preference centre: `GET /v1/preferences?token=...` shows, in the person's language, what
is held about them and what was sent, with their choices (themes, language, immediate or weekly
digest) and an unsubscribe button; `POST /v1/preferences` (a form holding the token) saves them.

The token in the form is the authority, as in the emails' links: no cookie, no session, so a
page of another site cannot post for the person without their token. Choices apply from the
next pilot on: matching uses the chosen themes, emails the chosen language and frequency.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.notifier import consent, unsubscribe
from services.notifier.api import PeopleDep, Token, _verified
from services.notifier.emails import label, preferences_page
from services.notifier.people import People
from services.notifier.records import FocalPoint
from shared.http import Problem
from shared.taxonomy import load_taxonomy

router = APIRouter(prefix="/v1", tags=["preferences"])
MAX_FORM_BYTES = 16_384


@router.get("/preferences", response_class=HTMLResponse)
async def show_preferences(token: Token, people: PeopleDep) -> HTMLResponse:
    """The person's page: what is held, what was sent, their choices."""
    record = await _record(token, people)
    return HTMLResponse(await _page(people, record, token, note=""))


@router.post("/preferences", response_class=HTMLResponse)
async def save_preferences(request: Request, people: PeopleDep) -> HTMLResponse:
    """Save the posted choices (`action=save`) or unsubscribe (`action=unsubscribe`)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Problem(413, "Form too large", f"at most {MAX_FORM_BYTES} bytes")
    form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=False)
    token = (form.get("token") or [""])[0]
    if not token or len(token) > 1000:
        raise Problem(400, "Invalid token", "token: the form must hold the link's token")
    record = await _record(token, people)
    choices: consent.Choices | None = None
    if (form.get("action") or ["save"])[0] == "unsubscribe":
        note = "unsubscribed"
    else:
        try:
            choices = consent.parse_choices(form, set(_choosable()))
        except ValueError as exc:
            raise Problem(422, "Invalid preferences", str(exc)) from exc
        note = "saved"
    updated = await people.choose(record, choices)
    return HTMLResponse(await _page(people, updated, token, note=note))


async def _record(token: str, people: People) -> FocalPoint:
    record = await people.of_link(_verified(token, people, unsubscribe.PREFERENCES))
    if record is None:
        raise Problem(404, "Unknown link", "nothing is held for this link")
    return record


def _choosable() -> dict[str, str]:
    """The codes pilots are announced with (themes, then SDGs), English labels."""
    taxonomy = load_taxonomy()
    return {**taxonomy.themes, **taxonomy.sdgs}


async def _page(people: People, record: FocalPoint, token: str, *, note: str) -> str:
    language = consent.language(record)
    chosen = set(consent.codes(record))
    sent = [{"title": item.title, "at": _day(item.at)} for item in await people.sent_to(record.key)]
    return preferences_page(
        language,
        token=token,
        note=note,
        held={
            "name": record.name,
            "email": record.email,
            "city": record.city,
            "country": record.country,
            "language": record.survey_language,
            "themes": [label(code, language) for code in consent.codes(record)],
            "consent_date": _day(record.submitted_at) if record.consent else None,
            "confirmed_date": _day(record.confirmed_at),
        },
        sent=sent,
        unsubscribed=record.unsubscribed,
        themes=[
            {"code": code, "label": label(code, language), "checked": code in chosen}
            for code in _choosable()
        ],
        chosen_language=language,
        frequency=consent.frequency(record),
    )


def _day(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%d") if moment else None
