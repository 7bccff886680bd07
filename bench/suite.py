"""`make bench`: every benchmark in one run on the local stack; writes docs/performance.md, its
plots (docs/performance/*.png), its figures (docs/performance.json, compared by the next run)
and flame graphs of the services under load (docs/flamegraphs/*.svg).

`make bench QUICK=1` (`--quick`) is a short smoke run: small sizes, written under bench-results/
so the committed report keeps full-size figures. A full run exits 1 when a target is not met; a
quick run only when a benchmark fails, since its small sizes say nothing about the targets.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bench import analytics, growth, intake, notifier, pipeline, profiles, scaleout
from bench.performance import write
from bench.report import Section, publish_section
from shared.serve import tune_garbage_collector

SECTIONS: list[tuple[str, Callable[[bool], Section]]] = [
    ("intake", intake.section),
    ("analytics", analytics.section),
    ("pipeline", pipeline.section),
    ("notifier", notifier.section),
    ("scale-out", scaleout.section),
    ("growth", growth.section),
    ("profiles", profiles.section),
]
REPORT = Path("docs/performance.md")
QUICK_REPORT = Path("bench-results/performance.md")


def about_run(quick: bool) -> dict[str, Any]:
    """What a reader needs to weigh the figures: when, where, what code, which sizes."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "commit": commit or "unknown",
        "sizes": "quick smoke run" if quick else "full",
    }


def run(quick: bool, console: Console) -> list[Section]:
    """Each section in turn, with a progress bar over the run."""
    sections = []
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("benchmarks", total=len(SECTIONS))
        for name, measure in SECTIONS:
            progress.update(task, description=f"benchmark: {name}")
            measured = measure(quick)
            publish_section(measured, console)
            sections.append(measured)
            progress.advance(task)
    return sections


def main() -> None:
    """`python -m bench.suite [--quick]`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    quick = parser.parse_args().quick
    # The services measured in this process collect garbage as they do when served, and so do
    # their baselines.
    tune_garbage_collector()
    console = Console()
    sections = run(quick, console)
    target = QUICK_REPORT if quick else REPORT
    target.parent.mkdir(parents=True, exist_ok=True)
    markdown, images = write(sections, target, about_run(quick))
    console.print(f"Report: {markdown} with {len(images)} plots")
    missed = [f"{s.key}: {v.name}" for s in sections for v in s.verdicts if not v.met]
    for name in missed:
        console.print(f"[red]target not met[/red] {name}")
    raise SystemExit(1 if missed and not quick else 0)


if __name__ == "__main__":
    main()
