"""The container and the compose stack, checked statically (Docker does not run everywhere).

`docker compose config` runs too where the compose plugin is installed.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from consumer.settings import Settings, is_setting

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


# --- the compose file ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


_DEFAULTED = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


def interpolated(value: object) -> str:
    """A compose value as a container sees it with the shell's variables unset."""
    text = "true" if value is True else "false" if value is False else str(value)
    return _DEFAULTED.sub(lambda m: m.group(2) or "", text).replace("$$", "$")


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolated(value) for key, value in env.items()}


def host_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of each bind mount; named volumes are left out."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume.get("target", "")
        else:
            source, target = [*volume.split(":"), ""][:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def test_the_compose_stack_has_every_part(compose: dict[str, Any]) -> None:
    assert set(services(compose)) >= {
        "kafka",
        "topics",
        "schema-registry",
        "sandbox",
        "consumer",
        "prometheus",
        "grafana",
    }
    for name, service in services(compose).items():
        assert service.get("image") or service.get("build"), f"{name}: neither image nor build"


def test_kafka_runs_in_kraft_mode_and_stays_usable_alone(compose: dict[str, Any]) -> None:
    kafka = services(compose)["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in json.dumps(compose).lower()
    # `docker compose up -d kafka` serves the test suite on the host, with no other service.
    assert "9092:9092" in kafka["ports"]
    assert "PLAINTEXT://localhost:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert not kafka.get("depends_on")


def test_the_topics_service_creates_the_contract_topics_once(compose: dict[str, Any]) -> None:
    stack = services(compose)
    topics = stack["topics"]
    script = " ".join(topics["command"]) if isinstance(topics["command"], list) else ""
    assert "kafka-topics.sh" in script and "--create" in script and "--if-not-exists" in script
    defaults = Settings()
    for topic in (*defaults.topics, defaults.dlq_topic, defaults.receipts_topic):
        assert topic in script
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    consumer_waits = stack["consumer"]["depends_on"]["topics"]["condition"]
    assert consumer_waits == "service_completed_successfully"


def test_two_consumer_replicas_in_one_group(compose: dict[str, Any]) -> None:
    consumer = services(compose)["consumer"]
    assert consumer["deploy"]["replicas"] == 2
    assert "container_name" not in consumer  # replicas need names of their own
    assert not consumer.get("ports")  # two replicas cannot share a host port
    assert environment(consumer)["KAFKA_GROUP_ID"]


def test_every_consumer_variable_is_a_real_setting(compose: dict[str, Any]) -> None:
    env = environment(services(compose)["consumer"])
    unknown = [name for name in env if not is_setting(name)]
    assert not unknown, f"not settings: {unknown}"
    # And together they make a valid configuration that talks to the sandbox.
    settings = Settings.from_sources(env)
    assert settings.mem0_base_url == "http://sandbox:8765"
    assert settings.mem0_api_key.reveal() == "sandbox-key"
    assert settings.schema_registry_url == "http://schema-registry:8081"
    assert settings.bootstrap_servers == "kafka:19092"


def test_the_real_api_is_two_variables_away(compose: dict[str, Any]) -> None:
    consumer = services(compose)["consumer"]["environment"]
    assert consumer["MEM0_BASE_URL"] == "${MEM0_BASE_URL:-http://sandbox:8765}"
    assert consumer["MEM0_API_KEY"] == "${MEM0_API_KEY:-sandbox-key}"
    env = {
        **environment(services(compose)["consumer"]),
        "MEM0_BASE_URL": "https://api.mem0.ai",
        "MEM0_API_KEY": "m0-real",
    }
    settings = Settings.from_sources(env)
    assert (settings.mem0_base_url, settings.mem0_api_key.reveal()) == (
        "https://api.mem0.ai",
        "m0-real",
    )


def test_the_sandbox_is_the_consumer_image_with_its_own_health_check(
    compose: dict[str, Any],
) -> None:
    stack = services(compose)
    sandbox, consumer = stack["sandbox"], stack["consumer"]
    assert sandbox["build"] == consumer["build"] == "."
    assert sandbox["image"] == consumer["image"]
    assert sandbox["command"][:1] == ["sandbox"]
    assert "0.0.0.0" in sandbox["command"]
    assert "8765:8765" in sandbox["ports"]
    # The image's HEALTHCHECK asks the consumer's /healthz, which the sandbox does not serve.
    assert "8765" in " ".join(sandbox["healthcheck"]["test"])


def test_every_mounted_host_path_exists(compose: dict[str, Any]) -> None:
    missing = [
        f"{name}: {source}"
        for name, service in services(compose).items()
        for source, _ in host_mounts(service)
        if not (ROOT / source).exists()
    ]
    assert not missing, f"mounted but not in the repository: {missing}"


def test_prometheus_loads_the_ops_scrape_config_and_alert_rules(compose: dict[str, Any]) -> None:
    prometheus = services(compose)["prometheus"]
    mounts = dict(host_mounts(prometheus))
    assert mounts["./ops/prometheus"] == "/etc/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load((ROOT / "ops/prometheus/prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        # Relative to the configuration file, which is mounted with its directory.
        assert (ROOT / "ops/prometheus" / rule_file).is_file(), rule_file
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert "mem0-deletion-consumer" in jobs


def _scrape_targets(config: dict[str, Any]) -> list[str]:
    targets: list[str] = []
    for job in config["scrape_configs"]:
        for static in job.get("static_configs") or []:
            targets.extend(static.get("targets") or [])
        for dns in job.get("dns_sd_configs") or []:
            targets.extend(f"{name}:{dns.get('port', '')}" for name in dns.get("names") or [])
    return targets


def test_prometheus_scrapes_the_compose_consumers(compose: dict[str, Any]) -> None:
    """Each replica of the `consumer` service, by the service's name, on its METRICS_PORT."""
    config = yaml.safe_load((ROOT / "ops/prometheus/prometheus.yml").read_text())
    port = environment(services(compose)["consumer"])["METRICS_PORT"]
    assert f"consumer:{port}" in _scrape_targets(config)


def test_grafana_provisions_the_ops_data_source_and_dashboard(compose: dict[str, Any]) -> None:
    stack = services(compose)
    grafana = stack["grafana"]
    mounts = dict(host_mounts(grafana))
    assert mounts["./ops/grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboard_in_container = PurePosixPath(mounts["./ops/grafana/mem0-deletion-consumer.json"])
    json.loads((ROOT / "ops/grafana/mem0-deletion-consumer.json").read_text())

    # The dashboard provider reads the directory the dashboard is mounted in.
    providers_dir = ROOT / "ops/grafana/provisioning/dashboards"
    paths = [
        PurePosixPath(provider["options"]["path"])
        for file in sorted(providers_dir.glob("*.y*ml"))
        for provider in yaml.safe_load(file.read_text())["providers"]
    ]
    assert any(dashboard_in_container.is_relative_to(path) for path in paths), paths

    # The data source is this stack's Prometheus.
    sources_dir = ROOT / "ops/grafana/provisioning/datasources"
    urls = [
        source["url"]
        for file in sorted(sources_dir.glob("*.y*ml"))
        for source in yaml.safe_load(file.read_text())["datasources"]
    ]
    prometheus_port = services(compose)["prometheus"]["ports"][0].split(":")[-1]
    assert f"http://prometheus:{prometheus_port}" in urls


def test_ports_and_volumes_are_documented(compose: dict[str, Any]) -> None:
    header = COMPOSE.read_text().split("services:", 1)[0]
    for service in services(compose).values():
        for port in service.get("ports") or []:
            host_port = str(port).split(":")[0]
            assert re.search(rf"^#\s+{host_port}\s", header, re.MULTILINE), host_port
    for volume in compose.get("volumes") or {}:
        assert volume in header


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker command")
def test_docker_compose_config_accepts_the_file() -> None:
    version = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, check=False
    )
    if version.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


# --- the Dockerfile --------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            found.append([])
        assert found, "an instruction before the first FROM"
        found[-1].append(instruction)
    return found


def test_dockerfile_is_multi_stage_on_slim_python() -> None:
    built = stages(DOCKERFILE.read_text())
    assert len(built) >= 2
    for stage in built:
        assert stage[0][1].split()[0] == "python:3.11-slim"
    builder, final = built[0], built[-1]
    builder_runs = " ".join(args for word, args in builder if word == "RUN")
    assert re.search(r"\bpip wheel\b", builder_runs)
    assert "gcc" in builder_runs  # consumer/avro/_scan.c is compiled there, not in the final image
    # The final stage installs the builder's wheels, never the source tree or a compiler.
    final_runs = " ".join(args for word, args in final if word == "RUN")
    assert "from=build" in final_runs and "--no-index" in final_runs
    assert not [args for word, args in final if word in ("COPY", "ADD") and "--from" not in args]
    for tool in ("gcc", "build-essential", "apt-get install", "make "):
        assert tool not in final_runs


def test_dockerfile_runs_the_consumer_as_a_non_root_user_with_a_health_check() -> None:
    final = stages(DOCKERFILE.read_text())[-1]
    last: dict[str, str] = {}
    for word, args in final:
        last[word] = args
    assert last["USER"] == "10001"
    assert last["EXPOSE"] == "9400"
    assert json.loads(last["ENTRYPOINT"]) == ["deletion-consumer"]
    assert json.loads(last["CMD"]) == ["run"]
    check = last["HEALTHCHECK"]
    command = json.loads(check[check.index("CMD") + 3 :].strip())
    assert command[0] == "python" and "urllib" in command[-1] and "/healthz" in command[-1]
    assert "127.0.0.1" in command[-1]
    assert "METRICS_PORT" in command[-1] and "9400" in command[-1]
    # The command line is valid Python.
    compile(command[-1], "<healthcheck>", "exec")


def test_the_build_context_holds_what_the_wheel_needs() -> None:
    """The allow-list .dockerignore lets in the readme, the packages and the schemas."""
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything else stays out: .venv, .git, tests, local secrets
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", "setup.py", project["project"]["readme"]}
    package_dirs = project["tool"]["setuptools"].get("package-dir", {})
    for package in project["tool"]["setuptools"]["packages"]:
        needed.add(package_dirs.get(package, package.replace(".", "/")).split("/")[0])
    assert needed <= allowed, needed - allowed
    copied = " ".join(
        args for word, args in stages(DOCKERFILE.read_text())[0] if word in ("COPY", "ADD")
    )
    for name in needed:
        assert name in shlex.split(copied), name
    schemas = package_dirs["consumer.schemas_data"]
    assert list((ROOT / schemas).glob("*.avsc"))
    assert "*.avsc" in project["tool"]["setuptools"]["package-data"]["consumer.schemas_data"]
