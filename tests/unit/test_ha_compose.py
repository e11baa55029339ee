"""The highly available compose example (docker/compose.ha.yaml, docker/ha/haproxy.cfg) hangs together: every
flagsvc replica reaches the sentinels the file starts, by the name they monitor, and waits for a replica; the
balancer sends to exactly the flagsvc replicas, and checks their readiness."""

from __future__ import annotations

import re

import yaml

from flagsvc.store.connection import parse_redis_url
from tests.support.docker_files import DOCKER


def test_the_ha_compose_example_is_consistent():
    compose = yaml.safe_load((DOCKER / "compose.ha.yaml").read_text())
    services = compose["services"]
    replicas = sorted(name for name in services if name.startswith("flagsvc-"))
    assert len(replicas) == 3
    sentinel_script = services["sentinel-1"]["command"][-1]
    monitored = re.search(r"sentinel monitor (\S+) (\S+) 6379 2", sentinel_script)
    assert monitored is not None and monitored.group(2) in services
    for name in replicas:
        env = services[name]["environment"]
        target = parse_redis_url(env["FLAGSVC_REDIS_URL"])
        assert target.mode == "sentinel" and target.service == monitored.group(1)
        assert {host for host, _ in target.nodes} == {n for n in services if n.startswith("sentinel-")}
        assert env["FLAGSVC_REDIS_MIN_REPLICAS_ACK"] == "1"
    assert sum(f"--replicaof {monitored.group(2)} 6379" in " ".join(s.get("command", [])) for s in
               services.values()) == 2  # two replicas, so MIN_REPLICAS_ACK=1 survives a failover
    haproxy = (DOCKER / "ha" / "haproxy.cfg").read_text()
    assert sorted(re.findall(r"^\s*server (\S+) \1:8080 check$", haproxy, re.M)) == replicas
    assert "option httpchk GET /readyz" in haproxy
    assert services["balancer"]["volumes"] == ["./ha/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]
