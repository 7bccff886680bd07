"""The intake benchmark's CPU figures: per accepted webhook, and the intake's budget for its
target against the durable ceiling; its rate and the checked ceiling's as shares of the durable
ceiling's."""

from __future__ import annotations

import pytest

from bench.intake import (
    BARE,
    CHECKED,
    CPU_UNIT,
    DURABLE,
    INTAKE,
    LOAD_GENERATOR,
    OWN_PROCESS,
    SHARE_UNIT,
    cpu_figures,
    share_of_durable,
)
from bench.intake_growth import stored_keys
from bench.load import SURVEY, Result

RESULTS = {
    BARE: Result(BARE, 2_000, 0.5, []),
    DURABLE: Result(DURABLE, 2_000, 1.0, []),
    CHECKED: Result(CHECKED, 2_000, 1.6, []),
    INTAKE: Result(INTAKE, 2_000, 2.0, []),
}
CPU = {
    BARE: {OWN_PROCESS: 0.4, LOAD_GENERATOR: 0.1},
    DURABLE: {OWN_PROCESS: 0.6, "ferretdb": 0.2, LOAD_GENERATOR: 0.1},
    CHECKED: {OWN_PROCESS: 1.0, "ferretdb": 0.2, LOAD_GENERATOR: 0.1},
    INTAKE: {OWN_PROCESS: 1.6, "ferretdb": 0.4, LOAD_GENERATOR: 0.1},
}


def test_cpu_figures_give_each_process_per_accepted_webhook() -> None:
    measurements, _ = cpu_figures(RESULTS, CPU)

    figures = {m.label: m.value for m in measurements}
    assert {m.unit for m in measurements} == {CPU_UNIT}
    assert figures[f"{INTAKE}: {OWN_PROCESS}"] == pytest.approx(800.0)
    assert figures[f"{INTAKE}: ferretdb"] == pytest.approx(200.0)
    assert figures[f"{DURABLE}: {OWN_PROCESS}"] == pytest.approx(300.0)
    assert figures[f"{CHECKED}: {OWN_PROCESS}"] == pytest.approx(500.0)
    assert len(figures) == 11


def test_cpu_figures_name_the_intake_budget_for_its_target() -> None:
    _, notes = cpu_figures(RESULTS, CPU)

    # 0.8 cores over 0.8 x 2,000 webhooks/s: 500 µs per webhook at most.
    assert notes[-1] == (
        "for 0.8 of the durable ceiling (1,600 webhooks/s) at the 0.80 cores its process used, "
        "the intake could spend at most 500 µs of CPU per webhook; it spent 800 µs, the checked "
        "ceiling 500 µs, the durable ceiling 300 µs, the bare parse 200 µs"
    )
    assert f"{INTAKE}: 0.80 cores in its own process, 1.05 of" in notes[3]


def test_cpu_figures_skip_a_server_that_accepted_nothing() -> None:
    results = RESULTS | {INTAKE: Result(INTAKE, 0, 0.0, [])}

    measurements, notes = cpu_figures(results, CPU)

    assert not [m for m in measurements if m.label.startswith(f"{INTAKE}:")]
    assert not [note for note in notes if note.startswith("for 0.8")]


def test_share_of_durable_names_the_target_out_of_reach_of_the_checks() -> None:
    measurements, notes = share_of_durable(RESULTS)

    shares = {m.label: m.value for m in measurements}
    assert {m.unit for m in measurements} == {SHARE_UNIT}
    assert shares == {CHECKED: pytest.approx(0.625), INTAKE: pytest.approx(0.5)}
    assert notes == [
        "the intake's checks alone (signature and admission, then the durable ceiling's work) "
        "reached 0.62 of the durable ceiling, so no intake that runs them could meet the 0.8 "
        "target in this run; the intake reached 0.80 of the checked ceiling"
    ]


def test_share_of_durable_says_nothing_when_the_checks_leave_room() -> None:
    results = RESULTS | {CHECKED: Result(CHECKED, 2_000, 1.1, [])}

    measurements, notes = share_of_durable(results)

    assert {m.label: round(m.value, 3) for m in measurements} == {CHECKED: 0.909, INTAKE: 0.5}
    assert notes == []


def test_share_of_durable_skips_when_the_durable_ceiling_accepted_nothing() -> None:
    results = RESULTS | {DURABLE: Result(DURABLE, 0, 0.0, [])}

    assert share_of_durable(results) == ([], [])


def test_stored_keys_one_in_ten_revised_each_with_the_seal_it_asked() -> None:
    keys = stored_keys(25, 10, 20)  # responses 10 to 24: the last batch stops at the size

    identity = f"{SURVEY}/generic:bench-stored-10"
    assert keys[:4] == [identity, f"~{identity}", f"{identity}#r2", f"~{identity}#r2"]
    assert len(keys) == 15 * 2 + 2 * 2  # responses 10 and 20 revised
    assert len(set(keys)) == len(keys)
