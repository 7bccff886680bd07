"""`POST /v1/erasure-requests`: a person's request to erase what the services keep about their
address, taken by an operator and published on `privacy.erasures.v1`.

The event names the person by the keyed hash of the address (`shared.personal`), never the
address: the topic may then keep it as long as it keeps anything. Each service consumes it and
erases what it holds (the notifier's registry, links and deliveries; analytics' stored answers).
The intake itself keeps no personal data (its claims are keyed by response and pilot ids): it
records the request it accepted, without the address, in `intake_erasures`.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, EmailStr
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from services.intake.api import publish
from services.intake.publisher import EventPublisher
from shared.events import ErasureRequested
from shared.http import PROBLEM_JSON, OperatorRoute
from shared.mongo import Document
from shared.personal import EmailKeys

ERASURES = "intake_erasures"


class ErasureBody(BaseModel):
    """Whose data to erase: the address as the person gave it (any case)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr


@dataclass(frozen=True)
class Erasures:
    """Publishes erasure requests and keeps the intake's record of them."""

    publisher: EventPublisher
    records: AsyncCollection[Document]
    topic: str
    keys: EmailKeys

    def request(self, email: str, now: datetime | None = None) -> ErasureRequested:
        """A new erasure request for `email`, named by its keyed hash."""
        return ErasureRequested(
            request_id=uuid.uuid4().hex,
            email_key=self.keys.key(email),
            requested_at=now or datetime.now(UTC),
        )

    async def submit(self, event: ErasureRequested) -> None:
        """Publish `event` (return once the broker acknowledged it), then record it."""
        await self.publisher.publish(self.topic, event.request_id, event)
        record = {
            "_id": event.request_id,
            "email_key": event.email_key,
            "requested_at": event.requested_at,
            "published_at": datetime.now(UTC),
            # Nothing else of the intake's names a person: claims are keyed by event ids.
            "removed": {},
        }
        # Recorded already by an attempt whose answer was lost: nothing to add.
        with contextlib.suppress(DuplicateKeyError):
            await self.records.insert_one(record)


router = APIRouter(route_class=OperatorRoute)
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"description": title, "content": {PROBLEM_JSON: {}}}
    for status, title in {
        401: "Bad or missing operator token",
        422: "Invalid body; the failing field and its rule are named in `errors`",
        503: "Kafka or MongoDB cannot take the request now; retry after `Retry-After` seconds",
    }.items()
}


@router.post("/v1/erasure-requests", status_code=202, responses=_PROBLEMS, tags=["privacy"])
async def request_erasure(
    body: ErasureBody,
    request: Request,
    authorization: Annotated[
        str, Header(description="`Bearer <OPERATOR_TOKEN>`, checked before the body is read")
    ] = "",
) -> JSONResponse:
    """Erase what every service keeps about an address (operator token required). Answers once
    the request is on Kafka; within a minute no service's database holds the address, and the
    aggregates are unchanged. Responses submitted later are a new consent and are kept."""
    del authorization  # checked by `OperatorRoute`; declared for the API description
    erasures: Erasures = request.app.state.erasures
    event = erasures.request(str(body.email))
    await publish(erasures.submit(event))
    return JSONResponse({"request_id": event.request_id}, status_code=202)
