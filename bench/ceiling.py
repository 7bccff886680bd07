"""The durable ceiling of a webhook: a bare endpoint that does only the least durable work an
accepted webhook needs, so the intake is held against what the servers allow, not against a parse.

For each request: parse the JSON body, insert one small document (the idempotency record) into
MongoDB, and produce the body to Kafka with the producer settings the intake uses (idempotent,
`acks=all`), answering 202 once both are durable. Both are batched as well as the clients allow:
inserts of concurrent requests go together in one `insert_many` (the project's `InsertBatcher`),
and concurrent sends share the producer's batches. No authentication, no validation, no
admission, no claims lease: everything else the intake does is what the ratio measures.

The *checked* ceiling (`checked`) does the same after the checks every webhook must pass before
anything durable, done by the intake's own code: the generic source's signature (Standard
Webhooks) and parse, and the admission of the response (`services.intake.admission`), whose JSON
is what it produces. Still no claims, no revisions, no metrics: no intake that authenticates and
validates what it accepts can be faster on the same machine, so its ratio to the durable ceiling
bounds the intake's from above.

Run as its own process, like the intake: `uvicorn bench.ceiling:durable` (or `:checked`). It
reads the same environment names as the services (`MONGODB_URL`, `MONGODB_DATABASE`,
`KAFKA_BOOTSTRAP_SERVERS`, `TOPIC_RESPONSES`, and the survey's webhook secret).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.intake.admission import Admission, Refused
from services.intake.batching import InsertBatcher
from services.intake.settings import SURVEYS_DIR
from services.intake.sources import Delivery, Rejected
from services.intake.sources.generic import GenericPlatform
from services.intake.surveys import SurveyCatalog
from shared import mongo
from shared.kafka_security import kafka_security
from shared.serve import tune_garbage_collector

_GENERIC = GenericPlatform()  # holds no state: one for the process, as in the intake


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One MongoDB client and one producer for the process, as the intake has, and its
    garbage collector tuned as the intake's is."""
    tune_garbage_collector()
    client = mongo.new_client(os.environ.get("MONGODB_URL", "mongodb://localhost:27017"))
    database = mongo.database(client, os.environ.get("MONGODB_DATABASE", "bench_ceiling"))
    producer = AIOKafkaProducer(
        bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=10_000,
        **kafka_security().client_options(),
    )
    await producer.start()
    app.state.inserts = InsertBatcher(database["ceiling_claims"])
    app.state.producer = producer
    app.state.topic = os.environ.get("TOPIC_RESPONSES", "survey.responses.v1")
    try:
        yield
    finally:
        await producer.stop()
        await client.close()


@asynccontextmanager
async def checked_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The durable ceiling's clients, and the survey definitions the checks read, as the
    intake's."""
    app.state.catalog = SurveyCatalog.load(SURVEYS_DIR)
    async with lifespan(app):
        yield


durable = FastAPI(lifespan=lifespan)
checked = FastAPI(lifespan=checked_lifespan)


@durable.post("/v1/webhooks/{source}/{survey_id}", status_code=202)
async def store_and_produce(source: str, survey_id: str, request: Request) -> JSONResponse:
    """One durable insert and one acknowledged produce, then 202."""
    body = await request.body()
    payload = json.loads(body)
    await _insert_and_produce(request.app, f"{survey_id}/{payload['response_id']}", body)
    return JSONResponse({"response_id": payload["response_id"], "status": "accepted"}, 202)


@checked.post("/v1/webhooks/{source}/{survey_id}", status_code=202)
async def check_store_and_produce(source: str, survey_id: str, request: Request) -> JSONResponse:
    """The intake's checks of a generic webhook, then the durable ceiling's work with the
    admitted JSON; a webhook that fails a check is answered as the intake would, without a
    problem document."""
    survey = request.app.state.catalog.get(survey_id)
    if survey is None or source != GenericPlatform.name:
        return JSONResponse({"detail": "only generic webhooks of a known survey"}, 404)
    delivery = Delivery(
        headers={name.lower(): value for name, value in request.headers.items()},
        query={},
        body=await request.body(),
        content_type=request.headers.get("content-type", ""),
    )
    try:
        _GENERIC.authenticate(delivery, survey.secrets(source, os.environ))
        candidate = _GENERIC.adapt(delivery, survey, datetime.now(UTC))
        admitted = Admission().admit_encoded(candidate, datetime.now(UTC))
    except Rejected as rejected:
        return JSONResponse({"detail": rejected.detail}, rejected.status)
    except Refused as refused:
        return JSONResponse({"detail": str(refused)}, 422)
    response_id = admitted.response.response_id
    await _insert_and_produce(request.app, f"{survey_id}/{response_id}", admitted.encoded)
    return JSONResponse({"response_id": response_id, "status": "accepted"}, 202)


async def _insert_and_produce(app: FastAPI, key: str, event: bytes) -> None:
    await app.state.inserts.insert({"_id": key, "at": datetime.now(UTC)})
    delivered = await app.state.producer.send(app.state.topic, event, key=key.encode())
    await delivered


@durable.get("/readyz")
@checked.get("/readyz")
async def ready() -> dict[str, str]:
    """Answers once the process serves."""
    return {"status": "ready"}
