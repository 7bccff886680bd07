"""The one fixture that provides the real stack (Kafka, MongoDB-wire server, SMTP server).

Where it comes from, in order:
1. the environment: `KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URL`, `SMTP_HOST`/`SMTP_PORT` (and
   `MAILPIT_API_URL`, default `http://<SMTP_HOST>:8025`), when `KAFKA_BOOTSTRAP_SERVERS` is set;
2. testcontainers (official Kafka, MongoDB and Mailpit images), when `TEST_STACK=containers`
   and a Docker engine answers;
3. else the local Docker-less stack (`deploy/local/stack.sh`), started here and stopped again
   at the end if this run started it.

Unit tests never ask for it, so `pytest tests/unit` needs no server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from shared import mongo
from shared.mongo import Document
from tests.private_broker import Broker, private_broker
from tests.support import Stack, delete_topics

REPO = Path(__file__).resolve().parent.parent
STACK_SCRIPT = REPO / "deploy" / "local" / "stack.sh"


def _from_environment() -> Stack | None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        return None
    smtp_host = os.environ.get("SMTP_HOST", "localhost")
    return Stack(
        kafka=bootstrap,
        mongodb_url=os.environ.get("MONGODB_URL", "mongodb://localhost:27017"),
        smtp_host=smtp_host,
        smtp_port=int(os.environ.get("SMTP_PORT", "1025")),
        mail_api=os.environ.get("MAILPIT_API_URL", f"http://{smtp_host}:8025"),
    )


@contextmanager
def _from_containers() -> Iterator[Stack]:
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.mailpit import MailpitContainer
    from testcontainers.community.mongodb import MongoDbContainer

    with ExitStack() as containers:
        kafka = containers.enter_context(KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft())
        mongo = containers.enter_context(MongoDbContainer("mongo:8"))
        mail = containers.enter_context(MailpitContainer())
        host = mail.get_container_host_ip()
        yield Stack(
            kafka=kafka.get_bootstrap_server(),
            mongodb_url=mongo.get_connection_url(),
            smtp_host=host,
            smtp_port=int(mail.get_exposed_smtp_port()),
            mail_api=f"http://{host}:{mail.get_exposed_port(mail.ui_port)}",
        )


def _docker_available() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


SERVERS = ("kafka", "ferretdb", "mailpit")


def running_servers(status_output: str) -> set[str]:
    """The servers `stack.sh status` reports running (one line per server)."""
    running = set()
    for line in status_output.splitlines():
        words = line.removeprefix("[stack]").split()
        # A server still starting was started by someone else too.
        if len(words) >= 2 and words[0] in SERVERS and words[1] in ("running", "starting"):
            running.add(words[0])
    return running


def _stack(*arguments: str, check: bool) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(STACK_SCRIPT), *arguments], capture_output=not check, text=True, check=check
    )


@contextmanager
def _local_stack() -> Iterator[Stack]:
    # Only the servers that were down before are this session's to stop: a server somebody else
    # started (another session, `make up`) keeps running, even when some others were down.
    before = running_servers(_stack("status", check=False).stdout)
    started = [name for name in SERVERS if name not in before]
    if started:
        _stack("up", check=True)
    try:
        yield Stack(
            kafka="127.0.0.1:9092",
            mongodb_url="mongodb://127.0.0.1:27017",
            smtp_host="127.0.0.1",
            smtp_port=1025,
            mail_api="http://127.0.0.1:8025",
        )
    finally:
        if started:
            _stack("down", *started, check=False)


# Modules whose every test sends hostile input (forged signatures, junk payloads, fuzzed bodies);
# `make reliability` counts them by category. A test elsewhere marks itself `pytest.mark.hostile`.
HOSTILE_MODULES = {
    "tests/unit/test_source_properties.py",
    "tests/unit/test_admission.py",
    "tests/integration/test_intake_admission.py",
    "tests/integration/test_consumers_hostile.py",
    "tests/unit/test_generic_source.py",
    "tests/unit/test_problem_http.py",
}


# Tests of other modules that take a server away or kill a process (the fault tests of their
# own modules are marked there); `make reliability` lists each fault survived.
FAULT_TESTS = {
    "tests/integration/test_intake_outage.py",
    "tests/integration/test_consumers_outage.py",
    "tests/integration/test_notifier_smtp_failures.py",
    "tests/integration/test_notifier_smtp_window.py",
    "tests/integration/test_intake.py::test_receive_webhook_kafka_down_503_then_accepted",
    "tests/integration/test_intake_platforms.py::test_receive_platform_webhook_mongodb_down_503",
    "tests/integration/test_intake_import.py::test_import_kafka_down_stops_with_exit_1",
    "tests/integration/test_analytics_maintenance.py::test_rebuild_after_crash_then_replay_counts_once",
    "tests/integration/test_notifier_delivery.py::test_smtp_down_then_up_each_focal_point_one_email",
    "tests/integration/test_notifier_delivery.py::test_replica_killed_mid_send_at_most_one_email_each",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of `HOSTILE_MODULES` `hostile` and those of `FAULT_TESTS` `fault`."""
    for item in items:
        module = Path(str(item.path)).relative_to(REPO).as_posix()
        if module in HOSTILE_MODULES:
            item.add_marker(pytest.mark.hostile)
        if module in FAULT_TESTS or f"{module}::{item.name.split('[')[0]}" in FAULT_TESTS:
            item.add_marker(pytest.mark.fault)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The real servers integration and end-to-end tests talk to."""
    from_env = _from_environment()
    if from_env is not None:
        yield from_env
        return
    if os.environ.get("TEST_STACK") == "containers":
        if not _docker_available():
            pytest.fail("TEST_STACK=containers but no Docker engine answers `docker info`")
        with _from_containers() as containers:
            yield containers
        return
    with _local_stack() as local:
        yield local


@pytest.fixture
def run_id() -> str:
    """A fresh suffix per test: its own topics, database and addresses."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def mongo_client(stack: Stack) -> AsyncIterator[AsyncMongoClient[Document]]:
    """A client of the stack's MongoDB-wire server (the test's database, `test_<run_id>`, is
    dropped by `remove_test_data`)."""
    client = mongo.new_client(stack.mongodb_url)
    yield client
    await client.close()


@pytest.fixture(autouse=True)
def remove_test_data(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test on the real stack, delete what is named after its `run_id`: the topics
    `test-<run_id>.*` (those it made and those its services made, DLQs included) and the
    database `test_<run_id>` (its own and its services')."""
    if not {"stack", "run_id"} <= set(request.fixturenames):
        yield
        return
    # Requested here, so that they outlive this fixture's teardown.
    stack: Stack = request.getfixturevalue("stack")
    run_id: str = request.getfixturevalue("run_id")
    yield
    with ThreadPoolExecutor(1) as thread:  # the test's event loop may still be open here
        thread.submit(asyncio.run, _remove_test_data(stack, run_id)).result(timeout=120)


async def _remove_test_data(stack: Stack, run_id: str) -> None:
    await delete_topics(stack.kafka, f"test-{run_id}.")
    client = mongo.new_client(stack.mongodb_url)
    try:
        await client.drop_database(f"test_{run_id}")
    finally:
        await client.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A Kafka broker of the test's own (tests/private_broker.py), to stop and start again
    without touching the shared one."""
    own = private_broker(tmp_path / "kafka")
    try:
        yield own
    finally:
        own.close()
