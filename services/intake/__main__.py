"""`python -m services.intake`: serve the intake service; `... import FILE --survey --source`:
import responses collected before the webhooks were set up; `... review --csv FILE`: review or
retract many responses at once."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from pymongo.errors import PyMongoError
from rich.console import Console

from services.intake.api import admission_of
from services.intake.app import wire
from services.intake.backfill import IMPORT_SOURCES, UnreadableFile, run_import
from services.intake.publisher import BrokerUnavailable
from services.intake.reviews import CsvReview, ReviewClock, reviews_from_csv
from services.intake.settings import IntakeSettings
from services.intake.sources import platforms
from services.intake.surveys import SurveyCatalog
from shared.settings import is_placeholder, load_settings


def parser() -> argparse.ArgumentParser:
    """The command line: no arguments serves; `import` imports a file."""
    cli = argparse.ArgumentParser(prog="python -m services.intake", description=__doc__)
    commands = cli.add_subparsers(dest="command")
    imports = commands.add_parser(
        "import",
        help="import a platform export or canonical JSON lines",
        description="Adapt, validate and publish each response of FILE once, as a webhook would.",
    )
    imports.add_argument("file", type=Path, metavar="FILE")
    imports.add_argument("--survey", required=True, help="survey id, e.g. cities-2024-priorities")
    imports.add_argument("--source", required=True, choices=IMPORT_SOURCES)
    imports.add_argument(
        "--invalid-out",
        type=Path,
        help="where to write the invalid responses with their reasons (default FILE.invalid.jsonl)",
    )
    review = commands.add_parser(
        "review",
        help="review or retract responses listed in a CSV file",
        description=(
            "Publish one review per line of a CSV file with the columns survey_id, response_id, "
            "status (pending, approved, rejected or retracted) and optionally note. Lines that "
            "are refused are listed with their reason; the others are published."
        ),
    )
    review.add_argument("--csv", required=True, type=Path, metavar="FILE", dest="csv_file")
    return cli


def review_file(settings: IntakeSettings, path: Path, console: Console) -> int:
    """Publish the reviews of a CSV file; the exit code: 0 all published, 1 some refused or
    Kafka unavailable (those published stay published; a review published twice is harmless:
    the later one of the same status wins)."""
    if not path.is_file():
        console.print(f"[red]no such file: {path}")
        return 1
    try:
        lines = reviews_from_csv(path.read_text(encoding="utf-8"), ReviewClock())
    except (ValueError, UnicodeDecodeError) as exc:
        console.print(f"[red]{path}: {exc}")
        return 1
    return asyncio.run(publish_reviews(settings, lines, console))


async def publish_reviews(
    settings: IntakeSettings, lines: list[CsvReview], console: Console
) -> int:
    """Publish the reviews of a bulk file's lines, reporting the refused ones."""
    catalog = SurveyCatalog.load(settings.surveys_dir)
    wiring = wire(settings)
    published = refused = 0
    try:
        await wiring.publisher.start()
        for line in lines:
            if line.review is not None and catalog.get(line.review.survey_id) is None:
                line = CsvReview(line.line, None, f"no survey {line.review.survey_id!r}")
            if line.review is None:
                console.print(f"line {line.line}: refused: {line.error}")
                refused += 1
                continue
            await wiring.intake.review(line.review)
            published += 1
    except BrokerUnavailable as exc:
        console.print(f"[red]stopped after {published} review(s): {exc}")
        return 1
    finally:
        await wiring.close()
    console.print(f"reviews published: {published}  refused: {refused}")
    return 1 if refused else 0


async def import_file(settings: IntakeSettings, args: argparse.Namespace, console: Console) -> int:
    """Run one import; the exit code: 0 done (invalid ones reported), 1 stopped."""
    survey = SurveyCatalog.load(settings.surveys_dir).get(args.survey)
    if survey is None:
        console.print(f"[red]no survey {args.survey!r} is defined in {settings.surveys_dir}")
        return 1
    if args.source not in survey.sources:
        console.print(f"[red]survey {args.survey!r} does not accept source {args.source!r}")
        return 1
    if not args.file.is_file():
        console.print(f"[red]no such file: {args.file}")
        return 1
    invalid_out = args.invalid_out or args.file.with_name(args.file.name + ".invalid.jsonl")
    wiring = wire(settings)
    try:
        await wiring.publisher.start()
        summary = await run_import(
            args.file,
            survey,
            platforms()[args.source],
            wiring.intake,
            invalid_out,
            console,
            admission_of(settings),
        )
    except (UnreadableFile, BrokerUnavailable, PyMongoError) as exc:
        console.print(f"[red]import stopped: {exc}")
        console.print("Nothing is published twice: run the same import again once fixed.")
        return 1
    finally:
        await wiring.close()
    console.print(
        f"accepted: {summary.accepted}  duplicates: {summary.duplicates}  "
        f"invalid: {len(summary.invalid)}"
        # Revisions first delivered after a newer one was accepted.
        + (f"  superseded: {summary.superseded}" if summary.superseded else "")
    )
    if summary.invalid:
        console.print(f"invalid responses and their reasons: {invalid_out}")
    return 0


def placeholder_webhook_secrets(catalog: SurveyCatalog, environ: Mapping[str, str]) -> list[str]:
    """The webhook secret variables set to a value the repository shipped (or a stand-in).

    Unset ones are fine (that source is refused); their length is the platform's to choose.
    """
    return sorted(
        {
            survey.secret_env(source)
            for survey in catalog
            for source in survey.sources
            if any(is_placeholder(value) for value in survey.secrets(source, environ))
        }
    )


def main(argv: list[str] | None = None) -> int:
    """Serve, or import a file."""
    args = parser().parse_args(argv)
    settings = load_settings(IntakeSettings, "intake")
    refused = placeholder_webhook_secrets(SurveyCatalog.load(settings.surveys_dir), os.environ)
    for name in refused:
        print(f"intake: refusing to start: {name} is a known placeholder", file=sys.stderr)
    if refused:
        return 2
    if args.command == "import":
        return asyncio.run(import_file(settings, args, Console()))
    if args.command == "review":
        return review_file(settings, args.csv_file, Console())
    from services.intake.app import create_app
    from shared.serve import serve

    serve(
        create_app(settings),
        host=settings.intake_host,
        port=settings.intake_port,
        log_level=settings.log_level,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
