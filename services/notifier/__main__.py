"""`python -m services.notifier`: serve the notifier service; `... preview --pilot FILE
--language fr` (or `all`): write the HTML and text of a pilot's email to files for review, in
the pilot's text of that language or in English with the fallback said; `... prune-claims
--older-than-days 30`: drop the claims that can no longer decide anything (`cleanup`); `...
rekey`: move records kept under an address to its keyed hash, once, notifiers stopped (`rekey`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from services.notifier.settings import NotifierSettings
from services.notifier.wiring import wire
from shared.events import LANGUAGES
from shared.settings import load_settings


def parser() -> argparse.ArgumentParser:
    """The command line: no arguments (or `serve`) serves; `preview` renders a sample email."""
    cli = argparse.ArgumentParser(prog="python -m services.notifier", description=__doc__)
    commands = cli.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the notifier (the default)")
    preview = commands.add_parser(
        "preview",
        help="write a sample email of a pilot to files",
        description="Render the email a matching focal point would get, as HTML and text files.",
    )
    preview.add_argument("--pilot", type=Path, required=True, metavar="FILE", help="pilot JSON")
    preview.add_argument(
        "--language",
        choices=(*LANGUAGES, "all"),
        default="en",
        help="the reader's language, or all six (default: en)",
    )
    preview.add_argument("--name", help="the focal point's name in the greeting")
    preview.add_argument(
        "--out", type=Path, default=Path("."), help="directory to write to (default: here)"
    )
    prune = commands.add_parser(
        "prune-claims",
        help="drop old claims of finished deliveries and superseded index versions",
        description="Safe at any time, also while notifiers run (services/notifier/cleanup.py).",
    )
    prune.add_argument("--older-than-days", type=float, default=30.0, metavar="DAYS")
    commands.add_parser(
        "rekey",
        help="move records kept under an address to its keyed hash (notifiers stopped)",
        description="Once, after upgrading, notifiers stopped (services/notifier/rekey.py).",
    )
    return cli


async def rekey() -> int:
    """Move the records keyed by an address to the keyed hash; print how many."""
    from services.notifier.rekey import rekey

    wiring = wire(load_settings(NotifierSettings, "notifier"))
    settings = wiring.settings
    try:
        keys = settings.email_keys()
        moved = await rekey(wiring.db, keys, require_confirmation=settings.double_opt_in)
    finally:
        await wiring.close()
    kinds = ("focal_points", "deliveries", "link_ids", "index_entries")
    print("re-keyed: " + ", ".join(f"{moved[kind]} {kind}" for kind in kinds))
    return 0


async def prune_claims(days: float) -> int:
    """Drop the settled claims older than `days`; print how many."""
    from services.notifier.cleanup import prune_claims

    wiring = wire(load_settings(NotifierSettings, "notifier"))
    try:
        dropped = await prune_claims(wiring.db, timedelta(days=days), datetime.now(UTC))
    finally:
        await wiring.close()
    print(f"{dropped} claims dropped")
    return 0


def write_preview(args: argparse.Namespace) -> int:
    """Render the sample email and write `<pilot_id>.<language>.html` and `.txt` (for each
    language with `--language all`)."""
    from services.notifier import preview

    try:
        pilot = preview.parse_pilot(args.pilot.read_bytes())
    except OSError as exc:
        print(f"cannot read {args.pilot}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"{args.pilot} is not a valid pilot:\n{exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for language in LANGUAGES if args.language == "all" else (args.language,):
        sample = preview.render(pilot, language, args.name)
        stem = f"{pilot.pilot_id}.{language}"
        html, text = args.out / f"{stem}.html", args.out / f"{stem}.txt"
        html.write_text(sample.html, encoding="utf-8")
        text.write_text(f"Subject: {sample.subject}\n\n{sample.text}", encoding="utf-8")
        print(f"{html}\n{text}")
        if sample.fallback:
            print(f"{language}: no translation; the English text, said so", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Serve, or run the subcommand given."""
    args = parser().parse_args(argv)
    if args.command == "preview":
        return write_preview(args)
    if args.command == "prune-claims":
        return asyncio.run(prune_claims(args.older_than_days))
    if args.command == "rekey":
        return asyncio.run(rekey())
    from services.notifier.app import create_app
    from shared.serve import serve

    settings = load_settings(NotifierSettings, "notifier")
    serve(
        create_app(settings),
        host=settings.notifier_host,
        port=settings.notifier_port,
        log_level=settings.log_level,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
