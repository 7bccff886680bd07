"""shared.http: operator routes authenticate before reading the body; every body is capped
(an in-process app; the services themselves are checked over real HTTP in
tests/integration/test_access.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, SecretStr
from starlette.types import Message, Receive, Scope, Send

from shared.http import OperatorRoute, install_problem_handlers, limit_bodies

TOKEN = "operator-token-0123456789abcdefghij"
LIMIT = 1024


class Thing(BaseModel):
    name: str


class BytesRead:
    """Outermost ASGI layer counting the body bytes the app pulled from the server."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.total = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            self.total += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


def application() -> BytesRead:
    app = FastAPI()
    app.state.operator_token = SecretStr(TOKEN)
    install_problem_handlers(app)
    limit_bodies(app, LIMIT)
    operators = APIRouter(route_class=OperatorRoute)
    public = APIRouter()

    @operators.post("/things", status_code=202)
    async def create(thing: Thing) -> dict[str, str]:
        return {"name": thing.name}

    @public.post("/echo")
    async def echo(thing: Thing) -> dict[str, str]:
        return {"name": thing.name}

    app.include_router(operators)
    app.include_router(public)
    return BytesRead(app)


@pytest.fixture
async def served() -> AsyncIterator[tuple[httpx.AsyncClient, BytesRead]]:
    app = application()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, app


BIG = b'{"name": "' + b"x" * (5 * 1024 * 1024) + b'"}'


async def test_operator_route_big_body_without_token_401_unread(served):
    client, counter = served

    response = await client.post("/things", content=BIG, headers={"content-type": "x/json"})

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert counter.total == 0


@pytest.mark.parametrize(
    "authorization", ["", "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x"]
)
async def test_operator_route_bad_credentials_401_unread(served, authorization):
    client, counter = served

    response = await client.post(
        "/things", content=b'{"name": "a"}', headers={"authorization": authorization}
    )

    assert response.status_code == 401
    assert counter.total == 0


async def test_operator_route_with_token_reads_and_answers(served):
    client, _ = served

    response = await client.post(
        "/things", json={"name": "a"}, headers={"authorization": f"Bearer {TOKEN}"}
    )

    assert response.status_code == 202
    assert response.json() == {"name": "a"}


async def test_operator_route_with_token_big_body_413_unread(served):
    client, counter = served

    response = await client.post(
        "/things", content=BIG, headers={"authorization": f"Bearer {TOKEN}"}
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == f"the body must be at most {LIMIT} bytes"
    assert counter.total == 0  # refused on the declared length, before a byte was taken


async def test_public_route_streamed_body_over_limit_413_stops_reading(served):
    client, counter = served

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(100):
            yield b"x" * 512
        yield b'"}'

    response = await client.post("/echo", content=chunks())

    assert response.status_code == 413
    assert counter.total <= LIMIT + 512  # at most the chunk that crossed the limit


async def test_public_route_body_within_limit_accepted(served):
    client, _ = served

    response = await client.post("/echo", json={"name": "x" * (LIMIT - 20)})

    assert response.status_code == 200
