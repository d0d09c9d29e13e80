"""Checks the Dockerfile, docker-compose.yml and Kubernetes manifests without a container engine."""

import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

from services.common import config

ROOT = pathlib.Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
SERVICES = ("orchestrator", "user_unit", "chat_unit", "llm_unit", "db_unit")
PORTS = {"orchestrator": 50051, "user_unit": 50052, "chat_unit": 50053, "llm_unit": 50054, "db_unit": 50055}
# The oldest Kubernetes with native gRPC probes enabled by default (beta in 1.24, GA in 1.27).
KUBERNETES_VERSION = "1.27"
_SETTING = re.compile(
    r"""config\.(required|optional|integer|milliseconds|url|choice|port|listen_address)\(\s*["']([A-Z0-9_]+)["']""")
# UnitSettings.read_env("USER_UNIT", ...) reads USER_UNIT_PORT, _DATABASE_URL (required), _DATABASE_SCHEMA,
# and the internal token and server TLS every unit reads.
_UNIT_SETTINGS = re.compile(r"""read_env\(\s*["']([A-Z0-9_]+)["']""")
# Readers of settings whose names are fixed: the names each reads.
_FIXED = {"internal_token": (config.INTERNAL_TOKEN,), "server_tls": config.SERVER_TLS_SETTINGS,
          "unit_tls": config.UNIT_TLS_SETTINGS}
_FIXED_READER = re.compile(rf"""config\.({'|'.join(_FIXED)})\(""")
UNITS = SERVICES[1:]
TOKEN = "LLMCHATLINKER_INTERNAL_TOKEN"


def settings_read_by(service: str) -> tuple[set[str], set[str]]:
    """(every LLMCHATLINKER_* variable the service's config.py reads, the required ones)."""
    source = (ROOT / "services" / service / "config.py").read_text()
    found = _SETTING.findall(source)
    for unit in _UNIT_SETTINGS.findall(source):
        found += [("listen_address", f"{unit}_PORT"), ("required", f"{unit}_DATABASE_URL"),
                  ("optional", f"{unit}_DATABASE_SCHEMA")]
        found += [(reader, name) for reader in ("internal_token", "server_tls") for name in _FIXED[reader]]
    found += [(reader, name) for reader in _FIXED_READER.findall(source) for name in _FIXED[reader]]
    assert found, f"no settings found in services/{service}/config.py"
    names = {"LLMCHATLINKER_" + name for _, name in found} | {"LLMCHATLINKER_HOST"}  # HOST: listen_address
    # What every service's main() reads through services.common.telemetry.start().
    names |= {f"LLMCHATLINKER_{service.upper()}_METRICS_PORT", "LLMCHATLINKER_LOG_LEVEL", "LLMCHATLINKER_LOG_FORMAT"}
    required = {"LLMCHATLINKER_" + name for kind, name in found if kind == "required"}
    return names, required


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def compose_service(service: str) -> dict:
    return compose()["services"][service.replace("_", "-")]


def kubernetes_documents() -> list[dict]:
    documents = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def kubernetes_objects(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in kubernetes_documents() if doc["kind"] == kind}


def container_of(service: str) -> dict:
    deployment = kubernetes_objects("Deployment")[service.replace("_", "-")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def container_env_names(container: dict) -> set[str]:
    names = {item["name"] for item in container.get("env", [])}
    config_maps = kubernetes_objects("ConfigMap")
    for source in container.get("envFrom", []):
        names |= set(config_maps[source["configMapRef"]["name"]]["data"])
    return names


# Dockerfile and .dockerignore.

def test_dockerfile_generates_code_and_runs_the_launcher():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    assert "python -m tools.protogen gen" in dockerfile
    assert "PYTHONPATH" not in dockerfile, "the image installs its packages; no path is assembled by hand"
    for package in ("./wire", "./gen", "."):
        assert re.search(rf"^RUN .*pip install .*(?<= ){re.escape(package)}(\s|$)", dockerfile, re.M), package
    assert 'ENTRYPOINT ["llmchatlinker"]' in dockerfile


def test_dockerfile_pins_the_protoc_plugin_as_the_project_does():
    pinned = re.search(r'"(mypy-protobuf==[^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert pinned in (ROOT / "Dockerfile").read_text()


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "gen", "var"} <= ignored


# docker-compose.yml.

def test_compose_runs_every_service_with_postgres_and_rabbitmq():
    services = compose()["services"]
    assert {"postgres", "rabbitmq"} <= set(services)
    for service in SERVICES:
        assert compose_service(service)["command"] == ["serve", service]


@pytest.mark.parametrize("service", SERVICES)
def test_compose_checks_health_through_grpc_health(service):
    check = compose_service(service)["healthcheck"]["test"]
    assert check == ["CMD", "python", "-m", "services.healthcheck", f"127.0.0.1:{PORTS[service]}"]


@pytest.mark.parametrize("service", SERVICES)
def test_compose_sets_only_variables_the_service_reads(service):
    environment = compose_service(service)["environment"]
    read, required = settings_read_by(service)
    assert set(environment) <= read
    assert required <= set(environment)
    assert environment["LLMCHATLINKER_HOST"] == "0.0.0.0"


def test_compose_orchestrator_reaches_units_by_their_service_names():
    services = compose()["services"]
    environment = compose_service("orchestrator")["environment"]
    for unit in SERVICES[1:]:
        host, port = environment[f"LLMCHATLINKER_{unit.upper()}_ADDR"].split(":")
        assert host in services
        assert int(port) == PORTS[unit]


def test_compose_starts_services_after_their_dependencies_are_healthy():
    services = compose()["services"]
    for service in SERVICES[1:]:
        assert compose_service(service)["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    orchestrator_needs = compose_service("orchestrator")["depends_on"]
    assert set(orchestrator_needs) == {"rabbitmq", "user-unit", "chat-unit", "llm-unit", "db-unit"}
    assert all(need["condition"] == "service_healthy" for need in orchestrator_needs.values())
    assert all("healthcheck" in services[name] for name in orchestrator_needs)


def test_compose_gives_every_service_the_internal_token_with_no_default():
    anchors = {service: compose_service(service)["environment"][TOKEN] for service in SERVICES}
    assert set(anchors.values()) == {f"${{{TOKEN}:?set {TOKEN}, e.g. openssl rand -hex 32}}"}


def test_compose_requires_caller_keys_and_has_no_default_passwords():
    environment = compose_service("orchestrator")["environment"]
    assert environment["LLMCHATLINKER_AUTH"] == "keys"
    text = (ROOT / "docker-compose.yml").read_text()
    for password in ("POSTGRES_PASSWORD", "RABBITMQ_PASSWORD"):
        assert f"${{{password}:-" not in text and f"${{{password}:?" in text


def test_compose_publishes_its_ports_on_loopback_unless_told_otherwise():
    published = [port for service in compose()["services"].values() for port in service.get("ports", [])]
    assert published and all(port.startswith("${LLMCHATLINKER_PUBLISH_HOST:-127.0.0.1}:") for port in published)


def test_kubernetes_requires_caller_keys():
    assert kubernetes_objects("ConfigMap")["orchestrator-config"]["data"]["LLMCHATLINKER_AUTH"] == "keys"


def _compose_command() -> list[str] | None:
    """`docker compose` (or the older `docker-compose`) when this machine has it, else None."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return command
    return None


def test_docker_compose_accepts_the_file():
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose on this machine (the docker client here has no compose plugin)")
    # The key-encryption key has no default: compose refuses the file without it.
    environment = {**os.environ, "LLM_UNIT_KEY_ENCRYPTION_KEY": "a-fernet-key"}
    checked = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                             capture_output=True, text=True, cwd=ROOT, env={**environment, TOKEN: "t" * 64,
                                                                  "POSTGRES_PASSWORD": "p", "RABBITMQ_PASSWORD": "r"})
    assert checked.returncode == 0, checked.stderr


# deploy/kubernetes.

def test_kubernetes_has_a_deployment_and_a_service_per_service():
    deployments, services = kubernetes_objects("Deployment"), kubernetes_objects("Service")
    for service in SERVICES:
        name = service.replace("_", "-")
        assert name in deployments and name in services
        assert container_of(service)["args"] == ["serve", service]
        selector = deployments[name]["spec"]["selector"]["matchLabels"]
        assert services[name]["spec"]["selector"] == selector
        assert deployments[name]["spec"]["template"]["metadata"]["labels"].items() >= selector.items()
        (port,) = services[name]["spec"]["ports"]
        assert port["port"] == PORTS[service]


@pytest.mark.parametrize("service", SERVICES)
def test_kubernetes_probes_grpc_health_on_the_container_port(service):
    container = container_of(service)
    (port,) = [port for port in container["ports"] if port["name"] == "grpc"]
    assert port["containerPort"] == PORTS[service]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == port["containerPort"], probe


@pytest.mark.parametrize("service", SERVICES)
def test_kubernetes_sets_resource_requests_and_limits(service):
    resources = container_of(service)["resources"]
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[bound]), bound


@pytest.mark.parametrize("service", SERVICES)
def test_kubernetes_sets_only_variables_the_service_reads(service):
    container = container_of(service)
    read, required = settings_read_by(service)
    names = container_env_names(container)
    assert names <= read
    assert required <= names


def test_kubernetes_secret_references_exist():
    secrets = kubernetes_objects("Secret")
    for service in SERVICES:
        for item in container_of(service).get("env", []):
            reference = item.get("valueFrom", {}).get("secretKeyRef")
            if reference:
                assert reference["key"] in secrets[reference["name"]]["stringData"], item["name"]


@pytest.mark.parametrize("service", SERVICES)
def test_kubernetes_gives_every_service_the_internal_token_from_the_secret(service):
    (token,) = [item for item in container_of(service)["env"] if item["name"] == TOKEN]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "llmchatlinker-secrets", "key": "internal-token"}


def test_the_secrets_placeholder_token_cannot_go_live():
    placeholder = kubernetes_objects("Secret")["llmchatlinker-secrets"]["stringData"]["internal-token"]
    with pytest.raises(config.SettingError, match="must be at least 32 characters"):
        config.internal_token(environ={TOKEN: placeholder})


def test_kubernetes_lets_only_the_orchestrator_reach_the_units():
    (policy,) = kubernetes_objects("NetworkPolicy").values()
    (selected,) = policy["spec"]["podSelector"]["matchExpressions"]
    assert selected["key"] == "app.kubernetes.io/name" and selected["operator"] == "In"
    assert sorted(selected["values"]) == sorted(unit.replace("_", "-") for unit in UNITS)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rule, scrape = policy["spec"]["ingress"]
    orchestrator_labels = kubernetes_objects("Deployment")["orchestrator"]["spec"]["template"]["metadata"]["labels"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "orchestrator"}}}]
    assert orchestrator_labels["app.kubernetes.io/name"] == "orchestrator"
    (port,) = rule["ports"]
    for unit in UNITS:  # a named port: each unit's own
        assert [p["name"] for p in container_of(unit)["ports"]] == [port["port"], "metrics"]
    # Prometheus, wherever it runs, reaches the metrics port and nothing else.
    assert scrape["ports"] == [{"protocol": "TCP", "port": "metrics"}]


def test_kubernetes_reaches_postgres_and_rabbitmq_as_external_services():
    services = kubernetes_objects("Service")
    for name in ("postgres", "rabbitmq"):
        assert services[name]["spec"]["type"] == "ExternalName"
    urls = kubernetes_objects("Secret")["llmchatlinker-secrets"]["stringData"]
    assert "@postgres:5432/" in urls["database-url"]
    assert "@rabbitmq:5672/" in urls["amqp-url"]


def test_kubernetes_orchestrator_reaches_units_by_their_service_names():
    services = kubernetes_objects("Service")
    settings = kubernetes_objects("ConfigMap")["orchestrator-config"]["data"]
    for unit in SERVICES[1:]:
        host, port = settings[f"LLMCHATLINKER_{unit.upper()}_ADDR"].split(":")
        assert services[host]["spec"]["ports"][0]["port"] == int(port)


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"])
    assert listed == {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}


def test_kubernetes_manifests_match_the_api_schema():
    try:
        import kubernetes_validate
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("kubernetes-validate is not installed (a dev dependency)")
        pytest.skip("kubernetes-validate is not installed")
    for document in kubernetes_documents():
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kubectl_kustomize_renders_the_manifests():
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    rendered = subprocess.run(["kubectl", "kustomize", str(KUBERNETES)], capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(rendered.stdout)]
    assert kinds.count("Deployment") == 5


# Metrics: scrape settings and the dashboard.

METRICS_PORT = 9464
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "llmchatlinker.json"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_serves_each_services_metrics_where_prometheus_scrapes_them(service):
    environment = compose_service(service)["environment"]
    assert environment[f"LLMCHATLINKER_{service.upper()}_METRICS_PORT"] == str(METRICS_PORT)
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {target for job in scrape["scrape_configs"] for group in job["static_configs"]
               for target in group["targets"]}
    assert f"{service.replace('_', '-')}:{METRICS_PORT}" in targets
    assert compose()["services"]["prometheus"]["profiles"] == ["observability"]


@pytest.mark.parametrize("service", SERVICES)
def test_kubernetes_pods_are_annotated_for_prometheus_on_their_metrics_port(service):
    deployment = kubernetes_objects("Deployment")[service.replace("_", "-")]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT),
                           "prometheus.io/path": "/metrics"}
    container = container_of(service)
    assert {"name": "metrics", "containerPort": METRICS_PORT} in container["ports"]
    (setting,) = [item for item in container["env"] if item["name"] == f"LLMCHATLINKER_{service.upper()}_METRICS_PORT"]
    assert setting["value"] == str(METRICS_PORT)


def _defined_metric_names() -> set[str]:
    """Every metric name the services register, as Prometheus shows them (with _total, _bucket, ...)."""
    import importlib

    from prometheus_client import REGISTRY

    for module in ("services.orchestrator.server", "services.llm_unit.server", "services.user_unit.server"):
        importlib.import_module(module)
    return {sample_name for family in REGISTRY.collect() for sample_name in
            {family.name, f"{family.name}_total", f"{family.name}_bucket", f"{family.name}_count",
             f"{family.name}_sum"}}


def test_the_dashboard_has_the_on_call_panels_and_only_metrics_the_suite_serves():
    dashboard = json.loads(DASHBOARD.read_text())
    titles = [panel["title"] for panel in dashboard["panels"]]
    for wanted in ("Instruction rate by type", "Instruction errors by type and status",
                   "Instruction latency p50 / p99 by type", "Time to first token p50 / p99 by model",
                   "Provider errors by kind", "Queue depth", "Dead letters"):
        assert wanted in titles
    defined = _defined_metric_names()
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"\b((?:llmchatlinker|grpc)_[a-z_]+)\b", target["expr"])}
    used -= {"grpc_type", "grpc_service", "grpc_method", "grpc_code"}  # label names
    assert used and used <= defined, used - defined
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
