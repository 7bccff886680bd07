"""SMTP failures against a real SMTP server scripted to answer each code: which kind each one
is, what the notifier does with it (a refused recipient fails that delivery; a failure of the
connection, the login or the server as a whole pauses sending and fails nothing), and the
overall deadline of a send.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from services.notifier.app import create_app
from services.notifier.emails import Outgoing
from services.notifier.failures import Kind, Stage
from services.notifier.mailer import Mailer, MailFailure
from services.notifier.settings import NotifierSettings
from tests.integration.notifier_support import (
    addresses,
    focal_response,
    notifier_settings,
    pilot,
    records,
)
from tests.integration.smtp_support import (
    PASSWORD,
    USERNAME,
    Scripted,
    ScriptedController,
    removed_afterwards,
    scripted_server,
)
from tests.support import (
    OPERATOR,
    OPERATOR_TOKEN,
    Stack,
    eventually,
    free_port,
    metric,
    produce,
    serving,
)

pytestmark = pytest.mark.integration
SENDER = "pilots@cities.example.org"


def outgoing(recipient: str, n: int = 1) -> Outgoing:
    message_id = f"<{n}.test@cities.example.org>"
    data = f"Message-ID: {message_id}\r\nSubject: test\r\n\r\nHello\r\n".encode()
    return Outgoing(sender=SENDER, recipient=recipient, message_id=message_id, data=data)


@pytest.fixture
def handler() -> Scripted:
    return Scripted()


@pytest.fixture
def server(handler: Scripted) -> Iterator[ScriptedController]:
    with scripted_server(handler) as controller:
        yield controller


@pytest.fixture
async def mailer(server: ScriptedController) -> AsyncIterator[Mailer]:
    subject = Mailer(server.hostname, server.port, username=USERNAME, password=PASSWORD)
    yield subject
    await subject.close(grace=1)


TO = "focal.point@example.org"

SCENARIOS = [
    # (what the server does, kind, stage, text of the reply in the reason)
    ({"greeting": "554 5.3.2 No SMTP service here"}, Kind.SERVER, Stage.CONNECT, "554"),
    ({"greeting": "421 4.3.2 Shutting down"}, Kind.SERVER, Stage.CONNECT, "421"),
    ({"auth": "535 5.7.8 Authentication credentials invalid"}, Kind.LOGIN, Stage.LOGIN, "535"),
    ({"auth": "534 5.7.9 Authentication mechanism is too weak"}, Kind.LOGIN, Stage.LOGIN, "534"),
    ({"auth": "454 4.7.0 Temporary authentication failure"}, Kind.LOGIN, Stage.LOGIN, "454"),
    ({"mail": "530 5.7.0 Authentication required"}, Kind.LOGIN, Stage.MAIL, "530"),
    ({"mail": "554 5.7.1 Sender address rejected"}, Kind.SERVER, Stage.MAIL, "554"),
    ({"mail": "451 4.3.0 Mail server temporarily rejected"}, Kind.SERVER, Stage.MAIL, "451"),
    ({"mail": "421 4.7.0 Too many connections"}, Kind.SERVER, Stage.MAIL, "421"),
    ({"rcpt": {TO: "550 5.1.1 No such user"}}, Kind.RECIPIENT_REFUSED, Stage.RCPT, "550"),
    ({"rcpt": {TO: "451 4.7.1 Greylisted"}}, Kind.RECIPIENT_DEFERRED, Stage.RCPT, "451"),
    ({"rcpt": {TO: "421 4.3.2 Going down"}}, Kind.SERVER, Stage.RCPT, "421"),
    ({"data": {TO: "554 5.7.1 Message refused"}}, Kind.MESSAGE_REFUSED, Stage.DATA, "554"),
    ({"data": {TO: "452 4.3.1 Out of storage"}}, Kind.MESSAGE_DEFERRED, Stage.DATA, "452"),
]


@pytest.mark.parametrize(("script", "kind", "stage", "code"), SCENARIOS)
async def test_send_scripted_refusal_classified_then_recovers(
    handler: Scripted, mailer: Mailer, script: dict[str, Any], kind: Kind, stage: Stage, code: str
) -> None:
    for name, value in script.items():
        setattr(handler.script, name, value)

    with pytest.raises(MailFailure) as caught:
        await mailer.send(outgoing(TO, 1))
    handler.script.fix()
    await mailer.send(outgoing(TO, 2))

    assert (caught.value.kind, caught.value.stage) == (kind, stage)
    assert code in str(caught.value)
    assert [a.message_id for a in handler.copies(TO)] == ["<2.test@cities.example.org>"]


async def test_send_nothing_listening_connection_failure() -> None:
    mailer = Mailer("127.0.0.1", free_port())

    with pytest.raises(MailFailure) as caught:
        await mailer.send(outgoing(TO))

    assert (caught.value.kind, caught.value.stage) == (Kind.CONNECTION, Stage.CONNECT)
    assert "ConnectError" in str(caught.value)


async def test_send_login_not_offered_login_failure(handler: Scripted) -> None:
    with scripted_server(handler, login=False) as server:
        mailer = Mailer(server.hostname, server.port, username=USERNAME, password=PASSWORD)
        with pytest.raises(MailFailure) as caught:
            await mailer.send(outgoing(TO))

    assert (caught.value.kind, caught.value.stage) == (Kind.LOGIN, Stage.LOGIN)
    assert "AUTH" in str(caught.value)
    assert handler.accepted == []


async def test_send_after_refused_recipient_same_connection(
    handler: Scripted, mailer: Mailer
) -> None:
    handler.script.rcpt["gone@example.org"] = "550 5.1.1 No such user"
    await mailer.send(outgoing("first@example.org", 1))
    with pytest.raises(MailFailure):
        await mailer.send(outgoing("gone@example.org", 2))
    await mailer.send(outgoing("third@example.org", 3))

    peers = {a.peer for a in handler.accepted}
    assert handler.count() == Counter({"first@example.org": 1, "third@example.org": 1})
    assert len(peers) == 1  # RSET ended the refused transaction; the connection went on
    assert handler.logins == 1


async def test_send_idle_connection_closed_by_server_reopened_once(handler: Scripted) -> None:
    with scripted_server(handler, idle_timeout=0.3) as server:
        mailer = Mailer(server.hostname, server.port)
        try:
            await mailer.send(outgoing("first@example.org", 1))
            await asyncio.sleep(1.0)  # the server closes the connection after 0.3 s idle
            await mailer.send(outgoing("second@example.org", 2))
        finally:
            await mailer.close(grace=1)

    assert handler.count() == Counter({"first@example.org": 1, "second@example.org": 1})
    assert len({a.peer for a in handler.accepted}) == 2


async def test_send_slow_replies_deadline_before_data_nothing_sent(
    handler: Scripted, server: ScriptedController
) -> None:
    # Every reply comes within the reply timeout, but together they outlast the deadline.
    handler.script.delay = 0.4
    mailer = Mailer(server.hostname, server.port, timeout=5, deadline=0.6)
    try:
        with pytest.raises(MailFailure) as caught:
            await mailer.send(outgoing(TO))
    finally:
        await mailer.close(grace=1)

    assert (caught.value.kind, caught.value.stage) == (Kind.DEADLINE, Stage.RCPT)
    assert "deadline of 0.6s" in str(caught.value)
    assert handler.accepted == []


async def test_send_deadline_after_data_unconfirmed_server_has_message(
    handler: Scripted, server: ScriptedController
) -> None:
    # The one window: the server took the message and answers too late.
    handler.script.slow_data_once[TO] = 2.0
    mailer = Mailer(server.hostname, server.port, timeout=5, deadline=1)
    try:
        with pytest.raises(MailFailure) as caught:
            await mailer.send(outgoing(TO))
    finally:
        await mailer.close(grace=1)

    assert (caught.value.kind, caught.value.stage) == (Kind.UNCONFIRMED, Stage.DATA)
    assert len(handler.copies(TO)) == 1


# The dispatcher against the scripted server: the full service in this process.


@pytest.fixture
def settings(stack: Stack, run_id: str, server: ScriptedController) -> NotifierSettings:
    return notifier_settings(
        stack,
        run_id,
        smtp_host=server.hostname,
        smtp_port=server.port,
        smtp_username=USERNAME,
        smtp_password=PASSWORD,
        smtp_timeout_seconds=2,
        operator_token=OPERATOR_TOKEN,
        retry_first_delay_seconds=0.2,
        retry_max_delay_seconds=1.0,
        send_rate_per_second=0,
        # About SMTP failures, not consent: no confirmation step (test_notifier_consent.py).
        double_opt_in=False,
    )


@pytest.fixture
async def isolated(stack: Stack, run_id: str) -> AsyncIterator[None]:
    async with removed_afterwards(stack, run_id):
        yield


async def register(stack: Stack, settings: NotifierSettings, emails: list[str]) -> None:
    responses = (
        focal_response(n, email, interests=["climate-resilience"]) for n, email in enumerate(emails)
    )
    await produce(stack.kafka, settings.topic_responses, records(*responses))


async def deliveries(client: httpx.AsyncClient, pilot_id: str) -> dict[str, Any]:
    answer = await client.get("/v1/deliveries", params={"pilot_id": pilot_id}, headers=OPERATOR)
    return dict(answer.json())


SERVER_FAILURES = [
    pytest.param({"greeting": "554 5.3.2 No SMTP service here"}, Kind.SERVER, id="greeting-554"),
    pytest.param({"auth": "535 5.7.8 Bad credentials"}, Kind.LOGIN, id="login-535"),
    pytest.param({"mail": "530 5.7.0 Authentication required"}, Kind.LOGIN, id="mail-530"),
    pytest.param({"mail": "554 5.7.1 Sender rejected"}, Kind.SERVER, id="mail-554"),
    pytest.param({"greeting": "421 4.3.2 Try later"}, Kind.SERVER, id="greeting-421"),
]


@pytest.mark.parametrize(("script", "kind"), SERVER_FAILURES)
async def test_dispatcher_server_failure_pauses_fails_nothing_then_sends_all(
    stack: Stack,
    settings: NotifierSettings,
    run_id: str,
    handler: Scripted,
    isolated: None,
    caplog: pytest.LogCaptureFixture,
    script: dict[str, Any],
    kind: Kind,
) -> None:
    people = addresses(run_id, "paused", 4)
    await register(stack, settings, people)
    for name, value in script.items():
        setattr(handler.script, name, value)
    announced = pilot(f"pilot-{run_id}")

    caplog.set_level(logging.INFO, logger="services.notifier.health")
    async with serving(create_app(settings)) as client:
        failures_before = metric(
            (await client.get("/metrics")).text, "notifier_smtp_failures_total", kind=kind
        )
        await produce(stack.kafka, settings.topic_pilots, records(announced))
        # Several tries while the server refuses: the dispatcher pauses between them.
        paused = await eventually(
            lambda: client.get("/metrics"),
            lambda answer: (
                metric(answer.text, "notifier_smtp_failures_total", kind=kind)
                >= failures_before + 4
            ),
            within=60,
        )
        while_refused = await deliveries(client, announced.pilot_id)
        handler.script.fix()
        done = await eventually(
            lambda: deliveries(client, announced.pilot_id),
            lambda d: d["counts"] == {"sent": 4},
            within=60,
        )
        after = (await client.get("/metrics")).text

    assert metric(paused.text, "notifier_smtp_paused") == 1.0
    assert metric(after, "notifier_smtp_paused") == 0.0
    assert len(while_refused["deliveries"]) == 4
    assert set(while_refused["counts"]) <= {"pending", "sending"}, while_refused["counts"]
    # The refusals met deliveries in progress: tried, and put back for after the pause.
    tried = [d for d in while_refused["deliveries"] if d["attempts"] >= 1 and d["last_error"]]
    assert tried and all(d["last_error"].startswith(kind) for d in tried), tried
    assert all(d["state"] != "failed" for d in done["deliveries"])
    assert handler.count() == Counter({address: 1 for address in people})
    lines = [r.getMessage() for r in caplog.records if r.name == "services.notifier.health"]
    pauses = [line for line in lines if line.startswith("SMTP sending paused")]
    assert len(pauses) == 1, lines  # one line per state change, not one per try
    assert pauses[0].startswith(f"SMTP sending paused: {kind}")
    assert sum(line.startswith("SMTP sending resumed") for line in lines) == 1, lines


async def test_dispatcher_refused_recipient_and_message_fail_only_those(
    stack: Stack,
    settings: NotifierSettings,
    run_id: str,
    handler: Scripted,
    isolated: None,
) -> None:
    good = addresses(run_id, "good", 3)
    no_mailbox, refused_message = addresses(run_id, "refused", 2)
    handler.script.rcpt[no_mailbox] = "550 5.1.1 No such mailbox"
    handler.script.data[refused_message] = "554 5.7.1 Message refused by policy"
    await register(stack, settings, [*good, no_mailbox, refused_message])
    announced = pilot(f"pilot-{run_id}")

    async with serving(create_app(settings)) as client:
        await produce(stack.kafka, settings.topic_pilots, records(announced))
        done = await eventually(
            lambda: deliveries(client, announced.pilot_id),
            lambda d: d["counts"] == {"sent": 3, "failed": 2},
            within=60,
        )
        after = (await client.get("/metrics")).text

    keys = settings.email_keys()  # deliveries name people by the keyed hash
    by_address = {
        address: d
        for d in done["deliveries"]
        for address in (no_mailbox, refused_message)
        if d["focal_point"] == keys.key(address)
    }
    assert "550 5.1.1 No such mailbox" in by_address[no_mailbox]["last_error"]
    assert "recipient_refused" in by_address[no_mailbox]["last_error"]
    assert "554 5.7.1 Message refused by policy" in by_address[refused_message]["last_error"]
    assert by_address[no_mailbox]["attempts"] == by_address[refused_message]["attempts"] == 1
    assert handler.count() == Counter({address: 1 for address in good})
    assert metric(after, "notifier_smtp_paused") == 0.0
