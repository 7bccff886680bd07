"""The deployment files, checked offline: the image, docker-compose.yml, the Kubernetes overlays.

The Kubernetes overlays are rendered by kustomize and validated against the Kubernetes schemas
(`kubernetes-validate` ships them); the Compose file is loaded by the compose-spec reference loader
(`composecheck`, the loader `docker compose` itself uses). Both tools are built once by
`make deploy-tools` into `.stack/bin`. No Docker engine, cluster or network is needed.
"""

from __future__ import annotations

import base64
import http.server
import importlib.util
import json
import os
import re
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import TypeAdapter
from pydantic_settings import BaseSettings

from services.analytics.settings import AnalyticsSettings
from services.intake.settings import SURVEYS_DIR, IntakeSettings
from services.intake.surveys import SurveyCatalog
from services.notifier.settings import NotifierSettings
from shared import topics
from shared.serve import GRACEFUL_SHUTDOWN_SECONDS
from shared.settings import secret_problem

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())
TOOLS_BIN = REPO / ".stack" / "bin"
COMPOSE_FILE = REPO / "docker-compose.yml"

SETTINGS: dict[str, type[BaseSettings]] = {
    "intake": IntakeSettings,
    "analytics": AnalyticsSettings,
    "notifier": NotifierSettings,
}
CONSUMERS = ("analytics", "notifier")
# A service stops within this bound after SIGTERM (tests/e2e/test_shutdown.py holds it to it).
SHUTDOWN_BOUND_SECONDS = 10
# The oldest Kubernetes minor release the manifests must be valid for, and the newest known.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())

# The first run builds kustomize and composecheck from their Go modules (a minute or two).
pytestmark = pytest.mark.timeout(1200)

Manifest = dict[str, Any]


# --- helpers ---------------------------------------------------------------------------------


def env_names(settings: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads."""
    return {name.upper() for name in settings.model_fields}


def webhook_secret_names() -> set[str]:
    """`WEBHOOK_SECRET_<SURVEY>_<SOURCE>` of every source of every shipped survey."""
    catalog = SurveyCatalog.load(SURVEYS_DIR)
    names: set[str] = set()
    for survey_id in sorted(_survey_ids()):
        survey = catalog.get(survey_id)
        assert survey is not None
        names |= {survey.secret_env(source) for source in survey.sources}
    return names


def _survey_ids() -> set[str]:
    ids: set[str] = set()
    for path in SURVEYS_DIR.glob("*.y*ml"):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(document, dict) and "id" in document:
            ids.add(str(document["id"]))
    return ids


def of_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def pod_spec(workload: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def only_container(workload: Manifest) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: one container per pod"
    container: dict[str, Any] = containers[0]
    return container


def compose(*files: Path, environment: dict[str, str] | None = None) -> dict[str, Any]:
    """The project as `docker compose config` would resolve it, from a clean environment."""
    answer = subprocess.run(
        [str(TOOLS_BIN / "composecheck"), *map(str, files)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", ""), **(environment or {})},
        timeout=60,
    )
    assert answer.returncode == 0, answer.stderr
    project: dict[str, Any] = json.loads(answer.stdout)
    return project


def load_healthcheck() -> ModuleType:
    path = REPO / "deploy" / "docker" / "healthcheck.py"
    spec = importlib.util.spec_from_file_location("image_healthcheck", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pins(lock: Path) -> dict[str, str]:
    """`name==version` of a lock file, names normalised."""
    text = lock.read_text(encoding="utf-8")
    return {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in re.findall(r"^([A-Za-z0-9][A-Za-z0-9_.\-]*)==(\S+)", text, re.M)
    }


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def deploy_tools() -> Path:
    """kustomize and composecheck, built by the Makefile when missing (cached in .stack/bin)."""
    built = subprocess.run(
        ["make", "-s", "deploy-tools"], cwd=REPO, capture_output=True, text=True, timeout=1100
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return TOOLS_BIN


@pytest.fixture(scope="session")
def rendered(deploy_tools: Path) -> dict[str, list[Manifest]]:
    """Every overlay, rendered by kustomize."""
    # The dev overlay's random secrets live in git-ignored files, made once per checkout.
    made = subprocess.run(
        ["make", "-s", "k8s-dev-secrets"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert made.returncode == 0, made.stdout + made.stderr
    result: dict[str, list[Manifest]] = {}
    for overlay in OVERLAYS:
        answer = subprocess.run(
            [str(deploy_tools / "kustomize"), "build", str(K8S / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert answer.returncode == 0, f"kustomize build {overlay}: {answer.stderr}"
        result[overlay] = [doc for doc in yaml.safe_load_all(answer.stdout) if doc]
    return result


@pytest.fixture(scope="session")
def project(deploy_tools: Path) -> dict[str, Any]:
    return compose(COMPOSE_FILE)


# --- Kubernetes ------------------------------------------------------------------------------


def test_render_overlays_dev_and_prod() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_validate_overlay_against_kubernetes_schemas(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert {"ConfigMap", "Job"} <= kinds
    for manifest in manifests:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(
                    f"{overlay}: {manifest['kind']} {manifest['metadata']['name']} is not valid "
                    f"for Kubernetes {version}: {'.'.join(map(str, exc.path))}: {exc.message}"
                )


def test_validate_rejects_an_invalid_manifest() -> None:
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "x"}]}}, "rep": 1},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_run_each_service_with_its_command_port_and_probes(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    deployments = of_kind(rendered[overlay], "Deployment")
    services = of_kind(rendered[overlay], "Service")
    assert set(deployments) == set(SETTINGS)
    for name, deployment in deployments.items():
        container = only_container(deployment)
        assert container["command"] == ["python", "-m", f"services.{name}"]
        port = SETTINGS[name].model_fields[f"{name}_port"].default
        assert [p["containerPort"] for p in container["ports"]] == [port]
        port_name = container["ports"][0]["name"]
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert probe in container, f"{overlay}/{name}: no {probe}"
            assert container[probe]["httpGet"] == {"path": path, "port": port_name}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        service = services[name]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert [p["port"] for p in service["spec"]["ports"]] == [port]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscale_consumers_no_further_than_the_partitions(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    deployments = of_kind(rendered[overlay], "Deployment")
    autoscalers = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"]
        for hpa in of_kind(rendered[overlay], "HorizontalPodAutoscaler").values()
    }
    assert set(autoscalers) == set(deployments), "every Deployment has its autoscaler"
    for name, spec in autoscalers.items():
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
        # A `replicas` in the Deployment would fight the autoscaler on every apply.
        assert "replicas" not in deployments[name]["spec"], name
    (config,) = of_kind(rendered[overlay], "ConfigMap").values()
    partitions = int(config["data"].get("KAFKA_TOPIC_PARTITIONS", topics.PARTITIONS))
    for name in CONSUMERS:
        assert autoscalers[name]["maxReplicas"] <= partitions, (
            f"{overlay}/{name}: replicas beyond the {partitions} partitions would idle"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_protect_each_deployment_with_a_disruption_budget(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    budgets = of_kind(rendered[overlay], "PodDisruptionBudget").values()
    for name, deployment in of_kind(rendered[overlay], "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(covering) == 1, f"{overlay}/{name}: one PodDisruptionBudget"
        # maxUnavailable lets a node drain even with one replica; minAvailable 1 would block it.
        assert covering[0]["spec"].get("maxUnavailable") == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stop_within_the_termination_grace_period(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    assert GRACEFUL_SHUTDOWN_SECONDS < SHUTDOWN_BOUND_SECONDS
    for name, deployment in of_kind(rendered[overlay], "Deployment").items():
        container = only_container(deployment)
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        assert grace >= int(command[1]) + SHUTDOWN_BOUND_SECONDS, name
        assert grace <= 60, f"{name}: a stuck pod should not hold a rollout for long"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_harden_every_pod(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    workloads = {
        **of_kind(rendered[overlay], "Deployment"),
        **of_kind(rendered[overlay], "Job"),
    }
    for name, workload in workloads.items():
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        # Service links would put e.g. INTAKE_PORT=tcp://10.0.0.1:8000 into the environment.
        assert spec["enableServiceLinks"] is False, name
        assert spec["automountServiceAccountToken"] is False, name
        container = only_container(workload)
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), f"{name}: {kind}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_provision_topics_with_a_job(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    jobs = of_kind(rendered[overlay], "Job")
    commands = [only_container(job)["command"] for job in jobs.values()]
    assert ["python", "-m", "shared.kafka_topics"] in commands


def test_replicate_topics_three_times_in_prod(rendered: dict[str, list[Manifest]]) -> None:
    (config,) = of_kind(rendered["prod"], "ConfigMap").values()
    assert int(config["data"]["KAFKA_TOPIC_REPLICATION_FACTOR"]) >= 3
    (dev_config,) = of_kind(rendered["dev"], "ConfigMap").values()
    assert dev_config["data"]["KAFKA_TOPIC_REPLICATION_FACTOR"] == "1", "a one-broker dev cluster"
    for job in of_kind(rendered["prod"], "Job").values():
        refs = [source.get("configMapRef") for source in only_container(job)["envFrom"]]
        assert {"name": config["metadata"]["name"]} in refs, "the topic Job reads the settings"


SMTP_TLS = ("SMTP_STARTTLS", "SMTP_IMPLICIT_TLS")


def test_send_email_over_tls_in_prod(rendered: dict[str, list[Manifest]]) -> None:
    (config,) = of_kind(rendered["prod"], "ConfigMap").values()
    flag = TypeAdapter(bool)  # read as the settings read it
    tls = [flag.validate_python(config["data"].get(name, "false")) for name in SMTP_TLS]
    assert tls.count(True) == 1, f"prod sends email in plain text, or {SMTP_TLS} both set"


def test_pin_images_in_prod(rendered: dict[str, list[Manifest]]) -> None:
    workloads = [m for m in rendered["prod"] if m["kind"] in ("Deployment", "Job")]
    assert workloads
    for workload in workloads:
        image = only_container(workload)["image"]
        if "@sha256:" in image:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{image}: no tag"
        assert tag != "latest", f"{image}: a moving tag in prod"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configure_services_only_with_settings_they_read(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    known = set().union(*map(env_names, SETTINGS.values()))
    webhooks = webhook_secret_names()
    config_maps = of_kind(manifests, "ConfigMap")
    assert len(config_maps) == 1
    (config,) = config_maps.values()
    assert set(config["data"]) <= known, set(config["data"]) - known
    for name, deployment in of_kind(manifests, "Deployment").items():
        container = only_container(deployment)
        own = {variable["name"] for variable in container["env"]}
        assert own <= env_names(SETTINGS[name]), f"{name}: {own - env_names(SETTINGS[name])}"
        refs = [
            source.get("configMapRef", source.get("secretRef")) for source in container["envFrom"]
        ]
        assert {"name": config["metadata"]["name"]} in refs, f"{name}: the ConfigMap"
    secrets = of_kind(manifests, "Secret")
    for secret in secrets.values():
        keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
        assert keys <= known | webhooks, keys - known - webhooks


def test_render_placeholder_secrets_in_dev_only(rendered: dict[str, list[Manifest]]) -> None:
    referenced: set[str] = set()
    for deployment in of_kind(rendered["prod"], "Deployment").values():
        container = only_container(deployment)
        referenced |= {s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s}
        referenced |= {
            v["valueFrom"]["secretKeyRef"]["name"] for v in container["env"] if "valueFrom" in v
        }
    assert referenced
    assert not of_kind(rendered["prod"], "Secret"), "prod must not overwrite the real secrets"
    assert referenced <= set(of_kind(rendered["dev"], "Secret"))


def test_render_no_secret_value_from_the_repository(
    deploy_tools: Path, rendered: dict[str, list[Manifest]]
) -> None:
    # The base ships the keys with empty values, which every service refuses; the dev overlay's
    # values come from git-ignored files; prod renders none.
    base = subprocess.run(
        [str(deploy_tools / "kustomize"), "build", str(K8S / "base")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert base.returncode == 0, base.stderr
    manifests = [doc for doc in yaml.safe_load_all(base.stdout) if doc]
    for secret in of_kind(manifests, "Secret").values():
        for name, value in secret.get("stringData", {}).items():
            if name != "MONGODB_URL":
                assert secret_problem(name, str(value)) is not None, name
    dev = K8S / "overlays" / "dev"
    sources = [dev / "secrets.env", dev / "webhook-secrets.env"]
    ignored = subprocess.run(
        ["git", "check-ignore", *map(str, sources)], cwd=REPO, capture_output=True, text=True
    )
    assert ignored.stdout.split() == [str(path) for path in sources]
    for secret in of_kind(rendered["dev"], "Secret").values():
        for name, value in secret.get("data", {}).items():
            if name.endswith(("_TOKEN", "_SECRET")) or name.startswith("WEBHOOK_SECRET_"):
                decoded = base64.b64decode(value).decode()
                assert secret_problem(name, decoded) is None, name


# --- network policies ------------------------------------------------------------------------

KAFKA_PORTS = {9092, 9093}
MONGODB_PORT = 27017
SMTP_PORTS = {25, 465, 587, 1025}
DNS_PORT = 53
# Who may reach what (docs/security.md, "Network").
KAFKA_CLIENTS = {"intake", "analytics", "notifier", "topics"}
MONGODB_CLIENTS = {"intake", "analytics", "notifier"}
OPEN_TO_OUTSIDE = {"intake", "notifier"}
# Any other pod someone runs in the namespace (a debug shell, a compromised sidecar's pod).
INTRUDER = {"app.kubernetes.io/name": "debug-shell"}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions with In) matches `labels`."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", f"unsupported selector {expression}"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def policy_rules(manifests: list[Manifest], labels: dict[str, str], kind: str) -> list[Any]:
    """The `ingress` or `egress` rules that apply to a pod with `labels`."""
    return [
        rule
        for policy in of_kind(manifests, "NetworkPolicy").values()
        if selects(policy["spec"]["podSelector"], labels)
        and kind.capitalize() in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get(kind, [])
    ]


def egress_ports(manifests: list[Manifest], labels: dict[str, str]) -> set[int]:
    """Ports a pod with `labels` may connect to (named ports never appear in egress here)."""
    ports: set[int] = set()
    for rule in policy_rules(manifests, labels, "egress"):
        assert rule.get("to"), f"an egress rule to anywhere: {rule}"
        assert rule.get("ports"), f"an egress rule on every port: {rule}"
        ports |= {int(port["port"]) for port in rule["ports"]}
    return ports


def workload_labels(manifests: list[Manifest]) -> dict[str, dict[str, str]]:
    workloads = {**of_kind(manifests, "Deployment"), **of_kind(manifests, "Job")}
    return {name: w["spec"]["template"]["metadata"]["labels"] for name, w in workloads.items()}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deny_all_traffic_by_default(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    policies = of_kind(rendered[overlay], "NetworkPolicy").values()
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, f"{overlay}: no default-deny NetworkPolicy"
    # Any other pod of the namespace resolves names and nothing else.
    assert policy_rules(rendered[overlay], INTRUDER, "ingress") == []
    assert egress_ports(rendered[overlay], INTRUDER) == {DNS_PORT}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_take_outside_traffic_only_at_intake_and_notifier(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    open_to_all = set()
    for name, labels in workload_labels(manifests).items():
        for rule in policy_rules(manifests, labels, "ingress"):
            assert rule.get("ports"), f"{overlay}/{name}: ingress on every port"
            if not rule.get("from"):
                open_to_all.add(name)
                continue
            for peer in rule["from"]:
                # Analytics: the ingress controller's and the scraper's namespaces, no pod of
                # this namespace and no address block.
                assert set(peer) == {"namespaceSelector"}, f"{overlay}/{name}: {peer}"
    assert open_to_all == OPEN_TO_OUTSIDE
    assert policy_rules(manifests, workload_labels(manifests)["topics"], "ingress") == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_reach_kafka_mongodb_and_smtp_only_from_the_services(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    labels = workload_labels(manifests)
    assert set(labels) == {"intake", "analytics", "notifier", "topics"}
    for name, pod in labels.items():
        ports = egress_ports(manifests, pod)
        assert DNS_PORT in ports, f"{overlay}/{name}: no DNS"
        assert bool(ports & KAFKA_PORTS) == (name in KAFKA_CLIENTS), f"{overlay}/{name}: Kafka"
        assert (MONGODB_PORT in ports) == (name in MONGODB_CLIENTS), f"{overlay}/{name}: MongoDB"
        assert bool(ports & SMTP_PORTS) == (name == "notifier"), f"{overlay}/{name}: SMTP"
        allowed = {DNS_PORT, *KAFKA_PORTS, MONGODB_PORT, *SMTP_PORTS}
        assert ports <= allowed, f"{overlay}/{name}: egress to {ports - allowed}"


def test_let_in_namespace_servers_take_only_their_clients_in_dev(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["dev"]
    pods = {**workload_labels(manifests), "intruder": INTRUDER}
    for server, clients in (
        ("kafka", KAFKA_CLIENTS),
        ("mongodb", MONGODB_CLIENTS),
        ("smtp", {"notifier"}),
    ):
        rules = policy_rules(manifests, {"app.kubernetes.io/name": server}, "ingress")
        assert rules, f"dev {server}: no policy"
        admitted = {
            name
            for name, pod in pods.items()
            for rule in rules
            if any(selects(peer["podSelector"], pod) for peer in rule["from"])
        }
        assert admitted == clients, f"dev {server}: {admitted}"


def test_send_prod_kafka_over_sasl_ssl_with_each_service_user(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["prod"]
    (config,) = of_kind(manifests, "ConfigMap").values()
    assert config["data"]["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["data"]["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    ca_file = Path(config["data"]["KAFKA_SSL_CA_FILE"])
    workloads = {**of_kind(manifests, "Deployment"), **of_kind(manifests, "Job")}
    for name, workload in workloads.items():
        container = only_container(workload)
        # Its own user: a leaked password or a compromised pod has only that service's rights.
        refs = [
            source["secretRef"]["name"] for source in container["envFrom"] if "secretRef" in source
        ]
        assert f"cities-survey-kafka-{name}" in refs, name
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert str(ca_file.parent) in mounts, f"{name}: the Kafka CA is not mounted"
        assert mounts[str(ca_file.parent)].get("readOnly") is True
    for secret in of_kind(rendered["dev"], "Secret").values():
        if secret["metadata"]["name"].startswith("cities-survey-kafka-"):
            assert set(secret["stringData"]) == {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"}


# --- the image -------------------------------------------------------------------------------


def test_install_image_from_the_hashed_runtime_lock() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(
        r"pip install[^\n]*--require-hashes[^\n]*-r requirements\.runtime\.lock", dockerfile
    )
    runtime, full = pins(REPO / "requirements.runtime.lock"), pins(REPO / "requirements.lock")
    lock_text = (REPO / "requirements.runtime.lock").read_text(encoding="utf-8")
    assert "--hash=sha256:" in lock_text
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock_text.split("\n", 2)[2].strip())
    assert all("--hash=sha256:" in block for block in blocks if "==" in block)
    drift = {name: (v, full.get(name)) for name, v in runtime.items() if full.get(name) != v}
    assert not drift, f"runtime lock and requirements.lock disagree: {drift} (run make lock)"
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {re.split(r"[\[<>=~; ]", d)[0].lower() for d in project["dependencies"]}
    assert {re.sub(r"[-_.]+", "-", name) for name in wanted} <= set(runtime)
    dev_only = {
        re.split(r"[\[<>=~; ]", d)[0].lower() for d in project["optional-dependencies"]["dev"]
    }
    assert not ({"pytest", "mypy", "ruff"} & dev_only & set(runtime)), "dev tools in the image"


def test_build_a_slim_multistage_nonroot_image_with_a_healthcheck() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert len(bases) >= 2 and all(base.split("@")[0].endswith("-slim") for base in bases)
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*healthcheck\.py\", \"/healthz\"", dockerfile, re.M)
    ignore = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", ".dockerignore lets in only what the image needs"
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M):
        for path in source.split():
            assert any(path.rstrip("/") == a or path.startswith(a + "/") for a in allowed), path


def test_check_health_of_the_service_the_container_runs() -> None:
    healthcheck = load_healthcheck()
    assert healthcheck.service_of(["python", "-m", "services.analytics", "serve"]) == "analytics"
    under_init = ["/sbin/docker-init", "--", "python", "-m", "services.notifier"]
    assert healthcheck.service_of(under_init) == "notifier"
    with pytest.raises(ValueError):
        healthcheck.service_of(["python", "-m", "shared.kafka_topics"])
    for name, settings in SETTINGS.items():
        default = settings.model_fields[f"{name}_port"].default
        assert healthcheck.port_of(name, {}) == default
        assert healthcheck.port_of(name, {f"{name.upper()}_PORT": "9100"}) == 9100


@pytest.fixture
def health_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_check_health_answers_by_status(health_server: str) -> None:
    healthcheck = load_healthcheck()
    assert healthcheck.check(f"{health_server}/healthz") is True
    assert healthcheck.check(f"{health_server}/readyz") is False
    assert healthcheck.check("http://127.0.0.1:9/healthz", timeout=1) is False


# --- docker-compose.yml ----------------------------------------------------------------------


def test_load_compose_file_with_the_reference_loader(project: dict[str, Any]) -> None:
    assert {"kafka", "mongodb", "mailpit", "topics", *SETTINGS} <= set(project["services"])


def test_load_compose_rejects_an_invalid_file(deploy_tools: Path, tmp_path: Path) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text(
        "services:\n  a:\n    image: x\n    depends_on: {b: {condition: when_ready}}\n"
        "  b:\n    image: y\n",
        encoding="utf-8",
    )
    answer = subprocess.run(
        [str(deploy_tools / "composecheck"), str(broken)], capture_output=True, text=True
    )
    assert answer.returncode == 1
    assert "condition" in answer.stderr


def test_compose_runs_the_official_images(project: dict[str, Any]) -> None:
    services = project["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    kafka = services["kafka"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"], "KRaft: the broker is its own controller"
    assert int(kafka["KAFKA_NUM_PARTITIONS"]) == topics.PARTITIONS
    assert services["mongodb"]["image"].startswith("mongo:8.")
    assert "--replSet" in " ".join(services["mongodb"]["entrypoint"])
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")
    assert any(p["target"] == 8025 for p in services["mailpit"]["ports"])


def test_compose_waits_for_healthy_dependencies(project: dict[str, Any]) -> None:
    services = project["services"]
    for name in ("kafka", "mongodb", "mailpit", *SETTINGS):
        test = services[name].get("healthcheck", {}).get("test")
        assert test and not services[name]["healthcheck"].get("disable"), f"{name}: healthcheck"
    topics_job = services["topics"]
    assert topics_job["command"] == ["python", "-m", "shared.kafka_topics"]
    assert topics_job["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert topics_job.get("restart", "no") == "no"
    for name in SETTINGS:
        service = services[name]
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert "/readyz" in service["healthcheck"]["test"], f"{name}: healthy means ready"
        conditions = {dep: spec["condition"] for dep, spec in service["depends_on"].items()}
        assert conditions["kafka"] == "service_healthy"
        assert conditions["mongodb"] == "service_healthy"
        assert conditions["topics"] == "service_completed_successfully"
    assert services["notifier"]["depends_on"]["mailpit"]["condition"] == "service_healthy"


def test_compose_scales_the_consumers(deploy_tools: Path, tmp_path: Path) -> None:
    # The same as `docker compose up --scale analytics=3 --scale notifier=2`.
    scaled = tmp_path / "scale.yml"
    scaled.write_text("services:\n  analytics: {scale: 3}\n  notifier: {scale: 2}\n", "utf-8")
    services = compose(COMPOSE_FILE, scaled)["services"]
    for name, replicas in (("analytics", 3), ("notifier", 2)):
        service = services[name]
        assert service["scale"] == replicas
        assert "container_name" not in service, f"{name}: a fixed name cannot be scaled"
        for port in service.get("ports", []):
            published = str(port.get("published", ""))
            if not published:
                continue  # an ephemeral host port per replica
            low, _, high = published.partition("-")
            assert high, f"{name}: fixed host port {published} would clash between replicas"
            assert int(high) - int(low) + 1 >= topics.PARTITIONS, f"{name}: range too small"


def test_compose_sets_only_settings_the_services_read(project: dict[str, Any]) -> None:
    # deploy/local/dev.env is one file for the three, so a name may be read by another service.
    known = set().union(*map(env_names, SETTINGS.values())) | webhook_secret_names()
    for name in (*SETTINGS, "topics"):
        environment = set(project["services"][name]["environment"])
        assert not environment - known, f"{name}: {environment - known}"
        assert {"KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL"} <= environment, name


def test_compose_publishes_ports_on_loopback_only(project: dict[str, Any]) -> None:
    published = 0
    for name, service in project["services"].items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name}: port {port['target']} on all hosts"
            published += 1
    assert published >= 6  # intake, analytics, notifier, Kafka, MongoDB, Mailpit


def test_compose_limits_every_container(project: dict[str, Any]) -> None:
    for name, service in project["services"].items():
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert float(limits.get("cpus", 0)) > 0, f"{name}: no CPU limit"
        assert int(limits.get("memory", 0)) > 0, f"{name}: no memory limit"


def test_compose_pins_every_image(project: dict[str, Any]) -> None:
    for name, service in project["services"].items():
        if "build" in service:
            continue  # the project's image, built from the Dockerfile (checked below)
        image = service["image"]
        _, _, tag = image.split("@")[0].rpartition(":")
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not an exact version"
        digest = image.partition("@")[2]
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{name}: {image} has no digest"
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    for base in re.findall(r"^FROM (\S+)", dockerfile, re.M):
        assert re.search(r":\d+\.\d+\.\d+-slim@sha256:[0-9a-f]{64}$", base), base


def test_compose_runs_mongodb_with_authentication(project: dict[str, Any]) -> None:
    mongodb = project["services"]["mongodb"]
    environment = mongodb["environment"]
    assert environment["MONGO_INITDB_ROOT_USERNAME"] and environment["MONGO_INITDB_ROOT_PASSWORD"]
    # A replica set with authentication: its members authenticate with the key file.
    assert "--keyFile" in " ".join(mongodb["entrypoint"])
    assert "MONGO_INITDB_ROOT_PASSWORD" in " ".join(mongodb["healthcheck"]["test"])
    (mount,) = [
        v for v in mongodb["volumes"] if v["target"].startswith("/docker-entrypoint-initdb.d/")
    ]
    assert mount["read_only"] is True
    script = Path(mount["source"]).read_text(encoding="utf-8")
    # The services' user: read and write on the application database, nothing more.
    assert re.findall(r"role: \"(\w+)\"", script) == ["readWrite"]
    database = environment["MONGODB_DATABASE"]
    for name in (*SETTINGS, "topics"):
        url = project["services"][name]["environment"]["MONGODB_URL"]
        user = f"{environment['MONGODB_APP_USERNAME']}:{environment['MONGODB_APP_PASSWORD']}@"
        assert user in url, f"{name}: not the services' user"
        assert environment["MONGO_INITDB_ROOT_USERNAME"] + ":" not in url, f"{name}: root"
        assert f"authSource={database}" in url


def test_document_every_setting_in_env_example() -> None:
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, re.M))
    every_setting = set().union(*map(env_names, SETTINGS.values()))
    missing = every_setting - documented
    assert not missing, f".env.example lacks {sorted(missing)}"
    compose_variables = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text("utf-8")))
    assert compose_variables <= documented, compose_variables - documented
    unknown = {
        name
        for name in documented - every_setting - compose_variables
        if not name.startswith("WEBHOOK_SECRET_")
    }
    assert not unknown, f".env.example names what nothing reads: {sorted(unknown)}"
