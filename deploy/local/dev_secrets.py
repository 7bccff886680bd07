"""Random development secrets, made once per checkout and never committed (see .gitignore).

    python deploy/local/dev_secrets.py local .stack/dev-secrets.env     # `make up`, `make demo`
    python deploy/local/dev_secrets.py k8s deploy/k8s/overlays/dev       # the dev overlay's files

An existing file is kept as it is, so links in emails already sent keep working across restarts;
delete it to get new secrets. The services refuse to start without secrets, so nothing falls
back to a value that someone else also has.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from services.intake.settings import SURVEYS_DIR  # noqa: E402
from services.intake.surveys import SurveyCatalog  # noqa: E402

DEV_MONGODB_URL = "mongodb://mongodb:27017/?replicaSet=rs0"  # the dev overlay's MongoDB


def service_secrets() -> dict[str, str]:
    """The secrets every service reads, each random."""
    names = (
        "OPERATOR_TOKEN",
        "UNSUBSCRIBE_SECRET",
        "EMAIL_ID_SECRET",
        "EMAIL_KEY_SECRET",
        "POSTMARK_WEBHOOK_SECRET",
    )
    return {name: secrets.token_urlsafe(32) for name in names}


def webhook_secrets() -> dict[str, str]:
    """A Standard Webhooks secret for the `generic` source of every shipped survey."""
    return {
        survey.secret_env("generic"): "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        for survey in SurveyCatalog.load(SURVEYS_DIR)
        if "generic" in survey.sources
    }


def write_once(path: Path, values: dict[str, str], header: str) -> bool:
    """Write `values` as an env file readable by its owner only, unless `path` exists; then
    only the names it lacks (a secret a newer version reads) are added, its values kept."""
    if path.exists():
        text = path.read_text(encoding="utf-8")
        present = {line.partition("=")[0].strip() for line in text.splitlines() if "=" in line}
        missing = [f"{name}={value}\n" for name, value in values.items() if name not in present]
        if missing:
            with path.open("a", encoding="utf-8") as out:
                out.write(("" if text.endswith("\n") or not text else "\n") + "".join(missing))
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {header}", *(f"{name}={value}" for name, value in values.items())]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return True


def main(argv: list[str]) -> int:
    """Write the files asked for; print what was made."""
    if len(argv) != 2 or argv[0] not in ("local", "k8s"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, target = argv[0], Path(argv[1])
    header = "Random development secrets, made once by deploy/local/dev_secrets.py; not committed."
    if kind == "local":
        made = [write_once(target, service_secrets() | webhook_secrets(), header)]
        files = [target]
    else:
        files = [target / "secrets.env", target / "webhook-secrets.env"]
        made = [
            write_once(
                files[0],
                {"MONGODB_URL": DEV_MONGODB_URL, **service_secrets(), "SMTP_PASSWORD": ""},
                header,
            ),
            write_once(files[1], webhook_secrets(), header),
        ]
    for path, new in zip(files, made, strict=True):
        print(f"{'made' if new else 'kept'} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
