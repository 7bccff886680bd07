"""Which local-stack servers a test session found running (and so must leave running)."""

from __future__ import annotations

from tests.conftest import running_servers


def test_parse_status_running_and_starting_servers_are_not_ours() -> None:
    output = (
        "[stack] kafka     running   pid 7458    127.0.0.1:9092 (controller 127.0.0.1:9093)\n"
        "[stack] ferretdb  stopped\n"
        "[stack] mailpit   starting  pid 7495    not listening on all its ports yet; see x\n"
    )
    assert running_servers(output) == {"kafka", "mailpit"}


def test_parse_status_nothing_running_is_empty() -> None:
    output = "[stack] kafka     stopped\n[stack] ferretdb  stopped\n[stack] mailpit   stopped\n"
    assert running_servers(output) == set()
