"""`python -m services.notifier preview`: a pilot's sample email written to files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from services.notifier import emails, preview
from services.notifier.__main__ import main, parser
from services.notifier.texts import isolate
from tests.unit.conftest import PILOT


@pytest.fixture
def pilot_file(tmp_path):
    path = tmp_path / "pilot.json"
    path.write_text(json.dumps(PILOT), "utf-8")
    return path


def test_preview_writes_html_and_text_in_language(pilot_file, tmp_path, capsys):
    out = tmp_path / "out"

    code = main(["preview", "--pilot", str(pilot_file), "--language", "fr", "--out", str(out)])

    html = (out / "pilot-2025-007.fr.html").read_text("utf-8")
    text = (out / "pilot-2025-007.fr.txt").read_text("utf-8")
    assert code == 0
    assert '<html lang="fr" dir="ltr">' in html
    assert "<li>Adaptation et résilience climatiques</li>" in html
    assert text.startswith("Subject: Nouveau projet pilote pour votre ville : Flood early warning")
    assert "Bonjour Awa Diallo," in text
    assert capsys.readouterr().out.split() == [
        str(out / f"pilot-2025-007.fr.{e}") for e in ("html", "txt")
    ]


def test_preview_arabic_right_to_left_with_given_name(pilot_file, tmp_path):
    main(
        [
            "preview",
            "--pilot",
            str(pilot_file),
            "--language",
            "ar",
            "--name",
            "سارة",
            "--out",
            str(tmp_path),
        ]
    )

    html = (tmp_path / "pilot-2025-007.ar.html").read_text("utf-8")
    assert '<html lang="ar" dir="rtl">' in html
    assert "سارة" in html


def test_preview_invalid_pilot_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**PILOT, "themes": ["not-a-theme"]}), "utf-8")

    code = main(["preview", "--pilot", str(bad), "--out", str(tmp_path)])

    err = capsys.readouterr().err
    assert code == 2
    assert "is not a valid pilot" in err
    assert "'not-a-theme' is not a known theme code" in err
    assert list(tmp_path.glob("*.html")) == []


def test_preview_missing_file_clear_error(tmp_path, capsys):
    code = main(["preview", "--pilot", str(tmp_path / "nope.json")])

    assert code == 2
    assert "cannot read" in capsys.readouterr().err


def test_preview_unknown_language_refused(pilot_file):
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["preview", "--pilot", str(pilot_file), "--language", "de"])

    assert exited.value.code == 2


def test_parser_no_arguments_serves():
    assert parser().parse_args([]).command is None
    assert parser().parse_args(["serve"]).command == "serve"


def direction(language):
    return emails.strings(language)["direction"]


def test_render_every_language_has_both_parts(make_pilot_event):
    for language in preview.SAMPLE_NAMES:
        sample = preview.render(make_pilot_event(), language)

        title = isolate("Flood early warning for coastal districts", direction(language))
        assert sample.subject.endswith(title)
        assert preview.SAMPLE_NAMES[language] in sample.text
        assert f"<li>{emails.label('climate-resilience', language)}</li>" in sample.html


def test_render_unknown_language_raises(make_pilot_event):
    with pytest.raises(ValueError, match="not one of the languages"):
        preview.render(make_pilot_event(), "de")


def test_module_runs_as_command(pilot_file, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.notifier",
            "preview",
            "--pilot",
            str(pilot_file),
            "--language",
            "zh",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pilot-2025-007.zh.html").exists()
