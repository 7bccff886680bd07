"""SMTP over TLS against a real TLS server (aiosmtpd with a certificate authority and a server
certificate made for these tests): implicit TLS and STARTTLS deliver, and a server that cannot
prove who it is, or offers no STARTTLS, gets nothing (no fallback to plain text)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest

from services.notifier.app import create_app
from services.notifier.emails import Outgoing
from services.notifier.failures import Kind, Stage
from services.notifier.mailer import Mailer, MailFailure
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
    TlsFiles,
    removed_afterwards,
    scripted_server,
    tls_files,
)
from tests.support import Stack, eventually, produce, serving

pytestmark = pytest.mark.integration
TO = "focal.point@example.org"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return tls_files(tmp_path_factory.mktemp("tls"))


def outgoing(recipient: str = TO) -> Outgoing:
    data = b"Message-ID: <tls.test@cities.example.org>\r\nSubject: test\r\n\r\nHello\r\n"
    return Outgoing("pilots@cities.example.org", recipient, "<tls.test@cities.example.org>", data)


async def send_once(mailer: Mailer) -> None:
    try:
        await mailer.send(outgoing())
    finally:
        await mailer.close(grace=1)


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
async def test_send_tls_verified_with_ca_file_delivered_encrypted(tls: TlsFiles, mode: str) -> None:
    handler = Scripted()
    context = tls.server_context()
    server_tls = {"implicit_tls": context} if mode == "implicit" else {"starttls": context}
    with scripted_server(handler, **server_tls) as server:
        mailer = Mailer(
            "localhost",
            server.port,
            username=USERNAME,
            password=PASSWORD,
            implicit_tls=mode == "implicit",
            starttls=mode == "starttls",
            ca_file=str(tls.ca),
        )
        await send_once(mailer)

    [accepted] = handler.accepted
    assert accepted.recipient == TO
    assert accepted.tls
    assert handler.logins == 1


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
async def test_send_tls_unknown_authority_refused_nothing_sent(tls: TlsFiles, mode: str) -> None:
    handler = Scripted()
    context = tls.server_context()
    server_tls = {"implicit_tls": context} if mode == "implicit" else {"starttls": context}
    with scripted_server(handler, **server_tls) as server:
        # The system's authorities do not know the test's CA.
        mailer = Mailer(
            "localhost",
            server.port,
            username=USERNAME,
            password=PASSWORD,
            implicit_tls=mode == "implicit",
            starttls=mode == "starttls",
        )
        with pytest.raises(MailFailure) as caught:
            await send_once(mailer)

    assert (caught.value.kind, caught.value.stage) == (Kind.CONNECTION, Stage.CONNECT)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert handler.accepted == []
    assert handler.logins == 0  # the password never went out


async def test_send_tls_wrong_host_name_refused(tls: TlsFiles) -> None:
    # Signed by the authority the client trusts, but for another name than the one it dials.
    other = tls.issue("other", "DNS:smtp.example.org")
    handler = Scripted()
    with scripted_server(handler, implicit_tls=other.server_context()) as server:
        mailer = Mailer("localhost", server.port, implicit_tls=True, ca_file=str(tls.ca))
        with pytest.raises(MailFailure) as caught:
            await send_once(mailer)

    assert (caught.value.kind, caught.value.stage) == (Kind.CONNECTION, Stage.CONNECT)
    assert "Hostname mismatch" in str(caught.value)
    assert handler.accepted == []


async def test_send_starttls_not_offered_nothing_sent_in_clear(tls: TlsFiles) -> None:
    handler = Scripted()
    with scripted_server(handler) as server:  # plain SMTP, no STARTTLS offered
        mailer = Mailer(
            "localhost",
            server.port,
            username=USERNAME,
            password=PASSWORD,
            starttls=True,
            ca_file=str(tls.ca),
        )
        with pytest.raises(MailFailure) as caught:
            await send_once(mailer)

    assert (caught.value.kind, caught.value.stage) == (Kind.CONNECTION, Stage.CONNECT)
    assert "STARTTLS" in str(caught.value)
    assert handler.accepted == []
    assert handler.logins == 0


@pytest.fixture
async def isolated(stack: Stack, run_id: str) -> AsyncIterator[None]:
    async with removed_afterwards(stack, run_id):
        yield


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
async def test_notifier_tls_settings_pilot_emails_encrypted(
    stack: Stack, run_id: str, tls: TlsFiles, isolated: None, mode: str
) -> None:
    people = addresses(run_id, f"tls-{mode}", 3)
    handler = Scripted()
    context = tls.server_context()
    server_tls = {"implicit_tls": context} if mode == "implicit" else {"starttls": context}
    with scripted_server(handler, **server_tls) as server:
        settings = notifier_settings(
            stack,
            run_id,
            smtp_host="localhost",
            smtp_port=server.port,
            smtp_username=USERNAME,
            smtp_password=PASSWORD,
            smtp_implicit_tls=mode == "implicit",
            smtp_starttls=mode == "starttls",
            smtp_ca_file=str(tls.ca),
            send_rate_per_second=0,
            # About SMTP over TLS, not consent: no confirmation step (test_notifier_consent.py).
            double_opt_in=False,
        )
        responses = [
            focal_response(n, email, interests=["climate-resilience"])
            for n, email in enumerate(people)
        ]
        await produce(stack.kafka, settings.topic_responses, records(*responses))
        async with serving(create_app(settings)):
            await produce(stack.kafka, settings.topic_pilots, records(pilot(f"p-{run_id}")))
            await eventually(handler.counted, lambda counts: len(counts) == 3, within=60)

    assert handler.count() == Counter({address: 1 for address in people})
    assert all(accepted.tls for accepted in handler.accepted)
