"""Proof that a SIGKILL hit an analytics process in the middle of its work, not an idle one.

An analytics process applies a batch (raw responses, then aggregate increments with per-partition
watermarks) and only then commits the batch's offsets. So a process holds *applied but
uncommitted* work exactly when, on a partition assigned to it, an aggregate document's watermark
(the last offset applied) is at or beyond the group's committed offset (the next one to read).

`Catcher.catch` looks again and again: it reads the process's assignment from its log, the
group's committed offsets and the watermarks, and kills it only when, on a partition it held at
this look and the one before, the watermark moved on between the two looks (the process applied
it: nobody else holds that partition) and is at or beyond the committed offset. A look that
finds this is repeated with the process frozen (SIGSTOP: it can neither apply nor commit
meanwhile); if it still holds, the SIGKILL lands on exactly that state, else the process goes on
(SIGCONT). It runs freely between looks, so that the looking does not starve it.

A replay by a second group applies nothing new (the first group did), so for it the committed
offset must have moved on and not yet reached the watermark: records read, applied before, not
all committed.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.analytics.audit import watermarks
from services.analytics.store import AnalyticsStore
from shared.kafka import consumer_lag
from tests.support import ServiceProcess

ASSIGNED = re.compile(r"(Setting newly assigned|Revoking previously assigned) partitions (.*?) for")
PARTITION = re.compile(r"partition=(\d+)")
STALLED_LOOKS = 20  # looks without progress of the process before it is given more work


@dataclass(frozen=True)
class Caught:
    """What a killed process held: per partition, (last offset applied, committed offset)."""

    process: str
    held: dict[int, tuple[int, int]]
    tries: int

    def __str__(self) -> str:
        shown = ", ".join(
            f"p{p} applied {a} committed {c}" for p, (a, c) in sorted(self.held.items())
        )
        return f"{self.process} holding {shown} (try {self.tries})"


def assigned_partitions(log: str, topic: str) -> set[int]:
    """The partitions of `topic` assigned to the process, from its consumer's last assignment
    line (aiokafka logs each one); none after a revocation that no assignment followed."""
    last: set[int] = set()
    for line in log.splitlines():
        if (found := ASSIGNED.search(line)) is None or topic not in line:
            continue
        revoked = found.group(1).startswith("Revoking")
        last = set() if revoked else {int(p) for p in PARTITION.findall(found.group(2))}
    return last


async def committed_offsets(
    admin: AIOKafkaAdminClient, group: str, partitions: list[TopicPartition]
) -> dict[int, int]:
    """The group's committed offset of each partition (0 where none is committed)."""
    committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    return {
        tp.partition: max(0, committed[tp].offset) if tp in committed else 0 for tp in partitions
    }


async def applied_offsets(store: AnalyticsStore) -> dict[int, int]:
    """The last offset applied of each partition, over every aggregate document."""
    applied: dict[int, int] = {}
    for document in (await store.aggregates()).values():
        for partition, offset in watermarks(document).items():
            applied[partition] = max(applied.get(partition, -1), offset)
    return applied


@dataclass
class Catcher:
    """Kills analytics processes of one consumer group only while they hold applied but
    uncommitted work."""

    bootstrap: str
    group: str
    topic: str
    store: AnalyticsStore
    replay: bool = False  # the group replays records another group applied

    async def catch(
        self,
        process: ServiceProcess,
        *,
        feed: Callable[[], Awaitable[None]] | None = None,
        within: float = 180.0,
    ) -> Caught:
        """SIGKILL `process` at a moment it holds applied but uncommitted work of its own. When
        the group has caught up before that moment came, `feed` gives it more work."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([self.topic])
            partitions = [
                TopicPartition(self.topic, e["partition"]) for e in described["partitions"]
            ]
            return await self._catch(process, admin, partitions, feed, within)
        finally:
            await admin.close()

    async def _catch(
        self,
        process: ServiceProcess,
        admin: AIOKafkaAdminClient,
        partitions: list[TopicPartition],
        feed: Callable[[], Awaitable[None]] | None,
        within: float,
    ) -> Caught:
        deadline = time.monotonic() + within
        before: Look | None = None
        tries = stalled = 0
        while True:
            tries += 1
            look = await self._look(process, admin, partitions)
            if before is not None and look.held_since(before, replay=self.replay):
                # Frozen, it can neither apply nor commit: what it holds at this look, it holds
                # when the SIGKILL lands.
                process.process.send_signal(signal.SIGSTOP)
                try:
                    look = await self._look(process, admin, partitions)
                except BaseException:
                    process.process.send_signal(signal.SIGCONT)
                    raise
                if held := look.held_since(before, replay=self.replay):
                    process.process.send_signal(signal.SIGKILL)
                    process.process.wait(timeout=10)
                    return Caught(process.log.name, held, tries)
                process.process.send_signal(signal.SIGCONT)
            # No progress of its own between looks: its partitions may all be read while the
            # group still lags elsewhere (a dead member's partitions wait for the rebalance).
            stalled = stalled + 1 if before is not None and look.same_progress(before) else 0
            before = look
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{process.log.name} never held applied but uncommitted work in {within}s "
                    f"({tries} looks)\n{process.log_tail()}"
                )
            idle = stalled >= STALLED_LOOKS or (tries % 5 == 0 and await self._caught_up())
            if feed is not None and idle:
                await feed()
                stalled = 0
            await asyncio.sleep(0.05 + 0.1 * (tries % 3))

    async def _caught_up(self) -> bool:
        return await consumer_lag(self.bootstrap, self.group, self.topic) == 0

    async def _look(
        self, process: ServiceProcess, admin: AIOKafkaAdminClient, partitions: list[TopicPartition]
    ) -> Look:
        mine = assigned_partitions(process.log.read_text(errors="replace"), self.topic)
        if not mine:
            return Look(set(), {}, {})
        committed = await committed_offsets(admin, self.group, partitions)
        return Look(mine, await applied_offsets(self.store), committed)


@dataclass(frozen=True)
class Look:
    """A process's partitions, the watermarks and the group's committed offsets at one moment."""

    mine: set[int]
    applied: dict[int, int]
    committed: dict[int, int]

    def same_progress(self, before: Look) -> bool:
        """Nothing applied or committed on the process's partitions since `before`."""
        return all(
            self.applied.get(p) == before.applied.get(p)
            and self.committed.get(p) == before.committed.get(p)
            for p in self.mine
        )

    def held_since(self, before: Look, *, replay: bool) -> dict[int, tuple[int, int]]:
        """Partitions the process held at both looks and worked on between them, with applied
        records not committed now: (last offset applied, committed offset) of each."""
        held = {}
        for p in sorted(self.mine & before.mine):
            applied, committed = self.applied.get(p, -1), self.committed.get(p, 0)
            if replay:
                worked = committed > before.committed.get(p, 0)
            else:
                worked = applied > before.applied.get(p, -1)
            if worked and applied >= committed:
                held[p] = (applied, committed)
        return held
