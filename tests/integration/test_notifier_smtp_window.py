"""The one window SMTP leaves (docs/operations.md, "Email delivery guarantees"): the server has
accepted a message but the delivery's record does not say `sent` yet. A test lands in it on
purpose, twice: a replica SIGKILLed after the server's 250 while its `sent` update is held on
the way to MongoDB, and a server that takes the message but answers after the send's deadline.
Each time exactly one more copy goes out, with the same Message-ID, and never a third.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.uri_parser import parse_uri

from services.notifier.app import create_app
from services.notifier.deliveries import DELIVERIES
from shared import mongo
from shared.kafka import consumer_lag
from shared.personal import EmailKeys
from tests.integration.notifier_support import (
    addresses,
    focal_response,
    notifier_settings,
    pilot,
    records,
)
from tests.integration.smtp_support import (
    Accepted,
    Scripted,
    removed_afterwards,
    scripted_server,
)
from tests.support import (
    OPERATOR,
    OPERATOR_TOKEN,
    Stack,
    eventually,
    produce,
    serving,
    start_service,
)

pytestmark = pytest.mark.integration


class HoldingProxy:
    """A TCP proxy in front of MongoDB that, once `hold` is set, forwards nothing more in either
    direction; `sent_update_held` is set when the notifier's `sent` update (the only write with
    a `message_id` field) is among what it holds back."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.hold = threading.Event()  # set from the SMTP server's thread
        self.sent_update_held = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, upstream_writer]
        await asyncio.gather(
            self._pipe(reader, upstream_writer, outbound=True),
            self._pipe(upstream_reader, writer, outbound=False),
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, outbound: bool
    ) -> None:
        held = b""
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if self.hold.is_set():
                    held += data
                    if outbound and b"message_id" in held:
                        self.sent_update_held.set()
                    continue
                writer.write(data)
                await writer.drain()
        writer.close()


def proxied_url(mongodb_url: str, port: int) -> str:
    """`mongodb_url` with the proxy in place of its server (credentials kept)."""
    parsed = parse_uri(mongodb_url)
    login = ""
    if parsed["username"]:
        login = f"{parsed['username']}:{parsed['password'] or ''}@"
    return f"mongodb://{login}127.0.0.1:{port}/?directConnection=true"


@pytest.fixture
async def isolated(stack: Stack, run_id: str) -> AsyncIterator[None]:
    async with removed_afterwards(stack, run_id):
        yield


async def register(stack: Stack, topic: str, people: list[str]) -> None:
    responses = (
        focal_response(n, email, interests=["climate-resilience"]) for n, email in enumerate(people)
    )
    await produce(stack.kafka, topic, records(*responses))


async def stored_state(stack: Stack, run_id: str, email: str) -> dict[str, Any]:
    """A delivery's record as MongoDB holds it, read behind the notifier's back."""
    client = mongo.new_client(stack.mongodb_url)
    try:
        collection = mongo.database(client, f"test_{run_id}")[DELIVERIES]
        key = EmailKeys(stack.environment(run_id)["EMAIL_KEY_SECRET"]).key(email)
        document = await collection.find_one({"email_key": key})
    finally:
        await client.close()
    assert document is not None
    return dict(document)


async def test_sigkill_after_server_accepted_before_sent_recorded_one_more_copy(
    stack: Stack, run_id: str, tmp_path: Path, isolated: None
) -> None:
    people = addresses(run_id, "window", 4)
    announced = pilot(f"pilot-{run_id}")
    [(host, port)] = parse_uri(stack.mongodb_url)["nodelist"]
    proxy = HoldingProxy(host, port)
    proxy_port = await proxy.start()
    handler = Scripted()
    in_window: list[Accepted] = []

    def second_message_opens_the_window(accepted: Accepted) -> None:
        # Called once the server has kept the message and before its 250 goes out: from now
        # on nothing the notifier writes reaches MongoDB.
        if len(handler.accepted) == 2:
            in_window.append(accepted)
            proxy.hold.set()

    handler.script.on_accept = second_message_opens_the_window
    with scripted_server(handler) as server:
        environment = {
            **stack.environment(run_id),
            "SMTP_HOST": server.hostname,
            "SMTP_PORT": str(server.port),
            "OPERATOR_TOKEN": OPERATOR_TOKEN,
            "SEND_LEASE_SECONDS": "2",
            "POLL_INTERVAL_SECONDS": "0.2",
            "RETRY_FIRST_DELAY_SECONDS": "0.2",
            "SEND_RATE_PER_SECOND": "0",
            "LOG_LEVEL": "WARNING",
            # About SMTP's window, not consent: no confirmation step (test_notifier_consent.py).
            "DOUBLE_OPT_IN": "false",
        }
        await register(stack, environment["TOPIC_RESPONSES"], people)
        first = start_service(
            "notifier",
            {**environment, "MONGODB_URL": proxied_url(stack.mongodb_url, proxy_port)},
            tmp_path,
        )
        try:
            await asyncio.to_thread(first.wait_ready)
            # Everyone registered first: the pilot then makes all four deliveries at once.
            registry = f"{environment['NOTIFIER_GROUP_ID']}.registry"
            await eventually(
                lambda: consumer_lag(stack.kafka, registry, environment["TOPIC_RESPONSES"]),
                lambda lag: lag == 0,
            )
            await produce(stack.kafka, environment["TOPIC_PILOTS"], records(announced))
            # The notifier got the 250 and is writing `sent`: killed right there.
            await asyncio.wait_for(proxy.sent_update_held.wait(), 60)
            first.process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(first.process.wait, 10)
        finally:
            if first.process.poll() is None:
                first.process.kill()
            await proxy.close()
        [window] = in_window
        at_kill = handler.count()
        record_at_kill = await stored_state(stack, run_id, window.recipient)

        second = start_service("notifier", environment, tmp_path)
        try:
            await asyncio.to_thread(second.wait_ready)

            async def counts() -> dict[str, int]:
                async with httpx.AsyncClient(base_url=second.url, headers=OPERATOR) as client:
                    answer = await client.get(
                        "/v1/deliveries", params={"pilot_id": announced.pilot_id}
                    )
                    return dict(answer.json()["counts"])

            done = await eventually(counts, lambda c: c == {"sent": 4}, within=90)
        finally:
            second.terminate()
        final_record = await stored_state(stack, run_id, window.recipient)

    assert first.process.returncode == -signal.SIGKILL
    # In the window: the server had the message, the record did not say `sent`.
    assert at_kill[window.recipient] == 1
    assert sum(at_kill.values()) == 2
    assert record_at_kill["state"] == "sending"
    assert done == {"sent": 4}
    # What the documentation promises: one more copy, the same Message-ID, nothing more.
    copies = handler.copies(window.recipient)
    assert len(copies) == 2
    assert copies[0].message_id == copies[1].message_id == final_record["message_id"]
    others = Counter({address: 1 for address in people if address != window.recipient})
    assert handler.count() - Counter({window.recipient: 2}) == others
    assert final_record["attempts"] == 2


async def test_deadline_after_data_one_more_copy_same_message_id(
    stack: Stack, run_id: str, isolated: None
) -> None:
    people = addresses(run_id, "late", 3)
    slow = people[0]
    announced = pilot(f"pilot-{run_id}")
    handler = Scripted()
    # The server keeps the first message to `slow` and answers 250 only after the deadline.
    handler.script.slow_data_once[slow] = 2.5
    with scripted_server(handler) as server:
        settings = notifier_settings(
            stack,
            run_id,
            smtp_host=server.hostname,
            smtp_port=server.port,
            smtp_timeout_seconds=5,
            smtp_send_deadline_seconds=1,
            operator_token=OPERATOR_TOKEN,
            # About the send deadline, not consent: no confirmation step.
            double_opt_in=False,
            retry_first_delay_seconds=0.2,
            retry_max_delay_seconds=1.0,
            send_rate_per_second=0,
        )
        await register(stack, settings.topic_responses, people)
        async with serving(create_app(settings)) as client:
            await produce(stack.kafka, settings.topic_pilots, records(announced))

            async def listing() -> dict[str, Any]:
                answer = await client.get(
                    "/v1/deliveries", params={"pilot_id": announced.pilot_id}, headers=OPERATOR
                )
                return dict(answer.json())

            done = await eventually(listing, lambda d: d["counts"] == {"sent": 3}, within=60)

    keys = settings.email_keys()
    by_address = {
        address: d
        for d in done["deliveries"]
        for address in people
        if d["focal_point"] == keys.key(address)
    }
    copies = handler.copies(slow)
    assert len(copies) == 2
    assert copies[0].message_id == copies[1].message_id == by_address[slow]["message_id"]
    assert by_address[slow]["attempts"] == 2
    assert "unconfirmed at data" in by_address[slow]["last_error"]
    assert handler.count() == Counter({slow: 2, people[1]: 1, people[2]: 1})
