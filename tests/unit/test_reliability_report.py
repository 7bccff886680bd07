"""docs/reliability.md as `make reliability` writes it, from results made up here."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from tests.reliability import (
    OTHER,
    Endpoint,
    LoadResult,
    Results,
    SuiteTest,
    fault_notes,
    merge_parametrized,
    render,
)


def results(**overrides: object) -> Results:
    load = LoadResult(30.0, seconds=60.0, taken=1800, statuses=Counter({202: 1800}))
    load.drained_seconds, load.exact, load.p99_ms = 4.0, "equal", 120.0
    base = Results(
        datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
        tests=[
            SuiteTest("t.py::test_kill", "fault", "A kill", "passed", 61.0, notes=["killed x"]),
            SuiteTest("u.py::test_junk", "hostile", "Junk payloads", "passed", 1.0, cases=40),
        ],
        endpoints=[
            Endpoint("intake", "POST", "/v1/pilots", Counter({"422": 900, "202": 150})),
            Endpoint("intake", "GET", "/healthz", Counter({"200": 3}), inputs=False),
            Endpoint("intake", "", OTHER, Counter({"405": 12}), inputs=False),
        ],
        schemathesis_exit={"intake": 0},
        examples=1000,
        load=load,
    )
    for name, value in overrides.items():
        setattr(base, name, value)
    return base


def test_render_everything_held_shows_figures() -> None:
    text = render(results())
    assert "| `t.py::test_kill` | A kill | held | 61 | killed x |" in text
    assert "| Junk payloads | 40 | held |" in text
    assert "| intake | `POST /v1/pilots` | 1,050 | 202: 150, 422: 900 | 0 | held |" in text
    assert "`GET /healthz` (no input)" in text
    assert "30.0 webhooks/s (1,800 taken)" in text
    assert text.rstrip().endswith("Everything held.")


def test_render_too_few_cases_or_5xx_fails() -> None:
    endpoints = [
        Endpoint("analytics", "GET", "/v1/overview", Counter({"200": 999})),
        Endpoint("notifier", "POST", "/v1/unsubscribe", Counter({"200": 1000, "500": 1})),
    ]
    failures = results(endpoints=endpoints).failures()
    assert failures == [
        "notifier POST /v1/unsubscribe: 1 5xx",
        "analytics GET /v1/overview: 999 cases < 1000",
    ]


def test_render_lost_responses_fail() -> None:
    load = LoadResult(30.0, seconds=60.0, taken=10, statuses=Counter({202: 9, 503: 1}))
    load.drained_seconds, load.exact = None, "not checked"
    failures = results(load=load).failures()
    assert len(failures) == 1 and failures[0].startswith("sustained load: 10 taken")
    assert "**FAILED**" in render(results(load=load))


def test_merge_parametrized_one_row_worst_outcome() -> None:
    merged = merge_parametrized(
        [
            SuiteTest("m.py::test_a[1]", "hostile", "A", "passed", 1.0),
            SuiteTest("m.py::test_a[2]", "hostile", "A", "failed", 2.0),
            SuiteTest("m.py::test_b", "hostile", "A", "passed", 1.0),
        ]
    )
    assert [(t.nodeid, t.cases, t.outcome, t.seconds) for t in merged] == [
        ("m.py::test_a", 2, "failed", 3.0),
        ("m.py::test_b", 1, "passed", 1.0),
    ]


def test_fault_notes_keeps_what_the_fault_hit() -> None:
    out = "seed 1\nkilled with 4 requests in flight\nnoise\nrestarted after 3.0s\n"
    assert fault_notes(out) == ["killed with 4 requests in flight", "restarted after 3.0s"]
