"""Scale-out as operators run it: 3 analytics and 2 notifier processes share the work, one of
each is killed with SIGKILL while it has work in flight, and still every aggregate is exact and
every matching focal point gets each pilot's email exactly once. Each kill is shown to hit work
in progress: the notifier holds a claimed delivery it has not sent, the analytics process has
applied records beyond its group's committed offsets (tests/work_in_progress.py).

The randomness is seeded; the seed is printed (`pytest -s`) and `SCALE_OUT_SEED=<seed>`
replays a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.analytics.store import AnalyticsStore
from shared import mongo
from shared.kafka import consumer_lag, ensure_topics, topics_with_dlq
from shared.mongo import Document
from shared.taxonomy import load_taxonomy
from tests.recount import CITIES, assert_api_exact, with_focal_points
from tests.support import (
    Mailbox,
    ServiceProcess,
    Stack,
    assert_clean_exit,
    eventually,
    produce,
    run_service_command,
    start_service,
)
from tests.work_in_progress import Catcher

pytestmark = [pytest.mark.e2e, pytest.mark.fault]

ANALYTICS, NOTIFIERS = 3, 2
UNIQUE, COPIES, CHUNK = 2000, 400, 80
FOCAL_POINT_SHARE = 0.12
DELIVERIES = "notifier_deliveries"  # the notifier's collection of delivery records
FOCAL_POINTS = "notifier_focal_points"  # its registry: the address of each key
WAIT = 240.0  # seconds: generous, the machine is shared


@dataclass
class Fleet:
    """The service processes of one test; what is still running at the end is killed."""

    environment: dict[str, str]
    log_dir: Path
    database: AsyncDatabase[Document]
    analytics: list[ServiceProcess] = field(default_factory=list)
    notifiers: list[ServiceProcess] = field(default_factory=list)
    killed: list[ServiceProcess] = field(default_factory=list)

    def kill(self, process: ServiceProcess) -> None:
        """SIGKILL: no shutdown, no commit, no goodbye to the group."""
        process.process.send_signal(signal.SIGKILL)
        process.process.wait(timeout=10)
        self.killed.append(process)
        (self.analytics if process.name == "analytics" else self.notifiers).remove(process)

    def survivors(self) -> list[ServiceProcess]:
        """The processes still meant to run."""
        return [*self.analytics, *self.notifiers]


@pytest.fixture
async def fleet(stack: Stack, run_id: str, tmp_path: Path) -> AsyncIterator[Fleet]:
    environment = {
        **stack.environment(run_id),
        # Slow enough that each notifier holds a claimed delivery most of the time, while it
        # waits for the send rate (work in flight when it is killed); fast enough for a short test.
        "SEND_RATE_PER_SECOND": "2",
        # The killed notifier's delivery is taken over after this, instead of the default 60 s.
        "SEND_LEASE_SECONDS": "10",
        "ANALYTICS_BATCH_SIZE": "200",
        # Applied but uncommitted work lasts a moment longer than on its own, as in the
        # analytics chaos tests: each batch then leaves the catcher a window of 0.3 s at least,
        # instead of the few milliseconds between applying and committing.
        "ANALYTICS_COMMIT_DELAY_SECONDS": "0.3",
        # About scale-out and killed processes, not consent: no confirmation step
        # (double opt-in: tests/integration/test_notifier_consent.py).
        "DOUBLE_OPT_IN": "false",
    }
    # Topics first, so that every process joins its group on the same 6 partitions.
    await ensure_topics(
        stack.kafka, topics_with_dlq(environment["TOPIC_RESPONSES"], environment["TOPIC_PILOTS"])
    )
    client = mongo.new_client(stack.mongodb_url)
    fleet = Fleet(environment, tmp_path, mongo.database(client, environment["MONGODB_DATABASE"]))
    try:
        yield fleet
    finally:
        for process in fleet.survivors():
            if process.process.poll() is None:
                process.process.send_signal(signal.SIGKILL)
                process.process.wait(timeout=10)
        await client.drop_database(environment["MONGODB_DATABASE"])
        await client.close()


def responses(rng: random.Random, run_id: str) -> list[dict[str, Any]]:
    """`UNIQUE` responses, some with a focal point of their own address (most consenting)."""
    return with_focal_points(
        rng,
        f"generic:scale-{run_id}",
        UNIQUE,
        FOCAL_POINT_SHARE,
        run_id,
        languages=("en", "fr", "es", "ar", "zh", "ru"),
        consenting=0.8,
    )


def with_copies(rng: random.Random, originals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The originals in order, and `COPIES` exact re-sends of some of them at later points."""
    placed = [(float(index), 0, body) for index, body in enumerate(originals)]
    for copy in range(1, COPIES + 1):
        index = rng.randrange(len(originals))
        placed.append((rng.uniform(index + 0.5, len(originals)), copy, originals[index]))
    return [body for *_, body in sorted(placed, key=lambda p: (p[0], p[1]))]


def pilots(rng: random.Random, run_id: str) -> list[dict[str, Any]]:
    """Three open pilots of a few themes and SDGs; the second for every country (announced to a
    registry that has caught up, it makes the largest burst of deliveries), the others for some."""
    taxonomy = load_taxonomy()
    return [
        {
            "pilot_id": f"pilot-{run_id}-{number}",
            "title": f"Scale-out pilot pilot-{run_id}-{number}",
            "summary": "Co-financed demonstration.",
            "themes": rng.sample(sorted(taxonomy.themes), 3),
            "sdgs": rng.sample(sorted(taxonomy.sdgs), 2),
            "eligible_countries": [] if number == 2 else rng.sample(sorted(CITIES), 3),
            "lead_agency": "UNOSSC",
            "apply_by": "2099-12-31",
            "url": f"https://example.org/pilots/{number}",
        }
        for number in (1, 2, 3)
    ]


def expected_emails(
    bodies: list[dict[str, Any]], announced: list[dict[str, Any]]
) -> set[tuple[str, str]]:
    """(pilot id, address) of every email due, worked out here from what the test sends."""
    due = set()
    for body in bodies:
        person = body.get("focal_point")
        if person is None or not person["consent"]:
            continue
        codes = {*body["collaboration_interests"], *body["development_priorities"]}
        for pilot in announced:
            countries = pilot["eligible_countries"]
            if countries and body["respondent"]["country"] not in countries:
                continue
            if codes & {*pilot["themes"], *pilot["sdgs"]}:
                due.add((pilot["pilot_id"], person["email"]))
    return due


async def address_of(fleet: Fleet, email_key: str) -> str:
    """The address the registry holds for a delivery's key."""
    record = await fleet.database[FOCAL_POINTS].find_one({"_id": email_key})
    assert record is not None, email_key
    return str(record["email"])


async def kill_notifier_holding_a_delivery(
    fleet: Fleet, mailbox: Mailbox, rng: random.Random
) -> int:
    """SIGKILL a notifier while it holds a claimed delivery it has not sent; the tries it took.

    A notifier holds one delivery at a time (no digest window), so with the chosen one frozen
    (SIGSTOP), as many deliveries `sending` as notifiers means one of them is its own. It is not
    killed while one of them is already in the mailbox: that is the instant between the SMTP
    server's reply and the record, which no order of steps closes (see the notifier's
    `deliveries` module), and a repeat then is the documented exception, not what this proves.
    """
    deliveries = fleet.database[DELIVERIES]

    async def sending() -> list[Document]:
        return [d async for d in deliveries.find({"state": "sending"})]

    for tries in range(1, 50):
        await eventually(sending, lambda held: len(held) >= NOTIFIERS, within=WAIT, interval=0.02)
        victim = rng.choice(fleet.notifiers)
        victim.process.send_signal(signal.SIGSTOP)
        held = await sending()
        received = [
            message
            for delivery in held
            for address in [await address_of(fleet, delivery["email_key"])]
            for message in await mailbox.messages_to(address)
            if message["To"][0]["Address"] == address and delivery["pilot_id"] in message["Subject"]
        ]
        if len(held) >= NOTIFIERS and not received:
            fleet.kill(victim)
            return tries
        victim.process.send_signal(signal.SIGCONT)
        print(f"try {tries}: {len(held)} deliveries sending, {len(received)} already received")
    raise AssertionError("never caught a notifier holding an unsent delivery")


async def drained(stack: Stack, group: str, topic: str) -> None:
    """Wait until `group` has committed every record of `topic`."""

    async def lag() -> int:
        return await consumer_lag(stack.kafka, group, topic)

    await eventually(lag, lambda n: n == 0, within=WAIT, interval=1.0)


async def start_all(fleet: Fleet) -> None:
    for _ in range(ANALYTICS):
        fleet.analytics.append(start_service("analytics", fleet.environment, fleet.log_dir))
    for _ in range(NOTIFIERS):
        fleet.notifiers.append(start_service("notifier", fleet.environment, fleet.log_dir))
    for process in fleet.survivors():
        await asyncio.to_thread(process.wait_ready, 120.0)


@pytest.mark.timeout(600)
async def test_scale_out_with_sigkill_counts_exactly_and_emails_once(
    stack: Stack, fleet: Fleet, run_id: str
) -> None:
    seed = int(os.environ.get("SCALE_OUT_SEED", random.SystemRandom().randrange(2**32)))
    print(f"SCALE_OUT_SEED={seed}")
    rng = random.Random(seed)
    originals = responses(rng, run_id)
    records = with_copies(rng, originals)
    announced = pilots(rng, run_id)
    due = expected_emails(originals, announced)
    environment = fleet.environment
    topic, group = environment["TOPIC_RESPONSES"], environment["ANALYTICS_GROUP_ID"]
    pilots_topic = environment["TOPIC_PILOTS"]
    started = time.monotonic()
    await start_all(fleet)

    chunks = [records[i : i + CHUNK] for i in range(0, len(records), CHUNK)]
    half = len(chunks) // 2
    # Pilots at a quarter, a half and three quarters of the responses: focal points register
    # both before and after each pilot.
    announce_at = {len(chunks) * k // 4: pilot for k, pilot in enumerate(announced, 1)}
    deliveries = fleet.database[DELIVERIES]
    notifier_group = environment["NOTIFIER_GROUP_ID"]
    produced, kills = 0, []
    for index, chunk in enumerate(chunks):
        if index == half:
            # The second pilot goes to a registry that has caught up, so that it makes a burst
            # of deliveries: both notifiers then hold one while they wait for the send rate.
            await drained(stack, f"{notifier_group}.registry", topic)
        if index in announce_at:
            pilot = announce_at[index]
            value = json.dumps(pilot).encode()
            await produce(stack.kafka, pilots_topic, [(pilot["pilot_id"].encode(), value)])
        if index == half:
            tries = await kill_notifier_holding_a_delivery(fleet, Mailbox(stack.mail_api), rng)
            kills.append(f"a notifier holding a delivery (try {tries}) at record {produced}")
        await produce(
            stack.kafka,
            topic,
            [(body["response_id"].encode(), json.dumps(body).encode()) for body in chunk],
        )
        produced += len(chunk)
        # An analytics process killed at the first moment it holds applied but uncommitted work
        # (looked for while the responses keep coming).
        if index == half:
            victim = rng.choice(fleet.analytics)
            catcher = Catcher(stack.kafka, group, topic, AnalyticsStore(fleet.database))
            catching = asyncio.create_task(catcher.catch(victim, within=WAIT))
        await asyncio.sleep(0.2)
    caught = await catching
    fleet.killed.append(victim)
    fleet.analytics.remove(victim)
    kills.append(f"an analytics {caught}")
    assert caught.held and all(a >= c for a, c in caught.held.values()), caught
    assert len(fleet.killed) == 2, kills
    print(f"killed {' and '.join(kills)} of {len(records)}, {time.monotonic() - started:.0f}s in")

    # Everything read and committed by the survivors, every due email sent.
    killed_after = time.monotonic()
    for consumer_group, consumed in [
        (group, topic),
        (f"{notifier_group}.registry", topic),
        (f"{notifier_group}.pilots", pilots_topic),
    ]:
        await drained(stack, consumer_group, consumed)
    states = await eventually(
        lambda: deliveries.distinct("state"),
        lambda s: set(s) == {"sent"},
        within=WAIT,
        interval=1.0,
    )
    assert states == ["sent"]
    # The delivery the killed notifier held was sent by the other one, after the lease.
    taken_over = await deliveries.count_documents({"attempts": {"$gte": 2}})
    assert taken_over >= 1
    print(f"survivors finished {time.monotonic() - killed_after:.0f}s after the kills")

    # Each (pilot, matching focal point) exactly one email; nobody else any.
    messages = await Mailbox(stack.mail_api).messages_of_run(run_id)
    sent = Counter(
        (pilot["pilot_id"], message["To"][0]["Address"])
        for message in messages
        for pilot in announced
        if pilot["pilot_id"] in message["Subject"]
    )
    assert sent.total() == len(messages), "a message names no pilot, or several"
    assert [pair for pair, n in sent.items() if n > 1] == [], "sent more than once"
    assert set(sent) == due, (sorted(due - set(sent))[:10], sorted(set(sent) - due)[:10])

    # Aggregates: no drift, and the API's numbers equal the recount of the unique responses.
    verify = await asyncio.to_thread(run_service_command, "analytics", "verify", environment)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "no drift" in verify.stdout
    # Overall and per survey, unfiltered and filtered, against counts made here from `originals`.
    await assert_api_exact(fleet.environment, fleet.analytics[0], records, rng)

    survivors = fleet.survivors()
    codes = await asyncio.gather(*(asyncio.to_thread(p.terminate) for p in survivors))
    for process, code in zip(survivors, codes, strict=True):
        assert_clean_exit(process, code)
    print(
        f"exact: {len(originals)} unique responses of {len(records)} records, "
        f"{len(due)} emails to {len({a for _, a in due})} focal points, "
        f"{taken_over} deliveries taken over, {time.monotonic() - started:.0f}s"
    )
