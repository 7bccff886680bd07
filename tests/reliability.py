"""`make reliability`: the fault and hostile-input suites, schemathesis against the running
services and a sustained webhook load, on the local stack; writes docs/reliability.md.

    python -m tests.reliability [--examples 1000] [--seconds 60] [--rate 30] [--skip-suites]

1. pytest runs every test marked `fault` or `hostile` (kills, restarts, outages; bad input);
2. intake, analytics and the notifier start against the stack (own topics and database, the
   development settings of deploy/local/dev.env), and schemathesis sends each operation of each
   service's OpenAPI document at least `--examples` generated cases (valid and invalid); the
   cases are counted by the services themselves (`/metrics`, requests by route and status);
3. signed webhooks at a fixed rate for `--seconds`; then every consumer group must drain (no
   partition stalled), the analytics API must equal a hand recount of what was taken (nothing
   lost, nothing counted twice) and no answer may be a 5xx.

Exit status 0 when everything held. Environment: as for the tests (README, "Tests").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from shared import mongo
from shared.kafka import consumer_lag, ensure_topics, topics_with_dlq
from tests.recount import assert_api_exact
from tests.support import REPO, ServiceProcess, Stack, delete_topics, start_service
from tests.webhook_load import WebhookLoad, finish, webhook_secrets

DOC = REPO / "docs" / "reliability.md"
DEV_ENV = REPO / "deploy" / "local" / "dev.env"
SERVICES = ("intake", "analytics", "notifier")
OTHER = "(all requests, as the service counted them)"
# Label values hold braces (`route="/v1/surveys/{survey_id}/summary"`): the labels run to the
# last `} ` of the line.
METRIC = re.compile(r"^http_requests_total\{(?P<labels>.*)\} (?P<value>\S+)$", re.MULTILINE)
LABEL = re.compile(r'(\w+)="([^"]*)"')
console = Console()


# --- results -------------------------------------------------------------------------------------


@dataclass
class SuiteTest:
    """One fault or hostile-input test and how it went."""

    nodeid: str
    kind: str  # "fault" or "hostile"
    what: str  # the first sentence of its module's docstring
    outcome: str = "not run"
    seconds: float = 0.0
    cases: int = 1  # parametrized cases of the same test function, once merged
    notes: list[str] = field(default_factory=list)  # what it printed about the fault


@dataclass
class Endpoint:
    """What schemathesis sent to one operation, counted by the service."""

    service: str
    method: str
    route: str  # OTHER: every request the service answered, whatever it matched
    statuses: Counter[str]
    inputs: bool = True  # the operation has parameters or a body to generate

    @property
    def cases(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status.startswith("5"))


@dataclass
class LoadResult:
    """The sustained webhook load and what it left behind."""

    target_rate: float
    seconds: float = 0.0
    taken: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    drained_seconds: float | None = None
    exact: str = "not checked"
    p99_ms: float = 0.0

    @property
    def achieved_rate(self) -> float:
        return self.taken / self.seconds if self.seconds else 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def held(self) -> bool:
        return (
            self.server_errors == 0
            and self.transport_errors == 0
            and self.drained_seconds is not None
            and self.exact == "equal"
        )


@dataclass
class Results:
    """Everything `docs/reliability.md` shows."""

    started: datetime
    tests: list[SuiteTest] = field(default_factory=list)
    endpoints: list[Endpoint] = field(default_factory=list)
    schemathesis_exit: dict[str, int] = field(default_factory=dict)
    examples: int = 0
    load: LoadResult | None = None
    services_started: datetime | None = None  # when taken from an earlier run

    def failures(self) -> list[str]:
        """What did not hold, one line each."""
        failed = [f"{t.nodeid}: {t.outcome}" for t in self.tests if t.outcome != "passed"]
        failed += [
            f"{e.service} {e.method} {e.route}: {e.server_errors} 5xx"
            for e in self.endpoints
            if e.server_errors
        ]
        failed += [
            f"schemathesis {name}: exit {code}"
            for name, code in self.schemathesis_exit.items()
            if code
        ]
        failed += [
            f"{e.service} {e.method} {e.route}: {e.cases} cases < {self.examples}"
            for e in self.endpoints
            if e.cases < self.examples and takes_input(e)
        ]
        if self.load is not None and not self.load.held:
            failed.append("sustained load: " + describe_load(self.load))
        return failed


def takes_input(endpoint: Endpoint) -> bool:
    """Operations with something to generate (parameters or a body); for the others
    (`GET /healthz`) there is only one possible request."""
    return endpoint.inputs


# --- 1. the suites -------------------------------------------------------------------------------


class Recorder:
    """A pytest plugin keeping each selected test's kind, outcome, duration and output."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("fault and hostile-input tests", total=None)
        self.tests: dict[str, SuiteTest] = {}

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            kind = "fault" if item.get_closest_marker("fault") else "hostile"
            module = getattr(item, "module", None)
            what = first_sentence((module.__doc__ if module else None) or item.name)
            self.tests[item.nodeid] = SuiteTest(item.nodeid, kind, what)
        self.progress.update(self.task, total=len(session.items))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        test = self.tests.get(report.nodeid)
        if test is None:
            return
        test.seconds += report.duration
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            test.outcome = report.outcome
            test.notes = fault_notes(report.capstdout)
        elif report.when == "teardown" and report.outcome == "failed":
            test.outcome = "failed in teardown"
        if report.when == "teardown":
            self.progress.advance(self.task)
            self.progress.update(self.task, description=f"tests: {short(report.nodeid)}")


def first_sentence(text: str) -> str:
    flat = " ".join(text.split())
    return flat.split(". ")[0].split(": ")[0].rstrip(".")


def short(nodeid: str) -> str:
    return nodeid.split("::")[-1][:60]


NOTE = re.compile(r"^(killed|restarted|answers|exact|API exact|try \d+).*$", re.MULTILINE)


def fault_notes(stdout: str) -> list[str]:
    """The lines a fault test prints about what it hit (`killed ...`, `restarted ...`)."""
    return [match.group(0).strip() for match in NOTE.finditer(stdout)][:12]


def run_suites(progress: Progress) -> list[SuiteTest]:
    """Run every `fault` and `hostile` test in this process; their results."""
    recorder = Recorder(progress)
    pytest.main(
        [
            "-m",
            "fault or hostile",
            "-q",
            "-p",
            "no:cacheprovider",
            "--no-header",
            str(REPO / "tests"),
        ],
        plugins=[recorder],
    )
    return merge_parametrized(list(recorder.tests.values()))


def merge_parametrized(tests: list[SuiteTest]) -> list[SuiteTest]:
    """One row per test function: parametrized cases counted, the worst outcome kept."""
    merged: dict[str, SuiteTest] = {}
    for test in tests:
        base = test.nodeid.split("[")[0]
        if base not in merged:
            merged[base] = SuiteTest(
                base, test.kind, test.what, test.outcome, test.seconds, 1, test.notes
            )
            continue
        row = merged[base]
        row.cases += 1
        row.seconds += test.seconds
        row.notes += test.notes
        if test.outcome != "passed":
            row.outcome = test.outcome
    return list(merged.values())


# --- 2. the services, schemathesis ---------------------------------------------------------------


def stack_from_environment() -> Stack:
    """The stack the tests use: the environment's servers, or the local stack's addresses."""
    smtp_host = os.environ.get("SMTP_HOST", "127.0.0.1")
    return Stack(
        kafka=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        mongodb_url=os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017"),
        smtp_host=smtp_host,
        smtp_port=int(os.environ.get("SMTP_PORT", "1025")),
        mail_api=os.environ.get("MAILPIT_API_URL", f"http://{smtp_host}:8025"),
    )


def dev_settings() -> dict[str, str]:
    """deploy/local/dev.env's development settings (the secrets come from `Stack.environment`)."""
    settings = {}
    for line in DEV_ENV.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            settings[name.strip()] = value.strip().strip("'\"")
    return settings


def requests_by_route(service: ServiceProcess) -> Counter[tuple[str, str, str]]:
    """(method, route, status) -> requests the service answered, from its `/metrics`."""
    text = httpx.get(f"{service.url}/metrics", timeout=10).text
    counted: Counter[tuple[str, str, str]] = Counter()
    for match in METRIC.finditer(text):
        labels = dict(LABEL.findall(match.group("labels")))
        key = (labels.get("method", ""), labels.get("route", ""), labels.get("status", ""))
        counted[key] += int(float(match.group("value")))
    return counted


ROUNDS = 6  # schemathesis runs per service at most, until every operation had its cases


# A summary's survey held to a real one, so that its cases reach the filters (a random survey id
# is only ever a 404). The webhook's path is left free: its body is raw bytes to the schema, so
# with the path held hypothesis finds a handful of distinct cases, not a thousand.
PINNED = """
[[operations]]
include-name = "GET /v1/surveys/{survey_id}/summary"
parameters = { "path.survey_id" = "cities-2024-priorities" }
"""


def schemathesis_config(directory: Path) -> Path:
    """schemathesis.toml with the pinned path parameters."""
    config = directory / "schemathesis.toml"
    config.write_text(PINNED)
    return config


def schemathesis_command(
    service: ServiceProcess, examples: int, token: str, seed: int, only: list[str], stem: Path
) -> list[str]:
    """One schemathesis run against `service` (restricted to the operations named `only`)."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(schemathesis_config(stem.parent)),
        "run",
        f"{service.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(examples),
        "--phases",
        "examples,coverage,fuzzing",
        "--no-shrink",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "all",
        "--workers",
        "2",
        "--seed",
        str(seed),
        "--header",
        f"Authorization: Bearer {token}",
        "--request-timeout",
        "30",
        "--report",
        "junit,ndjson",
        "--report-junit-path",
        str(stem.with_suffix(".xml")),
        "--report-ndjson-path",
        str(stem.with_suffix(".ndjson")),
    ]
    for name in only:
        command += ["--include-name", name]
    return command


def run_schemathesis(
    service: ServiceProcess, examples: int, token: str, report_dir: Path
) -> tuple[int, list[Endpoint]]:
    """Schemathesis against one running service until each operation that takes input was sent
    `examples` cases (hypothesis stops early on some: it runs again on those, with other seeds).

    The cases and their answers per operation are schemathesis's own (its NDJSON events: a
    generated path may match no route of the service); one more row per service is what the
    service itself answered in all (`/metrics`), 5xx included, and requests that matched none
    of its operations. Returns the worst exit code and the rows.
    """
    schema = httpx.get(f"{service.url}/openapi.json", timeout=10).json()
    operations = {
        f"{method.upper()} {path}": bool(spec.get("parameters") or spec.get("requestBody"))
        for path, methods in schema["paths"].items()
        for method, spec in methods.items()
    }
    sent: dict[str, Counter[str]] = {label: Counter() for label in operations}
    before = requests_by_route(service)
    worst, only = 0, []
    for round_ in range(ROUNDS):
        stem = report_dir / f"schemathesis-{service.name}-{round_ + 1}"
        command = schemathesis_command(service, examples, token, 20240502 + round_, only, stem)
        with stem.with_suffix(".log").open("wb") as out:
            code = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        worst = max(worst, code.returncode)
        for label, statuses in cases_sent(stem.with_suffix(".ndjson")).items():
            sent.setdefault(label, Counter()).update(statuses)
        only = [
            label
            for label, needs in operations.items()
            if needs and sum(sent[label].values()) < examples
        ]
        if not only:
            break
    answered: Counter[str] = Counter()
    for (_, route, status), count in (requests_by_route(service) - before).items():
        if route not in ("/metrics", "/openapi.json"):  # our scrapes, schemathesis's schema
            answered[status] += count
    endpoints = [
        Endpoint(service.name, *label.split(" ", 1), statuses, operations.get(label, False))
        for label, statuses in sorted(sent.items(), key=lambda item: item[0].split(" ")[::-1])
    ]
    endpoints.append(Endpoint(service.name, "", OTHER, answered, inputs=False))
    return worst, endpoints


def cases_sent(ndjson: Path) -> dict[str, Counter[str]]:
    """Operation label -> answers by status of the cases schemathesis sent, from its events;
    the file is removed after (it holds every request and answer)."""
    sent: dict[str, Counter[str]] = {}
    if not ndjson.exists():
        return sent
    with ndjson.open() as events:
        for line in events:
            if not line.startswith('{"ScenarioFinished"'):
                continue
            recorder = json.loads(line)["ScenarioFinished"]["recorder"]
            statuses = sent.setdefault(recorder["label"], Counter())
            for case_id in recorder.get("cases") or {}:
                response = ((recorder.get("interactions") or {}).get(case_id) or {}).get(
                    "response"
                ) or {}
                statuses[str(response.get("status_code", "no answer"))] += 1
    ndjson.unlink()
    return sent


# --- 3. sustained load ---------------------------------------------------------------------------


async def sustained_load(
    stack: Stack,
    environment: dict[str, str],
    intake: ServiceProcess,
    analytics: ServiceProcess,
    seconds: float,
    rate: float,
    progress: Progress,
) -> LoadResult:
    """Webhooks at `rate` a second for `seconds`; then drained groups and an exact recount."""
    result = LoadResult(rate)
    run_id = environment["MONGODB_DATABASE"].removeprefix("test_")
    load = WebhookLoad(intake.url, run_id, seed=20240502, rate=rate)
    task = progress.add_task(f"webhooks at {rate:g}/s", total=seconds)
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        # A client per webhook a second: the rate holds while answers take up to a second.
        clients = await load.run(max(4, int(rate)), http)
        began = time.monotonic()
        while (elapsed := time.monotonic() - began) < seconds:
            progress.update(
                task,
                completed=elapsed,
                description=f"webhooks at {rate:g}/s: {len(load.taken)} taken",
            )
            await asyncio.sleep(0.5)
        await finish(load, clients, within=120)
        result.seconds = time.monotonic() - began
    progress.update(task, completed=seconds)
    result.taken = len(load.taken)
    result.statuses = load.statuses()
    result.transport_errors = sum(load.errors.values())
    latencies = sorted(a.seconds for a in load.answers)
    if latencies:
        result.p99_ms = 1000 * latencies[int(0.99 * (len(latencies) - 1))]

    drain = progress.add_task("consumers draining", total=None)
    topic = environment["TOPIC_RESPONSES"]
    groups = [environment["ANALYTICS_GROUP_ID"], f"{environment['NOTIFIER_GROUP_ID']}.registry"]
    started = time.monotonic()
    while time.monotonic() - started < 300:
        lags = [await consumer_lag(stack.kafka, group, topic) for group in groups]
        progress.update(drain, description=f"consumers draining: {sum(lags)} behind")
        if sum(lags) == 0:
            result.drained_seconds = time.monotonic() - started
            break
        await asyncio.sleep(1)
    progress.update(drain, total=1, completed=1)
    if result.drained_seconds is not None:
        try:
            await assert_api_exact(environment, analytics, load.records(), random.Random(0))
            result.exact = "equal"
        except AssertionError as exc:
            result.exact = f"differs: {str(exc)[:200]}"
    return result


def describe_load(load: LoadResult) -> str:
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(load.statuses.items()))
    drained = "never" if load.drained_seconds is None else f"{load.drained_seconds:.0f} s"
    return (
        f"{load.taken} taken in {load.seconds:.0f} s ({load.achieved_rate:.1f}/s); {statuses}; "
        f"drained after {drained}; recount {load.exact}"
    )


# --- the document --------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "held" if ok else "**FAILED**"


def operation(endpoint: Endpoint) -> str:
    if endpoint.route == OTHER:
        return OTHER
    return f"`{endpoint.method} {endpoint.route}`" + ("" if endpoint.inputs else " (no input)")


def render(results: Results) -> str:
    """docs/reliability.md from the results (generated: edit this module, not the file)."""
    lines = [
        "# Reliability",
        "",
        "Generated by `make reliability` (`python -m tests.reliability`) on "
        f"{results.started:%Y-%m-%d %H:%M} UTC against the local stack; do not edit by hand.",
        "Every figure below was measured in that run"
        + (
            f" (schemathesis and load: the run of {results.services_started:%Y-%m-%d %H:%M} UTC)"
            if results.services_started
            else ""
        )
        + ". The fault tests also run in `make test`.",
        "",
        "## Faults survived",
        "",
        "Each kill, restart and outage, what it hit and what held afterwards.",
        "",
        "| fault test | what it shows | result | seconds | what it hit |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for test in (t for t in results.tests if t.kind == "fault"):
        hit = "<br>".join(note.replace("|", "/") for note in test.notes) or "-"
        lines.append(
            f"| `{test.nodeid}` | {test.what} | {verdict(test.outcome == 'passed')} "
            f"| {test.seconds:.0f} | {hit} |"
        )
    hostile = [t for t in results.tests if t.kind == "hostile"]
    lines += [
        "",
        "## Hostile input",
        "",
        "### Test suites, by category",
        "",
        "| category | cases | result |",
        "| --- | ---: | --- |",
    ]
    categories: dict[str, list[SuiteTest]] = {}
    for test in hostile:
        categories.setdefault(test.what, []).append(test)
    for what, tests in sorted(categories.items()):
        passed = all(t.outcome == "passed" for t in tests)
        lines.append(f"| {what} | {sum(t.cases for t in tests)} | {verdict(passed)} |")
    if not hostile:
        lines.append("| (no test marked `hostile` was collected) | 0 | - |")
    lines += [
        "",
        f"### Schemathesis against the running services (up to {results.examples:,} cases per "
        "operation)",
        "",
        "Valid and invalid requests generated from each service's OpenAPI document, with the "
        "operator token, counted per operation as schemathesis sent them (an operation that "
        "hypothesis left short of the count is run again with other seeds; a summary's survey is "
        "held to a real one, so that its cases get past the route); the last row of each "
        "service is every request it answered, by its own `/metrics`. Check: no answer is a 5xx.",
        "",
        "| service | operation | cases | answers | 5xx | result |",
        "| --- | --- | ---: | --- | ---: | --- |",
    ]
    for e in results.endpoints:
        answers = ", ".join(f"{s}: {n}" for s, n in sorted(e.statuses.items()))
        enough = e.cases >= results.examples or not takes_input(e)
        lines.append(
            f"| {e.service} | {operation(e)} | {e.cases:,} | {answers} | "
            f"{e.server_errors} | {verdict(e.server_errors == 0 and enough)} |"
        )
    total = sum(e.cases for e in results.endpoints)
    codes = ", ".join(f"{name} {code}" for name, code in results.schemathesis_exit.items())
    lines += ["", f"{total:,} cases in all; schemathesis exit codes: {codes or 'not run'}."]
    lines += ["", "## Load held", ""]
    if results.load is None:
        lines.append("Not run.")
    else:
        load = results.load
        lines += [
            "| measure | value |",
            "| --- | --- |",
            f"| duration | {load.seconds:.0f} s |",
            f"| target rate | {load.target_rate:g} webhooks/s |",
            f"| achieved rate | {load.achieved_rate:.1f} webhooks/s ({load.taken:,} taken) |",
            "| answers | "
            + ", ".join(f"{s}: {n:,}" for s, n in sorted(load.statuses.items()))
            + " |",
            f"| answer time, p99 | {load.p99_ms:.0f} ms |",
            "| no 5xx, no transport error | "
            + verdict(load.server_errors == 0 and not load.transport_errors)
            + " |",
            "| no partition stalled (every consumer group drained) | "
            + (
                f"held: drained {load.drained_seconds:.0f} s after the load"
                if load.drained_seconds is not None
                else "**FAILED**: never drained"
            )
            + " |",
            "| nothing lost, nothing counted twice (API = hand recount, `verify`) "
            f"| {load.exact} |",
        ]
    failures = results.failures()
    lines += ["", "## Result", ""]
    lines += ["Everything held."] if not failures else [f"- {f}" for f in failures]
    return "\n".join(lines) + "\n"


# --- main ----------------------------------------------------------------------------------------


async def services_phase(
    args: argparse.Namespace, results: Results, progress: Progress, report_dir: Path
) -> None:
    stack = stack_from_environment()
    run_id = f"rel{uuid.uuid4().hex[:8]}"
    dev = dev_settings()
    environment = {
        **stack.environment(run_id),
        **{k: v for k, v in dev.items() if k.startswith("MAIL_")},
        **webhook_secrets(),
    }
    await ensure_topics(
        stack.kafka, topics_with_dlq(environment["TOPIC_RESPONSES"], environment["TOPIC_PILOTS"])
    )
    started = {name: start_service(name, environment, report_dir) for name in SERVICES}
    try:
        for service in started.values():
            await asyncio.to_thread(service.wait_ready, 120)
        if args.examples:
            task = progress.add_task("schemathesis", total=len(SERVICES))
            for name, service in started.items():
                progress.update(task, description=f"schemathesis: {name}")
                code, endpoints = await asyncio.to_thread(
                    run_schemathesis,
                    service,
                    args.examples,
                    environment["OPERATOR_TOKEN"],
                    report_dir,
                )
                results.schemathesis_exit[name] = code
                results.endpoints += endpoints
                progress.advance(task)
        if args.seconds:
            results.load = await sustained_load(
                stack,
                environment,
                started["intake"],
                started["analytics"],
                args.seconds,
                args.rate,
                progress,
            )
    finally:
        for service in started.values():
            if service.process.poll() is None:
                service.terminate()
        await delete_topics(stack.kafka, f"test-{run_id}.")
        client = mongo.new_client(stack.mongodb_url)
        await client.drop_database(environment["MONGODB_DATABASE"])
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--examples", type=int, default=1000, help="schemathesis cases per operation (0: skip)"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="sustained load (0: skip)")
    parser.add_argument("--rate", type=float, default=30.0, help="webhooks per second")
    parser.add_argument("--skip-suites", action="store_true", help="no pytest suites")
    parser.add_argument(
        "--services-from",
        type=Path,
        help="take schemathesis and load figures from an earlier run's results.json",
    )
    parser.add_argument("--output", type=Path, default=DOC)
    args = parser.parse_args()
    results = Results(datetime.now(UTC), examples=args.examples)
    report_dir = REPO / "bench-results" / "reliability"
    report_dir.mkdir(parents=True, exist_ok=True)
    earlier = None if args.services_from is None else json.loads(args.services_from.read_text())
    if earlier is not None and "started" not in earlier:  # written when that run ended
        ended = datetime.fromtimestamp(args.services_from.stat().st_mtime, UTC)
        earlier["started"] = ended.isoformat()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        if not args.skip_suites:
            results.tests = run_suites(progress)
        if earlier is None:
            asyncio.run(services_phase(args, results, progress, report_dir))
        else:
            services_from(earlier, results)
    args.output.write_text(render(results))
    (report_dir / "results.json").write_text(json.dumps(summary(results), indent=2))
    failures = results.failures()
    for line in failures:
        console.print(f"[red]{line}")
    console.print(
        f"{args.output} written; "
        + ("[green]everything held" if not failures else "[red]failures above")
    )
    return 1 if failures else 0


def summary(results: Results) -> dict[str, Any]:
    """The results as JSON (bench-results/reliability/results.json)."""
    return {
        "started": results.started.isoformat(),
        "examples": results.examples,
        "tests": [t.__dict__ for t in results.tests],
        "endpoints": [
            {
                "service": e.service,
                "method": e.method,
                "route": e.route,
                "statuses": dict(e.statuses),
                "inputs": e.inputs,
            }
            for e in results.endpoints
        ],
        "schemathesis_exit": results.schemathesis_exit,
        "load": None
        if results.load is None
        else {**results.load.__dict__, "statuses": dict(results.load.statuses)},
        "failures": results.failures(),
    }


def services_from(earlier: dict[str, Any], results: Results) -> None:
    """Schemathesis and load figures of an earlier run (`summary`'s JSON); operations without
    input are told from the services' OpenAPI documents, built here without any server."""
    operations = openapi_operations()
    results.services_started = (
        datetime.fromisoformat(earlier["started"]) if "started" in earlier else None
    )
    results.examples = earlier.get("examples", results.examples)
    results.schemathesis_exit = earlier["schemathesis_exit"]
    results.endpoints = [
        Endpoint(
            e["service"],
            e["method"],
            e["route"],
            Counter(e["statuses"]),
            e.get("inputs", operations.get((e["service"], e["method"], e["route"]), False)),
        )
        for e in earlier["endpoints"]
    ]
    if (load := earlier.get("load")) is not None:
        statuses = Counter({int(status): n for status, n in load.pop("statuses").items()})
        results.load = LoadResult(**{**load, "statuses": statuses})


def openapi_operations() -> dict[tuple[str, str, str], bool]:
    """(service, method, path) -> whether the operation takes input, from each app's schema."""
    from services.analytics.app import create_app as analytics_app
    from services.analytics.settings import AnalyticsSettings
    from services.intake.app import create_app as intake_app
    from services.intake.settings import IntakeSettings
    from services.notifier.app import create_app as notifier_app
    from services.notifier.settings import NotifierSettings

    os.environ.update({k: v for k, v in dev_settings().items() if k not in os.environ})
    apps = {
        "intake": intake_app(IntakeSettings()),
        "analytics": analytics_app(AnalyticsSettings()),
        "notifier": notifier_app(NotifierSettings()),
    }
    return {
        (name, method.upper(), path): bool(spec.get("parameters") or spec.get("requestBody"))
        for name, app in apps.items()
        for path, methods in app.openapi()["paths"].items()
        for method, spec in methods.items()
    }


if __name__ == "__main__":
    raise SystemExit(main())
