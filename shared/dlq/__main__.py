"""`python -m shared.dlq show|replay --topic <topic>.dlq`: inspect dead letters, replay them.

show     every message of the topic: where it came from, the error, whether it was replayed
replay   publish the messages not replayed yet to their source topic (`--dry-run`: list them)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.dlq import (
    COMMIT_EVERY,
    DEFAULT_GROUP,
    DeadLetter,
    DeadLetterTopic,
    DeadLetterTopicError,
    replay_broker,
)
from shared.kafka_security import KafkaSecurity, kafka_security
from shared.settings import ServiceSettings

console = Console()


def main(argv: list[str] | None = None) -> int:
    """Run the chosen command; exit 0 when it did what was asked, 2 on a bad topic."""
    parser = argparse.ArgumentParser(
        prog="python -m shared.dlq",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=("show", "replay"))
    parser.add_argument("--topic", required=True, help="e.g. survey.responses.v1.dlq")
    parser.add_argument("--limit", type=int, default=None, help="at most this many messages")
    parser.add_argument("--dry-run", action="store_true", help="replay: list, publish nothing")
    parser.add_argument("--json", action="store_true", help="show: one JSON object per line")
    parser.add_argument(
        "--group", default=DEFAULT_GROUP, help=f"replay consumer group (default {DEFAULT_GROUP})"
    )
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    settings = ServiceSettings()
    bootstrap, security = settings.kafka_bootstrap_servers, kafka_security(settings)
    try:
        if args.command == "show":
            asyncio.run(
                show(
                    bootstrap,
                    args.topic,
                    args.group,
                    args.limit,
                    as_json=args.json,
                    security=security,
                )
            )
        else:
            asyncio.run(
                replay(
                    bootstrap, args.topic, args.group, args.limit, args.dry_run, security=security
                )
            )
    except DeadLetterTopicError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    return 0


async def show(
    bootstrap: str,
    topic: str,
    group: str,
    limit: int | None,
    *,
    as_json: bool,
    security: KafkaSecurity | None = None,
) -> None:
    """Print the messages of `topic`, oldest first in each partition."""
    async with DeadLetterTopic(bootstrap, topic, group, security=security) as dlq:
        letters = [letter async for letter in dlq.read(everything=True, limit=limit)]
        pending = dlq.pending
    if as_json:
        for letter in letters:
            print(json.dumps(as_dict(letter), ensure_ascii=False))
        return
    table = Table("partition:offset", "key", "source", "reason", "error", "replayed", "value")
    for letter in letters:
        table.add_row(
            f"{letter.partition}:{letter.offset}",
            text(letter.key),
            origin(letter),
            " ".join(filter(None, (letter.reason, letter.group and f"({letter.group})"))),
            letter.error[:200],
            "yes" if letter.replayed else "no",
            text(letter.value)[:120],
        )
    console.print(table)
    console.print(f"{len(letters)} shown; {pending} not replayed by group {group!r}")


async def replay(
    bootstrap: str,
    topic: str,
    group: str,
    limit: int | None,
    dry_run: bool,
    *,
    security: KafkaSecurity | None = None,
) -> None:
    """Publish what `group` has not replayed yet, with a progress bar and a summary."""
    by_topic: Counter[str] = Counter()
    async with DeadLetterTopic(bootstrap, topic, group, security=security) as dlq:
        total = dlq.pending if limit is None else min(limit, dlq.pending)
        broker = None if dry_run else await replay_broker(bootstrap, security=security)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        try:
            with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
                task = progress.add_task("dry run" if dry_run else "replaying", total=total)
                async for letter in dlq.read(everything=False, limit=limit):
                    if broker is None:
                        progress.console.print(f"would replay {describe(letter)}")
                    else:
                        await dlq.replay(letter, broker)
                    by_topic[letter.source_topic] += 1
                    progress.advance(task)
                    if broker is not None and by_topic.total() % COMMIT_EVERY == 0:
                        await dlq.commit()
        finally:
            if broker is not None:
                await dlq.commit()  # what was published, also when a publish failed
                await broker.stop()
        left = dlq.pending
    done = by_topic.total()
    verb = "would replay" if dry_run else "replayed"
    targets = ", ".join(f"{n} to {name}" for name, n in sorted(by_topic.items())) or "nothing"
    console.print(f"{verb} {done} of {topic}: {targets}; {left} not replayed by group {group!r}")


def describe(letter: DeadLetter) -> str:
    """One line: position, key, destination and error."""
    where = f"{letter.partition}:{letter.offset} key={text(letter.key)}"
    why = f"{letter.reason}: " if letter.reason else ""
    return f"{where} -> {letter.source_topic}: {why}{letter.error}"


def origin(letter: DeadLetter) -> str:
    """Where the message was read before it was parked: `topic[partition]@offset`."""
    where = letter.source
    if "partition" in where and "offset" in where:
        return f"{letter.source_topic}[{where['partition']}]@{where['offset']}"
    return letter.source_topic


def as_dict(letter: DeadLetter) -> dict[str, object]:
    """The message as JSON-ready values."""
    return {
        "partition": letter.partition,
        "offset": letter.offset,
        "key": text(letter.key),
        "source": letter.source or {"topic": letter.source_topic},
        "reason": letter.reason,
        "group": letter.group,
        "error": letter.error,
        "replayed": letter.replayed,
        "value": text(letter.value),
    }


def text(data: bytes | None) -> str:
    """Bytes as text, undecodable ones replaced (a poison message may be anything)."""
    return (data or b"").decode(errors="replace")


if __name__ == "__main__":
    sys.exit(main())
