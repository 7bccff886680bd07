"""`python -m shared.dlq`: dead letters parked by the consumers' own DLQ path, shown and
replayed to their source topic against the real broker, each exactly once per replay group."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest

from shared.kafka import ensure_topics, new_broker, send_to_dlq, topics_with_dlq
from tests.support import REPO, Stack, produce, read_topic

pytestmark = pytest.mark.integration

POISON = 5


async def dlq_command(stack: Stack, *args: str, exit_code: int = 0) -> str:
    """Run the operators' command, check its exit code; its output."""
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "shared.dlq", *args],
        cwd=REPO,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": stack.kafka, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == exit_code, output.decode()
    return output.decode()


@pytest.fixture
async def parked(stack: Stack, run_id: str) -> tuple[str, list[Any]]:
    """A source topic whose records were all parked on its DLQ by `send_to_dlq`."""
    source = f"test-{run_id}.survey.responses.v1"
    await ensure_topics(stack.kafka, topics_with_dlq(source), partitions=3)
    await produce(
        stack.kafka,
        source,
        [(f"r{n}".encode(), b'{"not": "a response", "n": %d}' % n) for n in range(POISON)],
    )
    records = await read_topic(stack.kafka, source, idle_seconds=2)
    broker = new_broker(stack.kafka, client_id="test-dlq")
    await broker.start()
    try:
        for record in records:
            await send_to_dlq(broker, record, f"invalid response {record.key.decode()}")
    finally:
        await broker.stop()
    return source, records


def replayed_copies(records: list[Any]) -> list[Any]:
    """The records a replay published (they name the dead letter they come from)."""
    return [r for r in records if any(name == "dlq-replayed-from" for name, _ in r.headers)]


async def test_replay_publishes_each_dead_letter_once_to_its_source_topic(
    stack: Stack, parked: tuple[str, list[Any]]
) -> None:
    source, originals = parked
    dlq = f"{source}.dlq"

    output = await dlq_command(stack, "replay", "--topic", dlq, "--limit", "2")
    assert f"replayed 2 of {dlq}: 2 to {source}; 3 not replayed" in output
    output = await dlq_command(stack, "replay", "--topic", dlq)
    assert f"replayed 3 of {dlq}: 3 to {source}; 0 not replayed" in output
    output = await dlq_command(stack, "replay", "--topic", dlq)
    assert "replayed 0" in output

    copies = replayed_copies(await read_topic(stack.kafka, source, idle_seconds=2))
    assert sorted((r.key, r.value) for r in copies) == sorted((r.key, r.value) for r in originals)
    origins = [json.loads(dict(r.headers)["dlq-replayed-from"]) for r in copies]
    assert {(o["topic"], o["partition"], o["offset"]) for o in origins} == {
        (dlq, r.partition, r.offset) for r in await read_topic(stack.kafka, dlq, idle_seconds=2)
    }


async def test_replay_dry_run_lists_and_publishes_nothing(
    stack: Stack, parked: tuple[str, list[Any]]
) -> None:
    source, originals = parked
    dlq = f"{source}.dlq"

    output = await dlq_command(stack, "replay", "--topic", dlq, "--dry-run")
    assert f"would replay {POISON} of {dlq}: {POISON} to {source}; {POISON} not replayed" in output
    assert all(f"key={r.key.decode()} -> {source}" in output for r in originals), output
    assert replayed_copies(await read_topic(stack.kafka, source, idle_seconds=2)) == []

    output = await dlq_command(stack, "replay", "--topic", dlq)
    assert f"replayed {POISON} of {dlq}" in output


async def test_show_lists_errors_sources_and_what_was_replayed(
    stack: Stack, parked: tuple[str, list[Any]]
) -> None:
    source, originals = parked
    dlq = f"{source}.dlq"
    await dlq_command(stack, "replay", "--topic", dlq, "--limit", "1")

    output = await dlq_command(stack, "show", "--topic", dlq, "--json")
    shown = [json.loads(line) for line in output.splitlines()]
    assert len(shown) == POISON
    by_key = {letter["key"]: letter for letter in shown}
    for record in originals:
        letter = by_key[record.key.decode()]
        assert letter["error"] == f"invalid response {record.key.decode()}"
        assert letter["source"] == {
            "topic": source,
            "partition": record.partition,
            "offset": record.offset,
        }
        assert letter["value"] == record.value.decode()
    assert sum(letter["replayed"] for letter in shown) == 1

    output = await dlq_command(stack, "show", "--topic", dlq)
    assert f"{POISON} shown; {POISON - 1} not replayed by group 'dlq-replay'" in output


@pytest.mark.parametrize("topic", ["no-such-topic.dlq", "survey.responses.v1"])
async def test_replay_refuses_a_missing_or_non_dlq_topic(
    stack: Stack, run_id: str, topic: str
) -> None:
    output = await dlq_command(stack, "replay", "--topic", f"test-{run_id}.{topic}", exit_code=2)
    assert "no topic" in output or "not a dead-letter topic" in output
