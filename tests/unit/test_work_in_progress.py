"""How the fault tests tell a process holding applied but uncommitted work from an idle one."""

from __future__ import annotations

from tests.work_in_progress import Look, assigned_partitions

TOPIC = "test-x.survey.responses.v1"


def line(verb: str, *partitions: int, topic: str = TOPIC) -> str:
    held = ", ".join(f"TopicPartition(topic='{topic}', partition={p})" for p in partitions)
    return f'{{"message": "{verb} partitions {{{held}}} for group analytics-x"}}'


def test_assigned_partitions_last_assignment_counts() -> None:
    log = "\n".join(
        [
            line("Setting newly assigned", 0, 1, 2, 3, 4, 5),
            line("Revoking previously assigned", 0, 1, 2, 3, 4, 5),
            line("Setting newly assigned", 1, 3),
            line("Setting newly assigned", 0, topic="other"),
        ]
    )
    assert assigned_partitions(log, TOPIC) == {1, 3}


def test_assigned_partitions_revoked_without_new_assignment_none() -> None:
    log = "\n".join(
        [line("Setting newly assigned", 2), line("Revoking previously assigned", 2), "other"]
    )
    assert assigned_partitions(log, TOPIC) == set()


def test_held_since_applied_between_looks_not_committed_held() -> None:
    before = Look({0, 1}, {0: 10, 1: 20}, {0: 5, 1: 21})
    now = Look({0, 1}, {0: 12, 1: 25}, {0: 5, 1: 26})
    # p0 applied further and not committed; p1 applied further but committed already.
    assert now.held_since(before, replay=False) == {0: (12, 5)}


def test_held_since_predecessors_work_not_held() -> None:
    # Applied beyond the commit, but not by this process between the two looks.
    before = Look({0}, {0: 30}, {0: 10})
    now = Look({0}, {0: 30}, {0: 10})
    assert now.held_since(before, replay=False) == {}


def test_held_since_partition_new_to_the_process_not_held() -> None:
    before = Look({1}, {0: 10, 1: 10}, {0: 0, 1: 0})
    now = Look({0, 1}, {0: 12, 1: 10}, {0: 0, 1: 0})
    assert now.held_since(before, replay=False) == {}


def test_held_since_replay_committing_its_way_held_until_done() -> None:
    before = Look({0}, {0: 40}, {0: 10})
    assert Look({0}, {0: 40}, {0: 20}).held_since(before, replay=True) == {0: (40, 20)}
    assert Look({0}, {0: 40}, {0: 41}).held_since(before, replay=True) == {}
