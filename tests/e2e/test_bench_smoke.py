"""`make bench QUICK=1` against the real stack: every benchmark runs and the report is written.

A smoke run, not a timed test: it checks that the benchmarks still work (they drive the services
as operators do, so a change of settings or contracts breaks them), never how fast anything is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import OPERATOR_TOKEN, REPO, Stack

pytestmark = pytest.mark.e2e

SECTION_TITLES = (
    "## Intake vs its ceilings",
    "## Analytics: ",
    "## Pipeline: ",
    "## Notifier: ",
    "## Scale-out: ",
    "## Cost against responses already stored: ",
    "## Where the time goes: ",
)


@pytest.mark.timeout(900)
def test_bench_quick_writes_every_section_with_plots(stack: Stack, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka,
        "MONGODB_URL": stack.mongodb_url,
        "OPERATOR_TOKEN": OPERATOR_TOKEN,
        "PYTHONPATH": str(REPO),
    }

    run = subprocess.run(
        [sys.executable, "-m", "bench.suite", "--quick"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = (tmp_path / "bench-results" / "performance.md").read_text()
    assert [title in report for title in SECTION_TITLES] == [True] * len(SECTION_TITLES)
    assert "- sizes: quick smoke run" in report
    assert "| intake: its own process | " in report  # its CPU per accepted webhook
    assert "| checked ceiling (checks + insert + produce): accepted/s | " in report
    assert "| intake redeliveries with 0 stored | " in report  # the intake's cost as data grows
    plots = sorted((tmp_path / "bench-results" / "performance").glob("*.png"))
    assert {plot.name.split("-")[0] for plot in plots} == {
        "intake",
        "analytics",
        "pipeline",
        "notifier",
        "scaleout",
        "growth",
        "profiles",
    }
    graphs = tmp_path / "bench-results" / "flamegraphs"
    for service in ("intake", "analytics", "notifier"):
        assert (graphs / f"{service}.svg").read_text().startswith("<?xml"), service
        assert f"[{service}](flamegraphs/{service}.svg)" in report
