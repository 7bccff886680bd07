"""Delivery guarantees against an SMTP server of the test's own: down, slow, refusing, and a
sender killed mid-send.

The shared SMTP server is never stopped: each test runs an aiosmtpd server on a free port that it
starts, holds and stops itself, and counts what that server accepted.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from shared.kafka import consumer_lag
from tests.integration.notifier_support import (
    CLIENT_TIMEOUT,
    Recorder,
    addresses,
    focal_response,
    notifier_settings,
    pilot,
    records,
)
from tests.support import (
    OPERATOR,
    OPERATOR_TOKEN,
    Stack,
    eventually,
    free_port,
    produce,
    serving,
    start_service,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def smtp_server(recorder: Recorder, smtp_port: int) -> Iterator[Controller]:
    """Not started: each test decides when its server is up."""
    controller = Controller(recorder, hostname="127.0.0.1", port=smtp_port)
    yield controller
    recorder.release.set()
    if getattr(controller, "_thread", None) is not None:
        controller.stop()


@pytest.fixture
def settings(stack: Stack, run_id: str, smtp_port: int) -> NotifierSettings:
    return notifier_settings(
        stack,
        run_id,
        smtp_port=smtp_port,
        smtp_timeout_seconds=CLIENT_TIMEOUT,
        operator_token=OPERATOR_TOKEN,
        retry_first_delay_seconds=0.2,
        retry_max_delay_seconds=1.0,
        send_rate_per_second=0,
        # About delivery guarantees, not consent: no confirmation step (test_notifier_consent.py).
        double_opt_in=False,
    )


async def register(stack: Stack, settings: NotifierSettings, emails: list[str]) -> None:
    await produce(
        stack.kafka,
        settings.topic_responses,
        records(
            *(
                focal_response(n, email, interests=["climate-resilience"])
                for n, email in enumerate(emails)
            )
        ),
    )


async def test_smtp_down_then_up_each_focal_point_one_email(
    stack: Stack,
    settings: NotifierSettings,
    run_id: str,
    recorder: Recorder,
    smtp_server: Controller,
) -> None:
    good = addresses(run_id, "good", 4)
    deferred, slow, refused = (f"{k}-{run_id}@example.org" for k in ("deferred", "slow", "refused"))
    recorder.defer_once.add(deferred)
    recorder.slow_once.add(slow)
    recorder.refuse.add(refused)
    await register(stack, settings, [*good, deferred, slow, refused])
    announced = pilot(f"pilot-{run_id}")

    async with serving(create_app(settings)) as client:

        async def deliveries() -> dict[str, Any]:
            answer = await client.get(
                "/v1/deliveries", params={"pilot_id": announced.pilot_id}, headers=OPERATOR
            )
            return dict(answer.json())

        await produce(stack.kafka, settings.topic_pilots, records(announced))
        # While the server is down, every delivery is tried and put back for later.
        while_down = await eventually(
            deliveries,
            lambda d: (
                len(d["deliveries"]) == 7 and all(x["attempts"] >= 2 for x in d["deliveries"])
            ),
            within=60,
        )
        await asyncio.to_thread(smtp_server.start)
        done = await eventually(
            deliveries, lambda d: d["counts"] == {"sent": 6, "failed": 1}, within=60
        )

    assert set(while_down["counts"]) <= {"pending", "sending"}
    assert all("ConnectError" in str(d["last_error"]) for d in while_down["deliveries"])
    assert recorder.count() == Counter({address: 1 for address in [*good, deferred, slow]})
    keys = settings.email_keys()  # deliveries name people by the keyed hash
    by_address = {d["focal_point"]: d for d in done["deliveries"]}
    assert by_address[keys.key(refused)]["state"] == "failed"
    assert "550" in by_address[keys.key(refused)]["last_error"]
    assert "451" in by_address[keys.key(deferred)]["last_error"]
    assert "Timeout" in by_address[keys.key(slow)]["last_error"]


async def test_dispatcher_one_connection_for_many_messages(
    stack: Stack,
    settings: NotifierSettings,
    run_id: str,
    recorder: Recorder,
    smtp_server: Controller,
) -> None:
    people = addresses(run_id, "many", 12)
    await register(stack, settings, people)
    smtp_server.start()
    async with serving(create_app(settings)):
        await produce(stack.kafka, settings.topic_pilots, records(pilot(f"pilot-{run_id}")))
        await eventually(recorder.counted, lambda c: len(c) == 12)

    assert recorder.count() == Counter({address: 1 for address in people})
    assert len(recorder.peers) == 1


async def test_replica_without_dispatcher_creates_deliveries_and_sends_none(
    stack: Stack,
    settings: NotifierSettings,
    run_id: str,
    recorder: Recorder,
    smtp_server: Controller,
) -> None:
    people = addresses(run_id, "split", 3)
    await register(stack, settings, people)
    announced = pilot(f"pilot-{run_id}")
    smtp_server.start()
    consumers_only = settings.model_copy(update={"dispatcher_enabled": False})
    async with serving(create_app(consumers_only)) as client:
        await produce(stack.kafka, settings.topic_pilots, records(announced))
        created = await eventually(
            lambda: client.get(
                "/v1/deliveries", params={"pilot_id": announced.pilot_id}, headers=OPERATOR
            ),
            lambda answer: answer.json()["counts"] == {"pending": 3},
        )
        # A dispatcher polls every 0.1 s here: twenty polls would have sent them all.
        await asyncio.sleep(2.0)
        unsent = recorder.count()
    # The replicas that send pick up what the consumers created.
    async with serving(create_app(settings)):
        await eventually(recorder.counted, lambda c: len(c) == 3)

    assert created.json()["counts"] == {"pending": 3}
    assert unsent == Counter()
    assert recorder.count() == Counter({address: 1 for address in people})


async def test_pilot_replayed_sends_nothing_twice(
    stack: Stack,
    settings: NotifierSettings,
    run_id: str,
    recorder: Recorder,
    smtp_server: Controller,
) -> None:
    people = addresses(run_id, "replay", 5)
    await register(stack, settings, people)
    announced = pilot(f"pilot-{run_id}")
    smtp_server.start()
    # The same pilot twice (a redelivery), read by one consumer group ...
    await produce(stack.kafka, settings.topic_pilots, records(announced, announced))
    async with serving(create_app(settings)):
        await eventually(recorder.counted, lambda c: len(c) == 5)
    # ... then the whole topics again by a new group, as after an offset reset or a new deployment.
    replay = settings.model_copy(update={"notifier_group_id": f"replay-{run_id}"})
    async with serving(create_app(replay)) as client:
        for topic, suffix in (
            (replay.topic_responses, "registry"),
            (replay.topic_pilots, "pilots"),
        ):
            group = f"{replay.notifier_group_id}.{suffix}"
            await eventually(
                lambda t=topic, g=group: consumer_lag(stack.kafka, g, t), lambda n: n == 0
            )
        answer = await client.get(
            "/v1/deliveries", params={"pilot_id": announced.pilot_id}, headers=OPERATOR
        )

    assert answer.json()["counts"] == {"sent": 5}
    assert recorder.count() == Counter({address: 1 for address in people})


async def test_replica_killed_mid_send_at_most_one_email_each(
    stack: Stack,
    run_id: str,
    recorder: Recorder,
    smtp_server: Controller,
    smtp_port: int,
    settings: NotifierSettings,
    tmp_path: Path,
) -> None:
    people = addresses(run_id, "killed", 40)
    await register(stack, settings, people)
    environment = {
        **stack.environment(run_id),
        "SMTP_PORT": str(smtp_port),
        "OPERATOR_TOKEN": OPERATOR_TOKEN,
        "SEND_LEASE_SECONDS": "2",
        "POLL_INTERVAL_SECONDS": "0.2",
        "RETRY_FIRST_DELAY_SECONDS": "0.2",
        "SEND_RATE_PER_SECOND": "0",
        "LOG_LEVEL": "WARNING",
        "DOUBLE_OPT_IN": "false",  # about a killed sender, not consent (as `settings`)
    }
    # The 15th message is held by the server: its sender is killed while waiting for the reply.
    recorder.hold_at = 15
    smtp_server.start()
    first = start_service("notifier", environment, tmp_path)
    try:
        await asyncio.to_thread(first.wait_ready)
        await produce(stack.kafka, settings.topic_pilots, records(pilot(f"pilot-{run_id}")))
        assert await asyncio.to_thread(recorder.holding.wait, 60), first.log_tail()
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    finally:
        if first.process.poll() is None:
            first.process.kill()
    before_restart = recorder.count()
    recorder.release.set()

    second = start_service("notifier", environment, tmp_path)
    try:
        await asyncio.to_thread(second.wait_ready)

        async def counts() -> dict[str, int]:
            async with httpx.AsyncClient(base_url=second.url, headers=OPERATOR) as client:
                answer = await client.get("/v1/deliveries", params={"pilot_id": f"pilot-{run_id}"})
                return dict(answer.json()["counts"])

        done = await eventually(counts, lambda c: c == {"sent": 40}, within=90)
    finally:
        second.terminate()

    assert first.process.returncode == -signal.SIGKILL
    assert len(before_restart) == 14  # the killed replica had sent 14 and held the 15th
    assert done == {"sent": 40}
    assert recorder.count() == Counter({address: 1 for address in people})
