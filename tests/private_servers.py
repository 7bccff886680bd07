"""Servers of one test's own, to kill and restart without touching the shared stack.

A fault test kills a server with SIGKILL (a crash: no shutdown, no flush) and starts it again on
the same ports and the same data directory, as a restarted machine would. Each server here runs
from the local stack's own build (`$STACK_DIR`, default `.stack`) on free ports, its data under
the test's `tmp_path`. Where that build is missing and `TEST_STACK=containers` is set, an official
image is paused and unpaused instead, which clients see as a server that stopped answering.

Kafka brokers are in `tests/private_broker.py`; both kinds share `ServerProcess`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tests.support import REPO, free_port

START_BOUND_SECONDS = 120.0  # a server starting on a busy 2-core machine


class Restartable(Protocol):
    """A server that a test may take away and bring back."""

    def start(self) -> None:
        """Start it (again) and return once it serves clients."""

    def stop(self) -> None:
        """Take it away at once, as a crash would."""

    def close(self) -> None:
        """Release everything it holds."""


def stack_dir() -> Path:
    """Where the local stack keeps its builds (`STACK_DIR`, default `.stack`)."""
    return Path(os.environ.get("STACK_DIR", REPO / ".stack"))


def port_answers(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


class ServerProcess:
    """One server process of a test: started in a session of its own (a Ctrl-C of the test run
    is not its to see), killed with SIGKILL, started again with the same command."""

    name = "server"

    def __init__(self, log: Path) -> None:
        self.log = log
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def command(self) -> list[str]:
        """The server's command line."""
        raise NotImplementedError

    def launch(self, ready: Callable[[], bool]) -> None:
        """Run `command()` and wait until `ready()` holds; fail with the log if it exits."""
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_BOUND_SECONDS
        while not ready():
            if self._process.poll() is not None:
                raise AssertionError(f"private {self.name} exited while starting:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"private {self.name} not up in {START_BOUND_SECONDS}s")
            time.sleep(0.1)
        self.starts += 1

    @property
    def pid(self) -> int | None:
        """The running process's id, if it runs."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def stop(self) -> None:
        """SIGKILL, as a crash or a lost machine: no controlled shutdown."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=30)
            self.kills += 1
        self._process = None

    def close(self) -> None:
        """Stop the server if it runs."""
        self.stop()

    def tail(self) -> str:
        """The end of the server's log, for failure messages."""
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


class LocalFerretDB(ServerProcess):
    """FerretDB (MongoDB wire protocol, SQLite) on a free port, its data in `directory`."""

    name = "FerretDB"

    def __init__(self, binary: Path, directory: Path) -> None:
        super().__init__(directory / "ferretdb.log")
        self.binary = binary
        self.data = directory / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"mongodb://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The local stack's command line (deploy/local/stack.sh), on this server's port."""
        return [str(self.binary), "-listen", f"127.0.0.1:{self.port}", "-data", str(self.data)]

    def start(self) -> None:
        """Start on the same port and data directory, and wait until it accepts connections."""
        self.launch(lambda: port_answers(self.port))


class PausedMongoContainer:
    """A testcontainers MongoDB whose outage is a paused container."""

    def __init__(self) -> None:
        from testcontainers.community.mongodb import MongoDbContainer

        self._container: Any = MongoDbContainer("mongo:8")
        self._container.start()
        self.url: str = self._container.get_connection_url()
        self._paused = False
        self.starts, self.kills = 1, 0

    def start(self) -> None:
        """Unpause the container."""
        if self._paused:
            self._container.get_wrapped_container().unpause()
            self._paused = False
            self.starts += 1

    def stop(self) -> None:
        """Pause the container: connections stay open but nothing answers."""
        self._container.get_wrapped_container().pause()
        self._paused = True
        self.kills += 1

    def close(self) -> None:
        """Remove the container."""
        self.start()
        self._container.stop()


class MongoServer(Restartable, Protocol):
    """A private MongoDB-wire server and its URL."""

    url: str
    starts: int
    kills: int


def private_mongodb(directory: Path) -> MongoServer:
    """A MongoDB-wire server of the test's own, running: the local stack's FerretDB build if
    there is one, else a Docker container."""
    binary = stack_dir() / "bin" / "ferretdb"
    if binary.exists():
        server: MongoServer = LocalFerretDB(binary, directory)
    elif os.environ.get("TEST_STACK") == "containers":
        server = PausedMongoContainer()
    else:
        raise AssertionError(
            "a private FerretDB needs the local stack's build (`make stack-up` builds it into "
            ".stack/bin, or set STACK_DIR) or TEST_STACK=containers with Docker"
        )
    server.start()
    return server
