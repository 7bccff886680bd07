"""A Kafka broker of one test's own, to stop and restart without touching the shared one.

Locally it is a single-node KRaft broker run from the jars the local stack fetched
(`$STACK_DIR/kafka/libs`, default `.stack/kafka/libs`), configured from the stack's own
`deploy/local/kafka/server.properties` on free ports, with its data under the test's `tmp_path`:
a restart keeps the data directory, so topics and acknowledged records survive it. Where there
are no such jars (a stack from the environment or from testcontainers), a testcontainers Kafka
is paused and unpaused instead, which clients see as a broker that stopped answering.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any, Protocol

from tests.private_servers import Restartable, ServerProcess
from tests.support import REPO, free_port

TEMPLATE = REPO / "deploy" / "local" / "kafka"
STARTED_LINE = "Kafka Server started"
# ApiVersions v0 with correlation id 42: any broker that serves requests answers it.
API_VERSIONS = b"\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x2a\xff\xff"


class Broker(Restartable, Protocol):
    """A broker that a test may take away and bring back."""

    bootstrap: str


def local_kafka_libs() -> Path | None:
    """The local stack's Kafka jars, if they were fetched."""
    libs = Path(os.environ.get("STACK_DIR", REPO / ".stack")) / "kafka" / "libs"
    return libs if any(libs.glob("kafka_*.jar")) else None


def answers_api_versions(port: int) -> bool:
    """The broker on `port` serves requests (an open port alone is not enough)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.settimeout(3)
            conn.sendall(API_VERSIONS)
            reply = conn.recv(8)
    except OSError:
        return False
    return len(reply) == 8 and reply[4:8] == b"\x00\x00\x00\x2a"


class LocalBroker(ServerProcess):
    """A single-node KRaft broker process on free ports, its data in `directory`."""

    name = "Kafka"

    def __init__(self, libs: Path, directory: Path) -> None:
        super().__init__(directory / "logs" / "kafka.out")  # the console; kafka.log the log
        self.libs = libs
        self.directory = directory
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.config = directory / "server.properties"
        self.kafka_log = directory / "logs" / "kafka.log"
        self._render_config()
        self._java(
            # One argument with `=`: an id may start with `-`, which alone reads as an option.
            [
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id()}",
                "-c",
                str(self.config),
                *self._format_options(),
            ]
        )

    def _format_options(self) -> list[str]:
        """More `StorageTool format` options (a subclass adds SCRAM credentials)."""
        return []

    def _serves_clients(self) -> bool:
        """The broker answers requests (a subclass with TLS-only listeners asks otherwise)."""
        return answers_api_versions(self.port)

    def _render_config(self) -> None:
        text = (TEMPLATE / "server.properties").read_text()
        text = (
            text.replace("@LOG_DIRS@", str(self.directory / "data"))
            .replace("127.0.0.1:9093", f"127.0.0.1:{self.controller_port}")
            .replace("127.0.0.1:9092", f"127.0.0.1:{self.port}")
        )
        self.config.write_text(text)

    def _command(self, arguments: list[str]) -> list[str]:
        return [
            "java",
            "-Xms256m",
            "-Xmx256m",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={TEMPLATE / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.kafka_log.parent}",
            "-cp",
            f"{self.libs}/*",
            *arguments,
        ]

    def _java(self, arguments: list[str]) -> None:
        done = subprocess.run(self._command(arguments), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"{arguments[0]} failed:\n{done.stdout}\n{done.stderr}")

    def _started_lines(self) -> int:
        if not self.kafka_log.exists():
            return 0
        return self.kafka_log.read_text(errors="replace").count(STARTED_LINE)

    def command(self) -> list[str]:
        """The broker's command line, as the local stack runs it."""
        return self._command(["kafka.Kafka", str(self.config)])

    def start(self) -> None:
        """Start the broker on its ports and wait until it logged its start and serves clients."""
        before = self._started_lines()
        self.launch(lambda: self._started_lines() > before and self._serves_clients())

    def log_tail(self) -> str:
        """The end of the broker's log, for failure messages."""
        log = self.kafka_log
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""


class PausedContainerBroker:
    """A testcontainers Kafka whose outage is a paused container."""

    def __init__(self) -> None:
        from testcontainers.community.kafka import KafkaContainer

        self._container: Any = KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft()
        self._container.start()
        self.bootstrap: str = self._container.get_bootstrap_server()
        self._paused = False

    def start(self) -> None:
        """Unpause the container."""
        if self._paused:
            self._container.get_wrapped_container().unpause()
            self._paused = False

    def stop(self) -> None:
        """Pause the container: connections stay open but nothing answers."""
        self._container.get_wrapped_container().pause()
        self._paused = True

    def close(self) -> None:
        """Remove the container."""
        self.start()
        self._container.stop()


def cluster_id() -> str:
    """A KRaft cluster id: a random UUID in Kafka's URL-safe base64 form."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def private_broker(directory: Path) -> Broker:
    """A broker of the test's own, running: local jars if fetched, else a Docker container."""
    libs = local_kafka_libs()
    if libs is not None:
        broker: Broker = LocalBroker(libs, directory)
    elif os.environ.get("TEST_STACK") == "containers":
        broker = PausedContainerBroker()
    else:
        raise AssertionError(
            "a private Kafka broker needs the local stack's jars (`make stack-up` fetches them "
            "into .stack/kafka/libs, or set STACK_DIR) or TEST_STACK=containers with Docker"
        )
    broker.start()
    return broker
