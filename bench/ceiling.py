"""The durable ceiling of a webhook: a bare endpoint that does only the least durable work an
accepted webhook needs, so the intake is held against what the servers allow, not against a parse.

For each request: parse the JSON body, insert one small document (the idempotency record) into
MongoDB, and produce the body to Kafka with the producer settings the intake uses (idempotent,
`acks=all`), answering 202 once both are durable. Both are batched as well as the clients allow:
inserts of concurrent requests go together in one `insert_many` (the project's `InsertBatcher`),
and concurrent sends share the producer's batches. No authentication, no validation, no
admission, no claims lease: everything else the intake does is what the ratio measures.

Run as its own process, like the intake: `uvicorn bench.ceiling:durable`. It reads the same
environment names as the services (`MONGODB_URL`, `MONGODB_DATABASE`, `KAFKA_BOOTSTRAP_SERVERS`,
`TOPIC_RESPONSES`).
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

from services.intake.batching import InsertBatcher
from shared import mongo
from shared.kafka_security import kafka_security
from shared.serve import tune_garbage_collector


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


durable = FastAPI(lifespan=lifespan)


@durable.post("/v1/webhooks/{source}/{survey_id}", status_code=202)
async def store_and_produce(source: str, survey_id: str, request: Request) -> JSONResponse:
    """One durable insert and one acknowledged produce, then 202."""
    body = await request.body()
    payload = json.loads(body)
    key = f"{survey_id}/{payload['response_id']}"
    await request.app.state.inserts.insert({"_id": key, "at": datetime.now(UTC)})
    delivered = await request.app.state.producer.send(
        request.app.state.topic, body, key=key.encode()
    )
    await delivered
    return JSONResponse({"response_id": payload["response_id"], "status": "accepted"}, 202)


@durable.get("/readyz")
async def ready() -> dict[str, str]:
    """Answers once the process serves."""
    return {"status": "ready"}
