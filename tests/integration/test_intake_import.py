"""`python -m services.intake import`: exports through adapt, validate, claim and publish."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from services.intake.__main__ import import_file
from services.intake.settings import IntakeSettings
from shared.events import SurveyResponse
from tests.support import REPO, Stack, read_topic, settings_for

pytestmark = pytest.mark.integration

FIXTURES = REPO / "tests" / "fixtures" / "platforms"
SURVEY = "cities-2024-priorities"


@pytest.fixture
def settings(stack: Stack, run_id: str) -> IntakeSettings:
    return settings_for(IntakeSettings, stack.environment(run_id))


async def run(settings: IntakeSettings, file: Path, source: str, out: Path) -> tuple[int, str]:
    console = Console(record=True, width=200, force_terminal=False)
    args = argparse.Namespace(file=file, survey=SURVEY, source=source, invalid_out=out)
    code = await import_file(settings, args, console)
    return code, console.export_text()


def invalid(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize(
    ("fixture", "source", "keys", "bad_record", "bad_field"),
    [
        (
            "kobotoolbox-export.json",
            "kobotoolbox",
            {
                b"kobotoolbox:faa38eee-4e3f-419e-bac0-e95f1085d998",
                b"kobotoolbox:0b6f7d52-8c1e-4a39-9e2b-5d4c3b2a1f00",
            },
            "record 3",
            "respondent.country",
        ),
        (
            "kobotoolbox-export.csv",
            "kobotoolbox",
            {
                b"kobotoolbox:faa38eee-4e3f-419e-bac0-e95f1085d998",
                b"kobotoolbox:0b6f7d52-8c1e-4a39-9e2b-5d4c3b2a1f00",
            },
            "line 4",
            "respondent.country",
        ),
        (
            "typeform-responses.json",
            "typeform",
            {
                b"typeform:a3a12ec67a1365927098a606107fac15",
                b"typeform:7c1e0d9b2a3f4e5d6c7b8a9f0e1d2c3b",
            },
            "item 3",
            "respondent.country",
        ),
    ],
)
async def test_import_export_publishes_valid_reports_invalid(
    stack: Stack,
    settings: IntakeSettings,
    tmp_path: Path,
    fixture: str,
    source: str,
    keys: set[bytes],
    bad_record: str,
    bad_field: str,
) -> None:
    out = tmp_path / "invalid.jsonl"

    code, printed = await run(settings, FIXTURES / fixture, source, out)
    again, printed_again = await run(settings, FIXTURES / fixture, source, out)

    assert code == again == 0
    duplicates = 1 if fixture.endswith(".json") and source == "kobotoolbox" else 0
    assert f"accepted: 2  duplicates: {duplicates}  invalid: 1" in printed
    assert f"accepted: 0  duplicates: {2 + duplicates}  invalid: 1" in printed_again
    records = await read_topic(stack.kafka, settings.topic_responses)
    assert {record.key for record in records} == keys
    assert len(records) == 2
    events = [SurveyResponse.model_validate_json(record.value) for record in records]
    assert {event.source for event in events} == {source}
    [entry] = invalid(out)
    assert entry["record"] == bad_record
    assert [error["field"] for error in entry["errors"]] == [bad_field]
    assert "payload" in entry


async def test_import_kobo_csv_codes_as_webhook(
    stack: Stack, settings: IntakeSettings, tmp_path: Path
) -> None:
    await run(settings, FIXTURES / "kobotoolbox-export.csv", "kobotoolbox", tmp_path / "x.jsonl")

    records = await read_topic(stack.kafka, settings.topic_responses)
    events = {r.key: SurveyResponse.model_validate_json(r.value) for r in records}
    first = events[b"kobotoolbox:faa38eee-4e3f-419e-bac0-e95f1085d998"]
    assert first.development_priorities == ["sdg-11", "sdg-6"]
    assert first.capacity_needs == ["urban-planning", "digital-governance"]
    assert first.focal_point is not None
    assert not any(key.startswith("priorities/sdgs/") for key in first.answers)


async def test_import_generic_json_lines(
    stack: Stack, settings: IntakeSettings, tmp_path: Path
) -> None:
    out = tmp_path / "invalid.jsonl"

    code, printed = await run(settings, FIXTURES / "generic-responses.jsonl", "generic", out)

    assert code == 0
    assert "accepted: 2  duplicates: 0  invalid: 2" in printed
    records = await read_topic(stack.kafka, settings.topic_responses)
    assert sorted(r.key for r in records) == [b"generic:legacy-0001", b"generic:legacy-0003"]
    reasons = {entry["record"]: entry for entry in invalid(out)}
    assert [e["field"] for e in reasons["line 2"]["errors"]] == ["development_priorities.0"]
    assert reasons["line 3"]["reason"].startswith("not valid JSON")


async def test_import_kafka_down_stops_with_exit_1(
    settings: IntakeSettings, tmp_path: Path
) -> None:
    unreachable = settings.model_copy(
        update={"kafka_bootstrap_servers": "127.0.0.1:9", "publish_timeout_seconds": 2.0}
    )

    code, printed = await run(
        unreachable, FIXTURES / "typeform-responses.json", "typeform", tmp_path / "x.jsonl"
    )

    assert code == 1
    assert "import stopped" in printed


def test_import_command_line_summary_and_exit_code(
    stack: Stack, run_id: str, tmp_path: Path
) -> None:
    out = tmp_path / "invalid.jsonl"
    command = [
        sys.executable,
        "-m",
        "services.intake",
        "import",
        str(FIXTURES / "typeform-responses.json"),
        "--survey",
        SURVEY,
        "--source",
        "typeform",
        "--invalid-out",
        str(out),
    ]
    env = {**stack.environment(run_id), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}

    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    unknown_survey = subprocess.run(
        [*command[:6], "no-such-survey", *command[7:]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "accepted: 2  duplicates: 0  invalid: 1" in done.stdout
    assert len(invalid(out)) == 1
    assert unknown_survey.returncode == 1
    assert "no survey 'no-such-survey'" in unknown_survey.stdout


async def test_import_edited_kobo_export_brings_the_edits_in(
    stack: Stack, settings: IntakeSettings, tmp_path: Path
) -> None:
    original = json.loads((FIXTURES / "kobotoolbox-submission.json").read_text(encoding="utf-8"))
    edited = json.loads(
        (FIXTURES / "kobotoolbox-submission-edited.json").read_text(encoding="utf-8")
    )
    before, after = tmp_path / "export-may.json", tmp_path / "export-june.json"
    before.write_text(json.dumps({"results": [original]}), encoding="utf-8")
    after.write_text(json.dumps({"results": [edited]}), encoding="utf-8")
    out = tmp_path / "invalid.jsonl"

    first = await run(settings, before, "kobotoolbox", out)
    later = await run(settings, after, "kobotoolbox", out)
    stale = await run(settings, before, "kobotoolbox", out)  # the old export once more

    assert "accepted: 1  duplicates: 0  invalid: 0" in first[1]
    assert "accepted: 1  duplicates: 0  invalid: 0" in later[1]  # the edit: a new revision
    assert "accepted: 0  duplicates: 1  invalid: 0" in stale[1]  # imported before the edit
    records = await read_topic(stack.kafka, settings.topic_responses)
    events = [SurveyResponse.model_validate_json(record.value) for record in records]
    assert [(event.revision > 1, event.respondent.country) for event in events] == [
        (False, "VN"),
        (True, "TH"),
    ]
    assert len({event.response_id for event in events}) == 1
