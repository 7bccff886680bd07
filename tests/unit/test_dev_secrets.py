"""deploy/local/dev_secrets.py: development secrets made once, and a secret added later
appended to the file made before it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local" / "dev_secrets.py"


def dev_secrets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_secrets", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_write_once_existing_file_gets_only_missing_names(tmp_path: Path) -> None:
    module = dev_secrets()
    path = tmp_path / "dev-secrets.env"
    path.write_text("# made before\nOPERATOR_TOKEN=kept-as-it-was\n", encoding="utf-8")

    made = module.write_once(path, module.service_secrets(), "header")
    again = path.read_text(encoding="utf-8")
    module.write_once(path, module.service_secrets(), "header")

    assert made is False
    assert "OPERATOR_TOKEN=kept-as-it-was" in again and again.count("OPERATOR_TOKEN=") == 1
    assert {"UNSUBSCRIBE_SECRET", "EMAIL_ID_SECRET", "EMAIL_KEY_SECRET"} <= {
        line.split("=", 1)[0] for line in again.splitlines()
    }
    assert path.read_text(encoding="utf-8") == again  # nothing missing: nothing written


def test_write_once_new_file_every_secret(tmp_path: Path) -> None:
    module = dev_secrets()
    path = tmp_path / "new" / "dev-secrets.env"

    assert module.write_once(path, module.service_secrets(), "header") is True
    assert "EMAIL_KEY_SECRET=" in path.read_text(encoding="utf-8")
    assert path.stat().st_mode & 0o777 == 0o600
