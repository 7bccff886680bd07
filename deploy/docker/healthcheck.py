"""The image's health check: GET a path of the service this container runs; 0 when it answers 200.

`python /app/healthcheck.py [/healthz|/readyz]`. The service is read from the container's main
command (`python -m services.<name>`), its port from `<NAME>_PORT` (the service's own setting) or
the contract's default, so one image and one check serve all three services.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_PORTS = {"intake": 8000, "analytics": 8001, "notifier": 8002}


def service_of(command: Sequence[str]) -> str:
    """The service a command line runs, e.g. `python -m services.analytics serve` -> analytics."""
    for word in command:
        for name in DEFAULT_PORTS:
            if word == f"services.{name}":
                return name
    raise ValueError(f"not a service command: {' '.join(command)!r}")


def port_of(service: str, environment: Mapping[str, str]) -> int:
    """The HTTP port the service listens on, as its settings read it."""
    return int(environment.get(f"{service.upper()}_PORT", DEFAULT_PORTS[service]))


def main_command(proc: Path = Path("/proc/1/cmdline")) -> list[str]:
    """The container's main command (PID 1, or the child of an init such as `docker-init`)."""
    return [word for word in proc.read_bytes().decode().split("\0") if word]


def check(url: str, timeout: float = 3.0) -> bool:
    """True when `url` answers 200 in time."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(argv: Sequence[str]) -> int:
    """0 healthy, 1 not (what Docker's HEALTHCHECK expects)."""
    path = argv[0] if argv else "/healthz"
    try:
        service = service_of(main_command())
    except (OSError, ValueError) as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    url = f"http://127.0.0.1:{port_of(service, os.environ)}{path}"
    if check(url):
        return 0
    print(f"healthcheck: {url} did not answer 200", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
