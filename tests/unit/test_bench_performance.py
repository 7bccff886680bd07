"""The performance report: figures beside the previous run's, targets, and plots."""

from __future__ import annotations

from pathlib import Path

from bench.performance import previous_figures, render, write
from bench.report import Curve, Measurement, Section, Verdict

SECTION = Section(
    "intake",
    "Intake vs its ceilings",
    [
        Measurement("intake: accepted/s", 400.0, "webhooks/s"),
        Measurement("intake: p99", 120.0, "ms"),
    ],
    [
        Verdict("intake / durable ceiling", 0.9, 0.8, True),
        Verdict("intake p99 ms (lower is better)", 180.0, 150.0, False),
    ],
    ["intake: 3,000 accepted in 7.5 s"],
)


def test_render_shows_figures_with_the_previous_run_and_its_change() -> None:
    text = render([SECTION], {"intake": {"intake: accepted/s": 320.0}}, {}, {"commit": "abc"})

    assert "| intake: accepted/s | 400.00 | webhooks/s | 320.00 | +25% |" in text
    assert "| intake: p99 | 120.00 | ms | - | - |" in text
    assert "- commit: abc" in text


def test_render_marks_each_target_and_counts_those_met() -> None:
    text = render([SECTION], {}, {}, {})

    assert "| intake / durable ceiling | 0.900 | 0.800 | met |" in text
    assert "| intake p99 ms (lower is better) | 180.000 | 150.000 | **not met** |" in text
    assert "- targets met: 1 of 2" in text
    assert "- intake: 3,000 accepted in 7.5 s" in text


def test_write_plots_each_unit_and_keeps_figures_for_the_next_run(tmp_path: Path) -> None:
    markdown = tmp_path / "performance.md"

    written, images = write([SECTION], markdown, {"commit": "abc"})

    assert written.read_text().count("![Intake vs its ceilings](performance/intake-") == 2
    assert [image.read_bytes()[:8] for image in images] == [b"\x89PNG\r\n\x1a\n"] * 2
    assert previous_figures(markdown.with_suffix(".json")) == {
        "intake": {"intake: accepted/s": 400.0, "intake: p99": 120.0}
    }


def test_write_plots_each_curve_as_lines_against_what_grows(tmp_path: Path) -> None:
    growth = Section(
        "growth",
        "Cost against responses already stored",
        [Measurement("applied with 0 stored", 3000.0, "responses/s")],
        [],
        curves=[
            Curve(
                "responses already stored",
                "responses/s",
                {"applied": [(1_000_000, 2900.0), (0, 3000.0), (100_000, 2950.0)]},
            )
        ],
    )

    written, images = write([growth], tmp_path / "performance.md", {})

    assert [image.name for image in images] == ["growth-0.png", "growth-curve-0.png"]
    assert images[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(performance/growth-curve-0.png)" in written.read_text()


def test_previous_figures_of_a_first_run_are_none(tmp_path: Path) -> None:
    assert previous_figures(tmp_path / "performance.json") == {}
