"""`python -m services.intake`: serve the intake service; `... import FILE --survey --source`:
import responses collected before the webhooks were set up."""

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
    return cli


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
