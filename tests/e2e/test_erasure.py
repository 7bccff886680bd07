"""Erasure end to end: the three services as processes on the real Kafka, MongoDB-wire server
and SMTP server. After `POST /v1/erasure-requests` the address is in no collection of any
service's database within a minute, also when the services processing it are SIGKILLed mid-way,
and the aggregates are exactly what they were."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import signal
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from shared import mongo
from shared.mongo import Document
from shared.personal import EmailKeys
from tests.support import (
    OPERATOR,
    Mailbox,
    ServiceProcess,
    Stack,
    announce_until_sent,
    assert_clean_exit,
    canonical_response,
    confirm_focal_points,
    dumps,
    eventually,
    flood_pilot,
    run_service_command,
    signed_headers,
    start_service,
)

pytestmark = pytest.mark.e2e

WEBHOOK = "/v1/webhooks/generic/cities-2024-priorities"
SECRET_VARIABLE = "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC"
SURVEY = "cities-2024-priorities"
ERASED_WITHIN = 60.0  # the contract: within a minute
# Where the keyed hash may stay after an erasure: the registry's tombstone and match index (so a
# replayed older response cannot register the person again) and the records of the erasure.
KEY_KEPT_IN = {
    "notifier_focal_points",
    "notifier_match_index",
    "intake_erasures",
    "analytics_erasures",
    "notifier_erasures",
}


@pytest.fixture
def environment(stack: Stack, run_id: str) -> dict[str, str]:
    return {
        **stack.environment(run_id),
        SECRET_VARIABLE: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "POLL_INTERVAL_SECONDS": "0.2",
    }


@pytest.fixture
async def database(
    stack: Stack, environment: dict[str, str]
) -> AsyncIterator[AsyncDatabase[Document]]:
    client = mongo.new_client(stack.mongodb_url)
    try:
        yield mongo.database(client, environment["MONGODB_DATABASE"])
    finally:
        await client.drop_database(environment["MONGODB_DATABASE"])
        await client.close()


class Services:
    """The three services, started and stopped by the test; a killed one is started again."""

    def __init__(self, environment: dict[str, str], log_dir: Path) -> None:
        self.environment = environment
        self.log_dir = log_dir
        self.running: dict[str, ServiceProcess] = {}
        self.killed: list[ServiceProcess] = []

    def start(self, *names: str, **extra: str) -> None:
        for name in names:
            self.running[name] = start_service(name, {**self.environment, **extra}, self.log_dir)
        for name in names:
            self.running[name].wait_ready()

    def url(self, name: str) -> str:
        return self.running[name].url

    def kill(self, name: str) -> ServiceProcess:
        victim = self.running.pop(name)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=10)
        self.killed.append(victim)
        return victim

    def stop(self) -> None:
        for service in self.running.values():
            if service.process.poll() is None:
                assert_clean_exit(service, service.terminate())
        for service in self.killed:
            if service.process.poll() is None:
                service.process.kill()


@pytest.fixture
def services(environment: dict[str, str], tmp_path: Path) -> Iterator[Services]:
    started = Services(environment, tmp_path)
    try:
        yield started
    finally:
        started.stop()


def readable(value: Any) -> str:
    """Any value JSON does not know as text; binary ones (the match index's compressed
    buckets) decompressed."""
    if not isinstance(value, bytes):  # bson's Binary is bytes too
        return str(value)
    data = value
    with contextlib.suppress(zlib.error):
        data = zlib.decompress(data)
    return data.decode(errors="replace")


async def holders(db: AsyncDatabase[Document], needle: str) -> list[str]:
    """`collection/_id` of every document of every collection holding `needle` anywhere (any
    field, key or value, at any depth, binary values decompressed), compared without case."""
    needle = needle.lower()
    found = []
    for name in sorted(await db.list_collection_names()):
        async for document in db[name].find():
            text = json.dumps(document, default=readable, ensure_ascii=False).lower()
            if needle in text:
                found.append(f"{name}/{document['_id']}")
    return found


async def send_responses(
    client: httpx.AsyncClient, intake: str, secret: str, people: dict[str, int], run_id: str
) -> int:
    """`count` responses for each address, each with the address in a free-text answer too."""
    sent = 0
    for email, count in people.items():
        for n in range(count):
            response_id = f"erasure-{run_id}-{sent}"
            body = dumps(
                canonical_response(
                    response_id,
                    collaboration_interests=["climate-resilience"],
                    focal_point={"name": "Focal Point", "email": email, "consent": True},
                    answers={"comments": f"Write to {email} ({n})", "staff": 12},
                )
            )
            answer = await client.post(
                f"{intake}{WEBHOOK}",
                content=body,
                headers=signed_headers(body, response_id, secret),
            )
            assert answer.status_code == 202, answer.text
            sent += 1
    return sent


async def summaries(client: httpx.AsyncClient, analytics: str) -> list[dict[str, Any]]:
    """Every number analytics shows an operator (summary and overview)."""
    answers = [
        await client.get(f"{analytics}/v1/surveys/{SURVEY}/summary", headers=OPERATOR),
        await client.get(f"{analytics}/v1/overview", headers=OPERATOR),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
    return [answer.json() for answer in answers]


async def fill(
    client: httpx.AsyncClient,
    mailbox: Mailbox,
    services: Services,
    environment: dict[str, str],
    people: dict[str, int],
    pilots: int,
    run_id: str,
) -> list[dict[str, Any]]:
    """Responses of `people`, counted, their addresses confirmed, and `pilots` pilots emailed to
    each of them."""
    intake, analytics = services.url("intake"), services.url("analytics")
    total = await send_responses(client, intake, environment[SECRET_VARIABLE], people, run_id)

    async def counted() -> int:
        answer = await client.get(f"{analytics}/v1/surveys/{SURVEY}/summary", headers=OPERATOR)
        return int(answer.json().get("total", 0))

    await eventually(counted, lambda n: n == total, within=60)
    # Each person confirms their address (double opt-in) before any pilot is sent to them.
    await confirm_focal_points(client, mailbox, *people, notifier=services.url("notifier"))
    announced = []
    for number in range(pilots):
        pilot = flood_pilot(f"erasure-{run_id}-{number}", f"https://example.org/pilots/{number}")
        await announce_until_sent(client, intake, services.url("notifier"), pilot, len(people))
        announced.append(pilot)
    return announced


async def request_erasure(client: httpx.AsyncClient, intake: str, email: str) -> str:
    answer = await client.post(
        f"{intake}/v1/erasure-requests", json={"email": email}, headers=OPERATOR
    )
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["request_id"]
    assert isinstance(request_id, str) and request_id
    return request_id


async def test_erasure_request_address_in_no_collection_aggregates_unchanged(
    stack: Stack,
    services: Services,
    environment: dict[str, str],
    database: AsyncDatabase[Document],
    run_id: str,
) -> None:
    leaving = f"Erase.Me+{run_id}@example.org"
    staying = f"stay.{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    services.start("intake", "analytics", "notifier")
    async with httpx.AsyncClient(timeout=15) as client:
        people = {leaving: 3, staying: 1}
        pilots = await fill(client, mailbox, services, environment, people, 1, run_id)
        before = await summaries(client, services.url("analytics"))
        held_before = await holders(database, leaving)
        intake = services.url("intake")

        unauthorised = await client.post(f"{intake}/v1/erasure-requests", json={"email": leaving})
        not_an_address = await client.post(
            f"{intake}/v1/erasure-requests", json={"email": "nobody"}, headers=OPERATOR
        )
        request_id = await request_erasure(client, intake, leaving.upper())
        await eventually(
            lambda: holders(database, leaving), lambda h: h == [], within=ERASED_WITHIN
        )

        after = await summaries(client, services.url("analytics"))
        deliveries = await client.get(
            f"{services.url('notifier')}/v1/deliveries",
            params={"pilot_id": pilots[0]["pilot_id"]},
            headers=OPERATOR,
        )
    verify = await asyncio.to_thread(run_service_command, "analytics", "verify", environment)
    key = EmailKeys(environment["EMAIL_KEY_SECRET"]).key(leaving)
    records = {
        name: await database[name].find_one({"_id": request_id})
        for name in ("intake_erasures", "analytics_erasures", "notifier_erasures")
    }

    assert unauthorised.status_code == 401
    assert not_an_address.status_code == 422
    assert not_an_address.json()["errors"][0]["field"] == "email"
    # The address was there to be found: the registry, and the free-text answers of analytics.
    assert any(h.startswith("notifier_focal_points/") for h in held_before), held_before
    assert sum(h.startswith("analytics_responses/") for h in held_before) == 3, held_before
    assert await holders(database, staying) != []  # nobody else's data went
    assert after == before
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert deliveries.json()["counts"] == {"sent": 2}
    assert all(record is not None and record["email_key"] == key for record in records.values())
    assert {holder.split("/")[0] for holder in await holders(database, key)} <= KEY_KEPT_IN
    analytics_record = records["analytics_erasures"]
    assert analytics_record is not None
    assert analytics_record["removed"] == {"stored_responses_answers": 3}
    notifier_record = records["notifier_erasures"]
    assert notifier_record is not None and notifier_record["state"] == "done"
    # Links and deliveries: the pilot's and those of the confirmation request (double opt-in).
    assert notifier_record["removed"] == {"focal_points": 1, "link_ids": 2, "deliveries_sent": 2}


async def test_erasure_services_killed_mid_way_address_in_no_collection(
    stack: Stack,
    services: Services,
    environment: dict[str, str],
    database: AsyncDatabase[Document],
    run_id: str,
) -> None:
    leaving = f"killed.erasure+{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    services.start("intake", "analytics", "notifier", ERASURE_STEP_DELAY_SECONDS="1.5")
    key = EmailKeys(environment["EMAIL_KEY_SECRET"]).key(leaving)
    responses, deliveries = database["analytics_responses"], database["notifier_deliveries"]
    async with httpx.AsyncClient(timeout=15) as client:
        await fill(client, mailbox, services, environment, {leaving: 4}, 3, run_id)
        before = await summaries(client, services.url("analytics"))
        request_id = await request_erasure(client, services.url("intake"), leaving)

        async def analytics_mid_way() -> tuple[int, int]:
            done = await responses.count_documents({"erasure_id": request_id})
            left = await responses.count_documents({"focal_point_key": key})
            return done, left

        async def notifier_mid_way() -> tuple[int, int]:
            done = await deliveries.count_documents({"erasure_id": request_id})
            left = await deliveries.count_documents({"email_key": key})
            return done, left

        # Each is killed once part of its records is erased and part is not: in the middle of
        # handling the event, before its offset was committed.
        at_kill = await asyncio.gather(
            eventually(analytics_mid_way, lambda s: s[0] > 0 and s[1] > 0, interval=0.05),
            eventually(notifier_mid_way, lambda s: s[0] > 0 and s[1] > 0, interval=0.05),
        )
        killed = [services.kill("analytics"), services.kill("notifier")]
        after_kill = [await analytics_mid_way(), await notifier_mid_way()]
        unfinished = await database["notifier_erasures"].find_one({"_id": request_id})

        services.start("analytics", "notifier")
        await eventually(
            lambda: holders(database, leaving), lambda h: h == [], within=ERASED_WITHIN
        )
        after = await summaries(client, services.url("analytics"))
    finished = {
        name: await database[name].find_one({"_id": request_id})
        for name in ("analytics_erasures", "notifier_erasures")
    }

    assert [victim.process.returncode for victim in killed] == [-signal.SIGKILL] * 2
    assert all(f"erasure {request_id}: started" in victim.log_tail() for victim in killed)
    # The kills hit work in progress: each service had erased part of the records, not all.
    for done, left in after_kill:
        assert done > 0 and left > 0, (at_kill, after_kill)
    assert unfinished is not None and unfinished["state"] == "started"
    assert after == before
    assert {holder.split("/")[0] for holder in await holders(database, key)} <= KEY_KEPT_IN
    analytics_record = finished["analytics_erasures"]
    assert analytics_record is not None
    assert analytics_record["removed"] == {"stored_responses_answers": 4}
    notifier_record = finished["notifier_erasures"]
    assert notifier_record is not None and notifier_record["state"] == "done"
    # Three pilots' deliveries and the confirmation request's.
    assert notifier_record["removed"]["deliveries_sent"] == 4
