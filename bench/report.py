"""One way to report a benchmark: a table and a bar chart in the terminal, JSON and SVG on disk.

Speed is shown as ratios against a baseline measured in the same run: absolute figures from
a noisy shared machine mean little on their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path

from rich.console import Console
from rich.table import Table

from shared.serve import tune_garbage_collector

RESULTS = Path("bench-results")
BAR_WIDTH = 40


@dataclass(frozen=True)
class Measurement:
    """One measured figure, e.g. ("intake", 812.0, "webhooks/s")."""

    label: str
    value: float
    unit: str


@dataclass(frozen=True)
class Verdict:
    """A target the benchmark checks, e.g. ratio >= 0.5."""

    name: str
    measured: float
    target: float
    met: bool


@dataclass(frozen=True)
class Curve:
    """Figures of one unit against a quantity that grows, plotted as lines, e.g. the applied
    rate against the responses already stored: each label maps to its (x, y) points."""

    x_label: str
    unit: str
    points: dict[str, list[tuple[float, float]]]


@dataclass(frozen=True)
class Section:
    """What one benchmark measured: its figures, the targets it checks, and what to know."""

    key: str
    title: str
    measurements: list[Measurement]
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)

    @property
    def met(self) -> bool:
        """Whether every target of the section is met."""
        return all(v.met for v in self.verdicts)


def publish_section(section: Section, console: Console | None = None) -> Path:
    """`publish` for a `Section`."""
    return publish(section.key, section.title, section.measurements, section.verdicts, console)


def run_alone(measure: Callable[[bool], Section]) -> None:
    """A benchmark's own command (`python -m bench.<name>`): measure at full size, print the
    results and their notes, and exit with status 1 when a target is not met. The services
    measured in this process collect garbage as they do when served, and so do their baselines."""
    tune_garbage_collector()
    measured = measure(False)
    publish_section(measured)
    for note in measured.notes:
        print(f"- {note}")
    raise SystemExit(0 if measured.met else 1)


def publish(
    name: str,
    title: str,
    measurements: list[Measurement],
    verdicts: list[Verdict],
    console: Console | None = None,
) -> Path:
    """Print the results with a bar chart and write `bench-results/<name>.{json,svg}`."""
    console = console or Console()
    table = Table(title=title)
    for column in ("measure", "value", "unit", ""):
        table.add_column(column, justify="right" if column == "value" else "left")
    top = max((m.value for m in measurements), default=1.0) or 1.0
    for m in measurements:
        bar = "█" * max(1, round(BAR_WIDTH * m.value / top))
        table.add_row(m.label, f"{m.value:,.2f}", m.unit, f"[cyan]{bar}")
    console.print(table)
    for v in verdicts:
        mark = "[green]met" if v.met else "[red]NOT met"
        console.print(f"{v.name}: {v.measured:,.3f} (target {v.target:,.3f}) {mark}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(
        json.dumps(
            {
                "title": title,
                "measurements": [asdict(m) for m in measurements],
                "verdicts": [asdict(v) for v in verdicts],
            },
            indent=2,
        )
    )
    svg = RESULTS / f"{name}.svg"
    svg.write_text(bar_chart_svg(title, measurements))
    console.print(f"Chart: {svg}")
    return svg


def bar_chart_svg(title: str, measurements: list[Measurement]) -> str:
    """A horizontal bar chart as a standalone SVG (no plotting library needed)."""
    row, left, width = 28, 260, 420
    top = max((m.value for m in measurements), default=1.0) or 1.0
    height = 50 + row * len(measurements)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 160}" '
        f'height="{height}" font-family="Arial, sans-serif" font-size="13">',
        f'<text x="10" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    for index, m in enumerate(measurements):
        y = 40 + index * row
        length = max(1.0, width * m.value / top)
        parts += [
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{escape(m.label)}</text>',
            f'<rect x="{left}" y="{y + 3}" width="{length:.1f}" height="16" fill="#4a90c2"/>',
            f'<text x="{left + length + 6:.1f}" y="{y + 15}">'
            f"{m.value:,.1f} {escape(m.unit)}</text>",
        ]
    parts.append("</svg>")
    return "\n".join(parts)
