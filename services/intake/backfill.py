"""`python -m services.intake import FILE --survey ID --source ...`: responses collected before the
webhooks were set up, through the same adapt -> validate -> claim -> publish path as a webhook.

Accepted formats: a KoboToolbox JSON export (the data API's `{"results": [...]}` or a list) or CSV
export (XML values and headers, `/` group separator), a Typeform Responses API JSON (`{"items":
[...]}`), or JSON lines of canonical responses for `generic`. Re-running an import is safe: what
was accepted before counts as a duplicate. An export taken after responses were edited brings
the edits in: each edited response is a newer revision (Kobo: `meta/deprecatedID`), published
once; the first delivery of an older revision than one accepted before is counted as
superseded (an export older than an earlier import holds revisions delivered before: duplicates).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo.errors import PyMongoError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.intake.acceptance import InFlight, Intake, Outcome
from services.intake.admission import Admission
from services.intake.api import validated
from services.intake.sources import Delivery, Platform, Rejected
from services.intake.surveys import SurveyDefinition
from shared.http import Problem

IMPORT_SOURCES = ("kobotoolbox", "typeform", "generic")
CONCURRENCY = 8
IN_FLIGHT_WAIT_SECONDS = 0.1
IN_FLIGHT_TRIES = 400  # longer than a claim's lease: a claim left by a dead process is taken over


class UnreadableFile(Exception):
    """The file is not in a format the chosen source can import; the message says why."""


@dataclass(frozen=True)
class Record:
    """One response of the file: where it is (for the report) and its payload as posted."""

    where: str
    payload: Any
    unreadable: str | None = None  # why the record could not even be parsed


def _json_body(payload: Any) -> Delivery:
    # ASCII escapes: a lone surrogate of the file reaches the admission rules, not the encoder.
    try:
        body = json.dumps(payload).encode()
    except (ValueError, RecursionError) as exc:
        raise Rejected(400, "Malformed body", f"the record cannot be read: {exc}") from exc
    return Delivery({}, {}, body, "application/json")


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
        raise UnreadableFile(f"{path} is not a JSON file: {exc}") from exc


def _listed(data: Any, key: str, path: Path) -> list[Any]:
    items = data.get(key) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise UnreadableFile(f"{path}: expected a list of responses or an object with {key!r}")
    return items


def _kobo_csv(path: Path) -> Iterator[Record]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"{path} is not a UTF-8 CSV file: {exc}") from exc
    try:
        dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=";,\t")
    except csv.Error:
        dialect = csv.excel
    rows = csv.DictReader(io.StringIO(text), dialect=dialect)
    columns = set(rows.fieldnames or ())
    if "_uuid" not in columns:
        raise UnreadableFile(f"{path}: no `_uuid` column; export with XML values and headers")
    # A select_multiple also gets one 0/1 column per choice (`priorities/sdgs/sdg_11`): the
    # space-separated column says the same, so those are left out.
    per_choice = {name for name in columns if name.rpartition("/")[0] in columns}
    for number, row in enumerate(rows, start=2):
        submission = {
            name: value
            for name, value in row.items()
            if name and name not in per_choice and value not in ("", None)
        }
        yield Record(f"line {number}", submission)


def records(path: Path, source: str) -> Iterator[Record]:
    """The responses of `path` as the platform would have posted them."""
    if source == "kobotoolbox" and path.suffix.lower() == ".csv":
        yield from _kobo_csv(path)
    elif source == "kobotoolbox":
        for number, submission in enumerate(_listed(_load_json(path), "results", path), start=1):
            yield Record(f"record {number}", submission)
    elif source == "typeform":
        for number, item in enumerate(_listed(_load_json(path), "items", path), start=1):
            form_response = dict(item) if isinstance(item, dict) else item
            if isinstance(form_response, dict) and "token" not in form_response:
                form_response["token"] = form_response.get("response_id")
            yield Record(
                f"item {number}", {"event_type": "form_response", "form_response": form_response}
            )
    elif source == "generic":
        # A line that is not UTF-8 is reported with the others, not the end of the import.
        with path.open(encoding="utf-8-sig", errors="surrogateescape") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    try:
                        yield Record(f"line {number}", json.loads(line))
                    except (ValueError, RecursionError) as exc:
                        yield Record(f"line {number}", line.rstrip("\n"), f"not valid JSON: {exc}")
    else:
        raise UnreadableFile(f"cannot import source {source!r}; one of {IMPORT_SOURCES}")


@dataclass
class Summary:
    """What became of the file's responses."""

    accepted: int = 0
    duplicates: int = 0
    superseded: int = 0  # first delivered after a newer revision was accepted
    invalid: list[dict[str, Any]] = field(default_factory=list)


async def import_record(
    record: Record,
    platform: Platform,
    survey: SurveyDefinition,
    intake: Intake,
    admission: Admission | None = None,
) -> Outcome | dict[str, Any]:
    """Adapt, admit and publish one record: its outcome, or why it is invalid."""
    try:
        if record.unreadable is not None:
            raise Rejected(400, "Malformed body", record.unreadable)
        candidate = platform.adapt(_json_body(record.payload), survey, datetime.now(UTC))
        admitted = validated(candidate, admission)
    except Rejected as rejected:
        return {"record": record.where, "reason": rejected.detail, "errors": rejected.errors}
    except Problem as problem:
        return {
            "record": record.where,
            "reason": problem.detail or problem.title,
            "errors": problem.extra.get("errors", []),
        }
    # The same response twice in one file (platforms re-send): the second waits for the first.
    # A busy database (SQLite-backed servers under write load) is retried the same way.
    for _ in range(IN_FLIGHT_TRIES):
        try:
            return await intake.accept_response(admitted.response, admitted.encoded)
        except (InFlight, PyMongoError):
            await asyncio.sleep(IN_FLIGHT_WAIT_SECONDS)
    return await intake.accept_response(admitted.response, admitted.encoded)


async def run_import(
    path: Path,
    survey: SurveyDefinition,
    platform: Platform,
    intake: Intake,
    invalid_out: Path,
    console: Console | None = None,
    admission: Admission | None = None,
) -> Summary:
    """Import every record of `path`, with a progress bar; write the invalid ones to
    `invalid_out` (JSON lines with the record, the reason and the failing fields)."""
    console = console or Console(stderr=True)
    items = list(records(path, platform.name))
    summary = Summary()
    progress = Progress(
        TextColumn(f"[bold]{path.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )

    pending = iter(items)
    stopped: list[Exception] = []

    async def worker() -> None:
        for record in pending:  # shared by the workers: each record is taken once
            if stopped:
                return
            try:
                outcome = await import_record(record, platform, survey, intake, admission)
            except Exception as exc:  # Kafka or MongoDB gone: stop every worker, report it
                stopped.append(exc)
                return
            if outcome is Outcome.ACCEPTED:
                summary.accepted += 1
            elif outcome is Outcome.DUPLICATE:
                summary.duplicates += 1
            elif outcome is Outcome.SUPERSEDED:
                summary.superseded += 1
            else:
                summary.invalid.append({**outcome, "payload": record.payload})
            progress.advance(task)

    with progress:
        task = progress.add_task("import", total=len(items))
        try:
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        finally:
            _write_invalid(invalid_out, summary.invalid)
    if stopped:
        raise stopped[0]
    return summary


def _write_invalid(path: Path, invalid: list[dict[str, Any]]) -> None:
    # Written in file order, whichever finished first.
    invalid.sort(key=lambda entry: int(str(entry["record"]).rpartition(" ")[2]))
    with path.open("w", encoding="utf-8", errors="backslashreplace") as out:
        for entry in invalid:
            out.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
