"""The docker/ deployment, checked without a Docker engine: every file parses, the compose file has the shape
the README promises, every metric and label the alerts and the dashboard use exists in flagsvc.metrics, and the
image's CMD is one `flagsvc serve` accepts. (tests/integration/test_docker_healthcheck.py runs the image's
entrypoint, CMD and HEALTHCHECK natively against a real Redis.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import typing
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from flagsvc import metrics
from flagsvc.cli.server import main
from flagsvc.config import Settings
from flagsvc.domain.flag import State
from flagsvc.domain.judge import Decision
from tests.support.docker_files import (
    DOCKER,
    ROOT,
    compose,
    dockerfile_instructions,
    exec_form,
    flagsvc_services,
    read_env_file,
)

YAML_FILES = sorted([*DOCKER.rglob("*.yaml"), *DOCKER.rglob("*.yml")])
# Labels Prometheus itself attaches to every scraped series (target labels from prometheus.yml).
TARGET_LABELS = {"job", "instance", "service"}
# Label values the code emits (flagsvc/outcomes.py, flagsvc/controller.py, the FlagStateCollector).
KNOWN_VALUES = {
    "state": {s.value for s in State},
    "decision": set(typing.get_args(Decision)),
    "applied": {"true", "false"},
    "arm": {"canary", "stable"},
    "kind": {"requests", "errors"},
}


# --- every file parses ------------------------------------------------------------------------------------------


def test_the_deployment_files_exist_and_parse():
    names = {p.relative_to(DOCKER).as_posix() for p in YAML_FILES}
    assert {"compose.yaml", "prometheus/prometheus.yml", "prometheus/alerts.yml",
            "grafana/provisioning/datasources/prometheus.yaml",
            "grafana/provisioning/dashboards/flagsvc.yaml"} <= names
    for path in YAML_FILES:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path
    for path in DOCKER.rglob("*.json"):
        assert isinstance(json.loads(path.read_text()), dict), path
    for name in ("Dockerfile", "Dockerfile.dockerignore", "entrypoint.sh", "flagsvc.env.example", "README.md"):
        assert (DOCKER / name).is_file(), name


# --- the image ----------------------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_slim_non_root_with_a_healthcheck():
    instructions = dockerfile_instructions()
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(froms) == 2 and all(f.startswith("python:3.11-slim") for f in froms), froms
    assert froms[0].endswith(" AS builder")
    runtime = instructions[[i for i, (k, _) in enumerate(instructions) if k == "FROM"][1]:]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert ("EXPOSE", "8080") in instructions
    runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert "--no-index" in runs, "the runtime stage installs the builder's wheels only"
    assert "gcc" not in runs and "build-essential" not in runs
    assert exec_form("HEALTHCHECK")[0] == "python"
    assert "/readyz" in " ".join(exec_form("HEALTHCHECK"))


def test_everything_the_dockerfile_copies_exists_and_passes_its_dockerignore():
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore, "the context is the whole repository: the ignore file is an allow list"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for keyword, rest in dockerfile_instructions():
        if keyword != "COPY" or "--from=" in rest:
            continue
        sources = [a for a in rest.split() if not a.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source in allowed, f"{source} is excluded from the build context"
    # setup.cfg reads README.md (long_description): the builder must have it.
    assert "README.md" in allowed


def test_the_image_cmd_is_accepted_by_flagsvc_serve():
    cmd = exec_form("CMD")
    assert cmd[:2] == ["flagsvc", "serve"]
    ctx = main.make_context("flagsvc", cmd[1:])
    name, command, rest = main.resolve_command(ctx, cmd[1:])
    assert name == "serve"
    with command.make_context(name, rest, parent=ctx) as serve:
        params = serve.params
    assert (params["host"], params["port"], params["workers"], params["log_format"]) == ("0.0.0.0", 8080, 2, "json")
    assert not params["dev"]
    # the check has teeth: an option `flagsvc serve` does not have is refused
    with pytest.raises(click.UsageError):
        command.make_context(name, [*rest, "--no-such-option"], parent=ctx)


def test_the_entrypoint_requires_a_redis_url_for_serve_and_runs_anything_else():
    assert exec_form("ENTRYPOINT") == ["flagsvc-entrypoint"]
    script = str(DOCKER / "entrypoint.sh")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSVC_")}
    refused = subprocess.run(["sh", script, *exec_form("CMD")], env=env, capture_output=True, text=True, timeout=10)
    assert refused.returncode == 64 and "FLAGSVC_REDIS_URL is required" in refused.stderr
    other = subprocess.run(["sh", script, "sh", "-c", 'echo "ran $0"', "x"], env=env, capture_output=True, text=True,
                           timeout=10)
    assert (other.returncode, other.stdout) == (0, "ran x\n")


# --- compose ----------------------------------------------------------------------------------------------------


def test_compose_runs_two_flagsvc_replicas_on_one_redis():
    spec = compose()
    replicas = flagsvc_services(spec)
    count = sum(s.get("deploy", {}).get("replicas", 1) for s in replicas.values())
    assert count == 2, replicas.keys()
    image_healthcheck = exec_form("HEALTHCHECK")
    for name, service in replicas.items():
        assert service["environment"]["FLAGSVC_REDIS_URL"] == "redis://redis:6379/0", name
        env_files = [e["path"] if isinstance(e, dict) else e for e in service["env_file"]]
        assert env_files == ["flagsvc.env"], name
        assert service["healthcheck"]["test"] == ["CMD", *image_healthcheck], name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    ports = [p for s in replicas.values() for p in s.get("ports", [])]
    assert len(ports) == len(set(ports))


def test_the_env_file_example_is_a_valid_configuration():
    env = read_env_file(DOCKER / "flagsvc.env.example")
    settings = Settings.from_env({**env, "FLAGSVC_REDIS_URL": "redis://redis:6379/0"})
    assert settings.admin_tokens and settings.sdk_keys
    assert "flagsvc.env" in (DOCKER / ".gitignore").read_text().split()


def test_redis_persists_with_aof_fsync_always_on_a_named_volume():
    spec = compose()
    redis = spec["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert re.search(r"--appendonly yes\b", command) and re.search(r"--appendfsync always\b", command)
    volume = next(v.split(":")[0] for v in redis["volumes"] if v.split(":")[1] == "/data")
    assert volume in spec["volumes"], "a named volume, declared at the top level"


def test_every_service_has_a_healthcheck():
    for name, service in compose()["services"].items():
        assert service["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}, name


def test_prometheus_scrapes_every_replica_and_loads_the_alerts():
    spec = compose()
    prometheus = spec["services"]["prometheus"]
    mounts = {target: source for source, target in (v.split(":")[:2] for v in prometheus["volumes"])}
    config_dir = (DOCKER / mounts["/etc/prometheus"]).resolve()
    config = yaml.safe_load((config_dir / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert (config_dir / Path(rule_file).relative_to("/etc/prometheus")).is_file(), rule_file
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "flagsvc")
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:8080" for name in flagsvc_services(spec)}
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard():
    grafana = compose()["services"]["grafana"]
    mounts = {target: source for source, target in (v.split(":")[:2] for v in grafana["volumes"])}
    provisioning = (DOCKER / mounts["/etc/grafana/provisioning"]).resolve()
    assert provisioning == DOCKER / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert [d["url"] for d in datasources] == ["http://prometheus:9090"]
    provider = yaml.safe_load((provisioning / "dashboards" / "flagsvc.yaml").read_text())["providers"][0]
    dashboards_dir = (DOCKER / mounts[provider["options"]["path"]]).resolve()
    assert (dashboards_dir / "flagsvc.json").is_file()
    dashboard = json.loads((dashboards_dir / "flagsvc.json").read_text())
    uids = {d["uid"] for d in datasources}
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in uids, panel["title"]
            assert panel["targets"], panel["title"]
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("rollout percent", "state", "canary vs stable", "requests per second", "p99", "decisions", "sse"):
        assert topic in titles, topic


# --- metric names and labels --------------------------------------------------------------------------------------


def exposed_metrics() -> dict[str, set[str]]:
    """Every sample name /metrics can show -> its label names (from the module's metric objects, and from the
    FlagStateCollector run on one flag)."""
    exposed: dict[str, set[str]] = {}
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        name, labels = obj.describe()[0].name, set(obj._labelnames)
        if obj._type == "counter":
            exposed[name + "_total"] = labels
        elif obj._type == "histogram":
            exposed.update({name + "_bucket": labels | {"le"}, name + "_sum": labels, name + "_count": labels})
        else:
            exposed[name] = labels
    flag = SimpleNamespace(key="f", percent=5.0, stage_index=1, revision=3, state=State.ROLLING, created_at=1.0)
    collector = metrics.FlagStateCollector(SimpleNamespace(list_flags=lambda: [flag]))
    judged = SimpleNamespace(list_flags=lambda: [flag], load_judgement=lambda key: None)
    blind = metrics.BlindArmCollector(judged)
    held = metrics.HeldRolloutCollector(judged)
    for family in [*collector.collect(), *blind.collect(), *held.collect()]:
        for sample in family.samples:
            exposed.setdefault(sample.name, set()).update(sample.labels)
    return exposed


def promql_expressions() -> list[str]:
    exprs = []
    alerts = yaml.safe_load((DOCKER / "prometheus" / "alerts.yml").read_text())
    exprs += [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "flagsvc.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return exprs


def test_the_exposed_metric_set_is_what_the_module_defines():
    exposed = exposed_metrics()
    assert exposed["flagsvc_outcomes_ingested_total"] == {"flag", "arm", "kind"}
    assert exposed["flagsvc_flag_state"] == {"flag", "state"}
    assert "flagsvc_http_request_duration_seconds_bucket" in exposed
    assert "flagsvc_controller_leader" in exposed


def test_alerts_and_dashboard_use_only_metrics_and_labels_that_exist():
    exposed = exposed_metrics()
    exprs = promql_expressions()
    assert len(exprs) > 10
    used = set()
    for expr in exprs:
        names = set(re.findall(r"\bflagsvc_[a-z0-9_]+", expr))
        unknown = names - exposed.keys()
        assert not unknown, f"unknown metric(s) {unknown} in: {expr}"
        used |= names
        for name, selector in re.findall(r"\b(flagsvc_[a-z0-9_]+)\{([^}]*)\}", expr):
            for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', selector):
                assert label in exposed[name] | TARGET_LABELS, f"{name} has no label {label!r}: {expr}"
                if label in KNOWN_VALUES and "$" not in value:
                    values = value.split("|") if op in {"=~", "!~"} else [value]
                    assert set(values) <= KNOWN_VALUES[label], f"{label}={value!r} is never emitted: {expr}"
        allowed = set().union(*(exposed[n] for n in names)) | TARGET_LABELS if names else TARGET_LABELS
        for group in re.findall(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)", expr):
            for label in filter(None, (x.strip() for x in group.split(","))):
                assert label in allowed, f"label {label!r} is not on {names}: {expr}"
    # the alerts the README promises, and the dashboard covers the service's main metrics
    alert_names = {rule["alert"] for group in yaml.safe_load((DOCKER / "prometheus" / "alerts.yml").read_text())[
        "groups"] for rule in group["rules"]}
    assert {"FlagsvcRollbackApplied", "FlagsvcFlagRolledBack", "FlagsvcCanaryErrorRateHigh",
            "FlagsvcNoControllerLeader", "FlagsvcRedisErrors", "FlagsvcRolloutBlind"} <= alert_names
    assert {"flagsvc_flag_percent", "flagsvc_flag_state", "flagsvc_outcomes_ingested_total",
            "flagsvc_http_requests_total", "flagsvc_http_request_duration_seconds_bucket",
            "flagsvc_controller_decisions_total", "flagsvc_sse_clients", "flagsvc_controller_leader",
            "flagsvc_redis_errors_total"} <= used


def test_the_metric_check_catches_a_typo():
    exposed = exposed_metrics()
    assert "flagsvc_flag_percentage" not in exposed
    assert "flagsvc_http_requests" not in exposed  # a counter is only exposed with _total


def test_a_blind_rollout_alerts_per_flag_and_arm():
    rules = {rule["alert"]: rule for group in yaml.safe_load((DOCKER / "prometheus" / "alerts.yml").read_text())[
        "groups"] for rule in group["rules"]}
    rule = rules["FlagsvcRolloutBlind"]
    assert "flagsvc_flag_blind" in rule["expr"] and "by (flag, arm)" in rule["expr"]
    assert "{{ $labels.flag }}" in rule["annotations"]["summary"] and "{{ $labels.arm }}" in rule["annotations"][
        "summary"]
    assert "client.track/record" in rule["annotations"]["description"]  # the fix, not only the symptom
