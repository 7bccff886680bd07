"""For the notifier's SMTP tests: a real SMTP server (aiosmtpd, over TCP, in a thread of the
test process) that answers what each test scripts (a refused greeting, login, sender, recipient
or message, slow replies, a hook on the moment it has accepted a message), optionally over
implicit TLS or STARTTLS with a certificate made for the test (`tls_files`); and the removal of
a test's topics and database.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

from shared import mongo
from tests.support import Stack, free_port

USERNAME, PASSWORD = "pilots@cities.example.org", "smtp-test-password"


@dataclass
class Accepted:
    """A message the server took responsibility for."""

    recipient: str
    message_id: str
    peer: Any
    tls: bool


@dataclass
class Script:
    """What the server answers; tests change it while the server runs (`fix()` clears it).

    `greeting`, `auth`, `mail`: the reply instead of 220 (then the connection is closed), of
    235 to any login, of 250 to MAIL. `rcpt`, `data`: replies by recipient address; a `data`
    reply is given after the message was received and not kept (unless `keep_refused`).
    `delay`: seconds before each reply to MAIL, RCPT and DATA. `slow_data_once`: recipients whose
    first message is kept and answered 250 only after that many seconds (the client may have
    given up). `on_accept`: called (in the server's thread) after a message is kept, before
    the 250 is sent.
    """

    greeting: str | None = None
    auth: str | None = None
    mail: str | None = None
    rcpt: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    slow_data_once: dict[str, float] = field(default_factory=dict)
    on_accept: Callable[[Accepted], None] | None = None

    def fix(self) -> None:
        """The server is well again."""
        self.greeting = self.auth = self.mail = None
        self.rcpt.clear()
        self.data.clear()
        self.delay = 0.0


class Scripted:
    """The aiosmtpd handler: follows its `Script` and keeps what it accepted."""

    def __init__(self) -> None:
        self.script = Script()
        self.accepted: list[Accepted] = []
        self.logins = 0
        self.lock = threading.Lock()

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await asyncio.sleep(self.script.delay)
        if self.script.mail:
            return self.script.mail
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await asyncio.sleep(self.script.delay)
        if address in self.script.rcpt:
            return self.script.rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.script.delay)
        [recipient] = envelope.rcpt_tos
        if recipient in self.script.data:
            return self.script.data[recipient]
        message_id = str(message_from_bytes(envelope.content)["Message-ID"])
        tls = server.transport.get_extra_info("ssl_object") is not None
        accepted = Accepted(recipient, message_id, session.peer, tls)
        with self.lock:
            self.accepted.append(accepted)
        if self.script.on_accept is not None:
            self.script.on_accept(accepted)
        slow = self.script.slow_data_once.pop(recipient, 0.0)
        if slow:
            await asyncio.sleep(slow)
        return "250 2.0.0 Message accepted"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """aiosmtpd's authenticator: the scripted refusal, else the test's credentials."""
        self.logins += 1
        if self.script.auth:
            return AuthResult(success=False, handled=False, message=self.script.auth)
        good = (auth_data.login, auth_data.password) == (USERNAME.encode(), PASSWORD.encode())
        return AuthResult(success=good)

    def count(self) -> Counter[str]:
        """Messages accepted per recipient."""
        with self.lock:
            return Counter(a.recipient for a in self.accepted)

    async def counted(self) -> Counter[str]:
        """The same, as a probe for `eventually`."""
        return self.count()

    def copies(self, recipient: str) -> list[Accepted]:
        """Every message accepted for `recipient`."""
        with self.lock:
            return [a for a in self.accepted if a.recipient == recipient]


class ScriptedSMTP(SMTP):
    """aiosmtpd's server with a greeting that can be scripted."""

    async def _handle_client(self) -> None:
        reply = self.event_handler.script.greeting
        if reply:
            await self.push(reply)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()


class ScriptedController(Controller):
    """Runs a `ScriptedSMTP` server in its own thread on a free port of 127.0.0.1."""

    def factory(self) -> SMTP:
        return ScriptedSMTP(self.handler, **self.SMTP_kwargs)


@contextmanager
def scripted_server(
    handler: Scripted,
    *,
    implicit_tls: ssl.SSLContext | None = None,
    starttls: ssl.SSLContext | None = None,
    idle_timeout: float = 300,
    login: bool = True,
) -> Iterator[ScriptedController]:
    """A running scripted server, stopped afterwards; it offers a login (also without TLS)
    unless `login` is false, then only after STARTTLS."""
    controller = ScriptedController(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        ssl_context=implicit_tls,
        tls_context=starttls,
        require_starttls=starttls is not None,
        authenticator=handler.authenticate,
        # Without TLS, aiosmtpd offers AUTH only when it does not require TLS for it.
        auth_require_tls=not login,
        timeout=idle_timeout,
    )
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@dataclass(frozen=True)
class TlsFiles:
    """A certificate authority made for one test, and a server certificate it signed."""

    ca: Path
    certificate: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """The server's side."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certificate, self.key)
        return context

    def issue(self, stem: str, names: str) -> TlsFiles:
        """Another server certificate from the same authority, for `names` (subjectAltName)."""
        directory = self.ca.parent
        _openssl(
            directory,
            *("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{stem}.key"),
            *("-out", f"{stem}.csr", "-subj", f"/CN={stem}"),
        )
        (directory / f"{stem}.ext").write_text(
            f"subjectAltName={names}\n"
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
        )
        _openssl(
            directory,
            *("x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
            *("-CAcreateserial", "-days", "2", "-out", f"{stem}.pem", "-extfile", f"{stem}.ext"),
        )
        return TlsFiles(self.ca, directory / f"{stem}.pem", directory / f"{stem}.key")


def tls_files(directory: Path) -> TlsFiles:
    """Make a CA and a certificate for 127.0.0.1 and localhost with the `openssl` command."""
    _openssl(
        directory,
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
        *("-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=Cities test CA"),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )
    authority = TlsFiles(directory / "ca.pem", directory / "ca.pem", directory / "ca.key")
    return authority.issue("server", "DNS:localhost,IP:127.0.0.1")


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


@asynccontextmanager
async def removed_afterwards(stack: Stack, run_id: str) -> AsyncIterator[None]:
    """Delete the test's topics (and their DLQs) and drop its database at the end."""
    try:
        yield
    finally:
        environment = stack.environment(run_id)
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            names = [environment["TOPIC_RESPONSES"], environment["TOPIC_PILOTS"]]
            mine = [t for name in names for t in (name, f"{name}.dlq") if t in existing]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()
        client = mongo.new_client(stack.mongodb_url)
        await client.drop_database(environment["MONGODB_DATABASE"])
        await client.close()
